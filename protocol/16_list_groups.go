package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// ListGroups: v0-5, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v3 flexible; v4 states filter; v5 types filter and each group's type
// (always "classic": no KIP-848 consumer groups).
func init() {
	register(api{key: 16, min: 0, max: 5, groups: true,
		acl: perResource("lists only the groups the principal may DESCRIBE (all with DESCRIBE on the cluster)"),
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			ctx := c.requestContext()
			resp := s.g.ListGroups(ctx, req.(*kmsg.ListGroupsRequest))
			if resp == nil || s.authorize(ctx, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeCluster, ClusterResource) {
				return groupAnswer(resp)
			}
			kept := resp.Groups[:0]
			for _, g := range resp.Groups {
				if s.authorize(ctx, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, g.Group) {
					kept = append(kept, g)
				}
			}
			resp.Groups = kept
			return resp, nil
		}})
}
