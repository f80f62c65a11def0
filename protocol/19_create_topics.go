package protocol

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// CreateTopics: v0-7.
//
// One node: the replication factor must be -1 (broker default) or 1, and a
// manual assignment must put every partition's single replica on this node.
// A name given twice in one request fails both entries (INVALID_REQUEST),
// as in Kafka.
//
// Version notes: v1 ValidateOnly and ErrorMessage; v2 ThrottleMillis; v4
// default partitions and replication (-1); v5 flexible, the created topic's
// partitions, replication and configs in the answer; v7 TopicID.
func init() {
	register(api{key: 19, min: 0, max: 7, serve: serveCreateTopics,
		acl: perResource("CREATE on the cluster or on each topic")})
}

func serveCreateTopics(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := make(map[string]int, len(req.Topics))
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		t := kmsg.NewCreateTopicsResponseTopic()
		t.Topic = rt.Topic
		fail := func(e *kerr.Error, msg string) {
			t.ErrorCode = e.Code
			t.ErrorMessage = kmsg.StringPtr(msg)
		}
		partitions := rt.NumPartitions
		switch {
		case !s.authorizeTopicCreate(ctx, rt.Topic):
			fail(kerr.TopicAuthorizationFailed, "not authorized to create this topic")
		case seen[rt.Topic] > 1:
			fail(kerr.InvalidRequest, "topic named more than once in the request")
		case rt.ReplicationFactor != -1 && rt.ReplicationFactor != 1 && len(rt.ReplicaAssignment) == 0:
			fail(kerr.InvalidReplicationFactor, "this broker has one node: replication factor must be 1")
		case len(rt.ReplicaAssignment) > 0 && (partitions != -1 || rt.ReplicationFactor != -1):
			fail(kerr.InvalidRequest, "both a replica assignment and partitions or replication factor")
		case len(rt.ReplicaAssignment) > 0 && !assignmentOnNode(rt.ReplicaAssignment, s.cfg.NodeID):
			fail(kerr.InvalidReplicaAssignment, "every partition must have exactly this node as its replica")
		default:
			if len(rt.ReplicaAssignment) > 0 {
				partitions = int32(len(rt.ReplicaAssignment))
			}
			if partitions == 0 || partitions < -1 {
				fail(kerr.InvalidPartitions, "number of partitions must be at least 1")
				break
			}
			configs := make(map[string]*string, len(rt.Configs))
			for _, c := range rt.Configs {
				configs[c.Name] = c.Value
			}
			if len(configs) == 0 {
				configs = nil
			}
			if err := s.b.CreateTopic(ctx, rt.Topic, partitions, configs, req.ValidateOnly); err != nil {
				t.ErrorCode = s.errCode(err, kerr.UnknownServerError, "create topic", zap.String("topic", rt.Topic))
				t.ErrorMessage = kmsg.StringPtr(err.Error())
				break
			}
			if req.ValidateOnly {
				t.NumPartitions, t.ReplicationFactor = partitions, 1
				break
			}
			s.describeCreated(ctx, &t)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}

// describeCreated fills the v5+ details of a topic just created.
func (s *Server) describeCreated(ctx context.Context, t *kmsg.CreateTopicsResponseTopic) {
	id, n, err := s.b.Topic(ctx, t.Topic, false)
	if err != nil {
		return
	}
	s.ids.remember(id, t.Topic)
	t.TopicID, t.NumPartitions, t.ReplicationFactor = id, n, 1
	cfgs, err := s.b.TopicConfigs(ctx, t.Topic, nil)
	if err != nil {
		return
	}
	for _, c := range cfgs {
		rc := kmsg.NewCreateTopicsResponseTopicConfig()
		rc.Name, rc.Value, rc.ReadOnly, rc.Source, rc.IsSensitive = c.Name, c.Value, c.ReadOnly, int8(c.Source), c.IsSensitive
		if rc.IsSensitive {
			rc.Value = nil
		}
		t.Configs = append(t.Configs, rc)
	}
}

func assignmentOnNode(as []kmsg.CreateTopicsRequestTopicReplicaAssignment, node int32) bool {
	seen := make(map[int32]bool, len(as))
	for _, a := range as {
		if len(a.Replicas) != 1 || a.Replicas[0] != node || a.Partition < 0 || int(a.Partition) >= len(as) || seen[a.Partition] {
			return false
		}
		seen[a.Partition] = true
	}
	return true
}
