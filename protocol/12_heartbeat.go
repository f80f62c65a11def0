package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// Heartbeat: v0-4, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v3 group.instance.id; v4 flexible.
func init() {
	register(api{key: 12, min: 0, max: 4, groups: true,
		acl: wholeRequest(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup,
			func(r kmsg.Request) string { return r.(*kmsg.HeartbeatRequest).Group },
			func(_ kmsg.Request, r kmsg.Response, code int16) { r.(*kmsg.HeartbeatResponse).ErrorCode = code }),
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			return groupAnswer(s.g.Heartbeat(c.requestContext(), req.(*kmsg.HeartbeatRequest)))
		}})
}
