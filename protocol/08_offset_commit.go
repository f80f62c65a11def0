package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit: v2-9, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// Commit metadata must round-trip; v2 is the first with retention, v8
// flexible, v9 for KIP-848 members.
func init() {
	register(api{key: 8, min: 2, max: 9, groups: true,
		acl: wholeRequest(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup,
			func(r kmsg.Request) string { return r.(*kmsg.OffsetCommitRequest).Group },
			func(r kmsg.Request, w kmsg.Response, code int16) {
				req, resp := r.(*kmsg.OffsetCommitRequest), w.(*kmsg.OffsetCommitResponse)
				for _, rt := range req.Topics {
					t := kmsg.NewOffsetCommitResponseTopic()
					t.Topic = rt.Topic
					for _, rp := range rt.Partitions {
						p := kmsg.NewOffsetCommitResponseTopicPartition()
						p.Partition, p.ErrorCode = rp.Partition, code
						t.Partitions = append(t.Partitions, p)
					}
					resp.Topics = append(resp.Topics, t)
				}
			}).and("READ on each topic"),
		serve: serveOffsetCommit})
}

// serveOffsetCommit passes on the topics the principal may READ and
// answers the others TOPIC_AUTHORIZATION_FAILED, as Kafka does.
func serveOffsetCommit(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.OffsetCommitRequest)
	allowed := *req
	allowed.Topics = nil
	var denied []kmsg.OffsetCommitResponseTopic
	for _, rt := range req.Topics {
		if s.authorize(ctx, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, rt.Topic) {
			allowed.Topics = append(allowed.Topics, rt)
			continue
		}
		t := kmsg.NewOffsetCommitResponseTopic()
		t.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewOffsetCommitResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
			t.Partitions = append(t.Partitions, p)
		}
		denied = append(denied, t)
	}
	if len(denied) == 0 {
		return groupAnswer(s.g.OffsetCommit(ctx, req))
	}
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	if len(allowed.Topics) > 0 {
		if resp = s.g.OffsetCommit(ctx, &allowed); resp == nil {
			return groupAnswer(resp)
		}
	}
	resp.Topics = append(resp.Topics, denied...)
	return resp, nil
}
