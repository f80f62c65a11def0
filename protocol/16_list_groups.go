package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// ListGroups: v0-4, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v3 flexible; v4 states filter.
func init() {
	register(api{key: 16, min: 0, max: 4, groups: true,
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			return groupAnswer(s.g.ListGroups(c.requestContext(), req.(*kmsg.ListGroupsRequest)))
		}})
}
