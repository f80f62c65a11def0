package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// InitProducerId: v0-4, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// Idempotent producers only (no transactional id serves transactions here);
// v2 flexible; v3 producer id and epoch to bump; v4 no change.
func init() {
	register(api{key: 22, min: 0, max: 4, groups: true,
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			return groupAnswer(s.g.InitProducerID(c.requestContext(), req.(*kmsg.InitProducerIDRequest)))
		}})
}
