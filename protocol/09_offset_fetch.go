package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// OffsetFetch: v1-8, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v6 flexible; v8 batches groups.
func init() {
	register(api{key: 9, min: 1, max: 8, groups: true,
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			return groupAnswer(s.g.OffsetFetch(c.requestContext(), req.(*kmsg.OffsetFetchRequest)))
		}})
}
