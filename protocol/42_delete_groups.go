package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// DeleteGroups: v0-2, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v2 flexible.
func init() {
	register(api{key: 42, min: 0, max: 2, groups: true,
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			return groupAnswer(s.g.DeleteGroups(c.requestContext(), req.(*kmsg.DeleteGroupsRequest)))
		}})
}
