package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroups: v0-5, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v3 authorized operations; v5 flexible.
func init() {
	register(api{key: 15, min: 0, max: 5, groups: true,
		acl: perResource("DESCRIBE on each group"),
		serve: func(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
			ctx := c.requestContext()
			req := kreq.(*kmsg.DescribeGroupsRequest)
			allowed := *req
			allowed.Groups = nil
			var denied []kmsg.DescribeGroupsResponseGroup
			for _, g := range req.Groups {
				if s.authorize(ctx, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, g) {
					allowed.Groups = append(allowed.Groups, g)
					continue
				}
				rg := kmsg.NewDescribeGroupsResponseGroup()
				rg.Group, rg.ErrorCode = g, kerr.GroupAuthorizationFailed.Code
				denied = append(denied, rg)
			}
			resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
			if len(allowed.Groups) > 0 {
				if resp = s.g.DescribeGroups(ctx, &allowed); resp == nil {
					return groupAnswer(resp)
				}
			}
			resp.Groups = append(resp.Groups, denied...)
			return resp, nil
		}})
}
