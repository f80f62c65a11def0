package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetFetch: v1-8, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v6 flexible; v8 batches groups.
func init() {
	register(api{key: 9, min: 1, max: 8, groups: true,
		acl:   perResource("DESCRIBE on each group"),
		serve: serveOffsetFetch})
}

func serveOffsetFetch(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.OffsetFetchRequest)
	code := kerr.GroupAuthorizationFailed.Code
	if req.Version < 8 {
		if s.authorize(ctx, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, req.Group) {
			return groupAnswer(s.g.OffsetFetch(ctx, req))
		}
		resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
		resp.ErrorCode = code
		for _, rt := range req.Topics {
			t := kmsg.NewOffsetFetchResponseTopic()
			t.Topic = rt.Topic
			for _, i := range rt.Partitions {
				p := kmsg.NewOffsetFetchResponseTopicPartition()
				p.Partition, p.Offset, p.ErrorCode = i, -1, code
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil
	}
	allowed := *req
	allowed.Groups = nil
	var denied []kmsg.OffsetFetchResponseGroup
	for _, g := range req.Groups {
		if s.authorize(ctx, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, g.Group) {
			allowed.Groups = append(allowed.Groups, g)
			continue
		}
		rg := kmsg.NewOffsetFetchResponseGroup()
		rg.Group, rg.ErrorCode = g.Group, code
		denied = append(denied, rg)
	}
	if len(denied) == 0 {
		return groupAnswer(s.g.OffsetFetch(ctx, req))
	}
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if len(allowed.Groups) > 0 {
		if resp = s.g.OffsetFetch(ctx, &allowed); resp == nil {
			return groupAnswer(resp)
		}
	}
	resp.Groups = append(resp.Groups, denied...)
	return resp, nil
}
