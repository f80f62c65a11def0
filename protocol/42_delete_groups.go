package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteGroups: v0-2, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v2 flexible.
func init() {
	register(api{key: 42, min: 0, max: 2, groups: true,
		acl: perResource("DELETE on each group"),
		serve: func(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
			ctx := c.requestContext()
			req := kreq.(*kmsg.DeleteGroupsRequest)
			allowed := *req
			allowed.Groups = nil
			var denied []kmsg.DeleteGroupsResponseGroup
			for _, g := range req.Groups {
				if s.authorize(ctx, kmsg.ACLOperationDelete, kmsg.ACLResourceTypeGroup, g) {
					allowed.Groups = append(allowed.Groups, g)
					continue
				}
				rg := kmsg.NewDeleteGroupsResponseGroup()
				rg.Group, rg.ErrorCode = g, kerr.GroupAuthorizationFailed.Code
				denied = append(denied, rg)
			}
			resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
			if len(allowed.Groups) > 0 {
				if resp = s.g.DeleteGroups(ctx, &allowed); resp == nil {
					return groupAnswer(resp)
				}
			}
			resp.Groups = append(resp.Groups, denied...)
			return resp, nil
		}})
}
