package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// SyncGroup: v0-5, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// An empty assignment must still be a valid (empty) byte string; v4
// flexible; v5 protocol type and name.
func init() {
	register(api{key: 14, min: 0, max: 5, groups: true,
		acl: wholeRequest(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup,
			func(r kmsg.Request) string { return r.(*kmsg.SyncGroupRequest).Group },
			func(_ kmsg.Request, r kmsg.Response, code int16) { r.(*kmsg.SyncGroupResponse).ErrorCode = code }),
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			return groupAnswer(s.g.SyncGroup(c.requestContext(), req.(*kmsg.SyncGroupRequest)))
		}})
}
