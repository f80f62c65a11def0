package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// CreatePartitions: v0-3.
//
// A manual assignment may only place each new partition's single replica on
// this node. Version notes: v2 flexible; v3 no change.
func init() {
	register(api{key: 37, min: 0, max: 3, serve: serveCreatePartitions,
		acl: perResource("ALTER on each topic")})
}

func serveCreatePartitions(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	seen := make(map[string]int, len(req.Topics))
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		t := kmsg.NewCreatePartitionsResponseTopic()
		t.Topic = rt.Topic
		onNode := true
		for _, a := range rt.Assignment {
			if len(a.Replicas) != 1 || a.Replicas[0] != s.cfg.NodeID {
				onNode = false
			}
		}
		switch {
		case !s.authorize(ctx, kmsg.ACLOperationAlter, kmsg.ACLResourceTypeTopic, rt.Topic):
			t.ErrorCode = kerr.TopicAuthorizationFailed.Code
		case seen[rt.Topic] > 1:
			t.ErrorCode = kerr.InvalidRequest.Code
			t.ErrorMessage = kmsg.StringPtr("topic named more than once in the request")
		case !onNode:
			t.ErrorCode = kerr.InvalidReplicaAssignment.Code
			t.ErrorMessage = kmsg.StringPtr("every partition must have exactly this node as its replica")
		default:
			if err := s.b.CreatePartitions(ctx, rt.Topic, rt.Count, req.ValidateOnly); err != nil {
				t.ErrorCode = s.errCode(err, kerr.UnknownServerError, "create partitions", zap.String("topic", rt.Topic))
				t.ErrorMessage = kmsg.StringPtr(err.Error())
			}
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
