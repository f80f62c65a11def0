package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// LeaveGroup: v0-5, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v3 batched members; v4 flexible; v5 reason.
func init() {
	register(api{key: 13, min: 0, max: 5, groups: true,
		acl: wholeRequest(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup,
			func(r kmsg.Request) string { return r.(*kmsg.LeaveGroupRequest).Group },
			func(_ kmsg.Request, r kmsg.Response, code int16) { r.(*kmsg.LeaveGroupResponse).ErrorCode = code }),
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			return groupAnswer(s.g.LeaveGroup(c.requestContext(), req.(*kmsg.LeaveGroupRequest)))
		}})
}
