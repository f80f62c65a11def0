package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetDelete: v0, answered by Groups (issue 4), advertised and served only
// when the server has one.
func init() {
	register(api{key: 47, min: 0, max: 0, groups: true,
		acl: wholeRequest(kmsg.ACLOperationDelete, kmsg.ACLResourceTypeGroup,
			func(r kmsg.Request) string { return r.(*kmsg.OffsetDeleteRequest).Group },
			func(_ kmsg.Request, r kmsg.Response, code int16) { r.(*kmsg.OffsetDeleteResponse).ErrorCode = code }).
			and("READ on each topic"),
		serve: serveOffsetDelete})
}

// serveOffsetDelete passes on the topics the principal may READ and
// answers the others TOPIC_AUTHORIZATION_FAILED, as Kafka does.
func serveOffsetDelete(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.OffsetDeleteRequest)
	allowed := *req
	allowed.Topics = nil
	var denied []kmsg.OffsetDeleteResponseTopic
	for _, rt := range req.Topics {
		if s.authorize(ctx, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, rt.Topic) {
			allowed.Topics = append(allowed.Topics, rt)
			continue
		}
		t := kmsg.NewOffsetDeleteResponseTopic()
		t.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewOffsetDeleteResponseTopicPartition()
			p.Partition, p.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
			t.Partitions = append(t.Partitions, p)
		}
		denied = append(denied, t)
	}
	if len(denied) == 0 {
		return groupAnswer(s.g.OffsetDelete(ctx, req))
	}
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if len(allowed.Topics) > 0 {
		if resp = s.g.OffsetDelete(ctx, &allowed); resp == nil {
			return groupAnswer(resp)
		}
	}
	resp.Topics = append(resp.Topics, denied...)
	return resp, nil
}
