package protocol

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// Metadata: v0-12.
//
// One broker, this node, leads every partition with leader epoch 0; replicas
// and ISR are this node. Topic ids are served from v10 (Backend.Topic
// returns them) and v12 requests may name topics by id alone.
//
// Version notes: v1 null topics = all, ControllerID, IsInternal, Rack; v2
// ClusterID; v3 ThrottleMillis; v4 AllowAutoTopicCreation (auto-creation
// before v4 is implied); v5 OfflineReplicas; v7 LeaderEpoch; v8 authorized
// operations (not computed: left at the "not requested" default); v9
// flexible; v10 TopicID; v11 drops cluster authorized operations; v12
// nullable topic names.
func init() {
	register(api{key: 3, min: 0, max: 12, serve: serveMetadata,
		acl: perResource("DESCRIBE on each topic (others are left out of a listing, and TOPIC_AUTHORIZATION_FAILED when named); auto-creation needs CREATE on the cluster or the topic")})
}

func serveMetadata(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)

	b := kmsg.NewMetadataResponseBroker()
	b.NodeID, b.Host, b.Port = s.cfg.NodeID, c.l.host, c.l.port
	resp.Brokers = []kmsg.MetadataResponseBroker{b}
	cid := s.b.ClusterID()
	resp.ClusterID = &cid
	resp.ControllerID = s.cfg.NodeID

	autoCreate := req.Version < 4 || req.AllowAutoTopicCreation
	addTopic := func(name string, id [16]byte, create bool) {
		t := kmsg.NewMetadataResponseTopic()
		t.Topic = kmsg.StringPtr(name)
		if name == "" && id != ([16]byte{}) {
			var n int32
			var ok bool
			t.TopicID = id
			if name, n, ok = s.ids.name(ctx, id); !ok {
				t.Topic = nil
				t.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, t)
				return
			}
			t.Topic = kmsg.StringPtr(name)
			if !s.authorize(ctx, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, name) {
				t.ErrorCode = kerr.TopicAuthorizationFailed.Code
				resp.Topics = append(resp.Topics, t)
				return
			}
			t.Partitions = partitionsMetadata(s.cfg.NodeID, n)
			resp.Topics = append(resp.Topics, t)
			return
		}
		if !s.authorize(ctx, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, name) {
			t.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, t)
			return
		}
		mayCreate := create && s.authorizeTopicCreate(ctx, name)
		tid, n, err := s.b.Topic(ctx, name, mayCreate)
		if err != nil && create && !mayCreate && errors.Is(err, kerr.UnknownTopicOrPartition) {
			// Kafka's answer to an auto-creation the principal may not do.
			err = kerr.TopicAuthorizationFailed
		}
		if err != nil {
			t.ErrorCode = s.errCode(err, kerr.UnknownServerError, "metadata: topic", zap.String("topic", name))
			resp.Topics = append(resp.Topics, t)
			return
		}
		s.ids.remember(tid, name)
		t.IsInternal = internalTopics[name]
		if req.Version >= 10 {
			t.TopicID = tid
		}
		t.Partitions = partitionsMetadata(s.cfg.NodeID, n)
		s.markOffline(name, t.Partitions)
		resp.Topics = append(resp.Topics, t)
	}

	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if all {
		for _, name := range s.b.TopicNames(ctx) {
			addTopic(name, [16]byte{}, false)
		}
		// A topic deleted between listing and lookup is not reported,
		// nor one the principal may not describe.
		kept := resp.Topics[:0]
		for _, t := range resp.Topics {
			if t.ErrorCode != kerr.UnknownTopicOrPartition.Code && t.ErrorCode != kerr.TopicAuthorizationFailed.Code {
				kept = append(kept, t)
			}
		}
		resp.Topics = kept
		return resp, nil
	}
	for _, rt := range req.Topics {
		var name string
		if rt.Topic != nil {
			name = *rt.Topic
		}
		if name == "" && rt.TopicID == ([16]byte{}) {
			t := kmsg.NewMetadataResponseTopic()
			t.Topic = rt.Topic
			t.ErrorCode = kerr.InvalidTopicException.Code
			resp.Topics = append(resp.Topics, t)
			continue
		}
		addTopic(name, rt.TopicID, autoCreate && name != "")
	}
	return resp, nil
}

// internalTopics are Kafka's own topics: clients skip them when consuming by
// regular expression. They exist here only if the broker keeps them.
var internalTopics = map[string]bool{"__consumer_offsets": true, "__transaction_state": true}

// OfflineReporter is what a Backend implements to report partitions whose
// log could not be opened (damage found at start): Metadata then answers
// them with KAFKA_STORAGE_ERROR and this node among the offline replicas, as
// Kafka reports a partition on a failed log directory.
type OfflineReporter interface {
	OfflinePartitions(topic string) []int32
}

func (s *Server) markOffline(topic string, ps []kmsg.MetadataResponseTopicPartition) {
	r, ok := s.b.(OfflineReporter)
	if !ok {
		return
	}
	for _, i := range r.OfflinePartitions(topic) {
		if i < 0 || int(i) >= len(ps) {
			continue
		}
		p := &ps[i]
		p.ErrorCode = kerr.KafkaStorageError.Code
		p.ISR = []int32{}
		p.OfflineReplicas = []int32{s.cfg.NodeID}
	}
}

func partitionsMetadata(node, n int32) []kmsg.MetadataResponseTopicPartition {
	ps := make([]kmsg.MetadataResponseTopicPartition, 0, n)
	for i := int32(0); i < n; i++ {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition, p.Leader, p.LeaderEpoch = i, node, 0
		p.Replicas = []int32{node}
		p.ISR = []int32{node}
		p.OfflineReplicas = []int32{}
		ps = append(ps, p)
	}
	return ps
}
