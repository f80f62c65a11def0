package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// DescribeGroups: v0-5, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v3 authorized operations; v5 flexible.
func init() {
	register(api{key: 15, min: 0, max: 5, groups: true,
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			return groupAnswer(s.g.DescribeGroups(c.requestContext(), req.(*kmsg.DescribeGroupsRequest)))
		}})
}
