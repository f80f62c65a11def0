package protocol

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetFetch: v1-8, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v6 flexible; v8 batches groups.
func init() {
	register(api{key: 9, min: 1, max: 8, groups: true,
		acl:   perResource("DESCRIBE on each group and on each topic (others are left out of an all-topics answer)"),
		serve: serveOffsetFetch})
}

func serveOffsetFetch(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	resp, err := offsetFetchByGroup(s, c, kreq)
	if r, ok := resp.(*kmsg.OffsetFetchResponse); ok && err == nil {
		s.hideOffsetTopics(c.requestContext(), kreq.(*kmsg.OffsetFetchRequest), r)
	}
	return resp, err
}

// hideOffsetTopics answers the topics the principal may not DESCRIBE
// TOPIC_AUTHORIZATION_FAILED when the request named them and leaves them
// out when it asked for all, as Kafka does.
func (s *Server) hideOffsetTopics(ctx context.Context, req *kmsg.OffsetFetchRequest, resp *kmsg.OffsetFetchResponse) {
	may := func(t string) bool { return s.authorize(ctx, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, t) }
	denied := kerr.TopicAuthorizationFailed.Code
	if req.Version < 8 {
		if resp.ErrorCode != 0 {
			return
		}
		kept := resp.Topics[:0]
		for _, t := range resp.Topics {
			if !may(t.Topic) {
				if req.Topics == nil {
					continue
				}
				for i := range t.Partitions {
					p := &t.Partitions[i]
					p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode = -1, -1, nil, denied
				}
			}
			kept = append(kept, t)
		}
		resp.Topics = kept
		return
	}
	for gi := range resp.Groups {
		g := &resp.Groups[gi]
		if g.ErrorCode != 0 {
			continue
		}
		all := true
		for _, rg := range req.Groups {
			if rg.Group == g.Group {
				all = rg.Topics == nil
			}
		}
		kept := g.Topics[:0]
		for _, t := range g.Topics {
			if !may(t.Topic) {
				if all {
					continue
				}
				for i := range t.Partitions {
					p := &t.Partitions[i]
					p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode = -1, -1, nil, denied
				}
			}
			kept = append(kept, t)
		}
		g.Topics = kept
	}
}

func offsetFetchByGroup(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
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
