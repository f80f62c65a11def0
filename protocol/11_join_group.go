package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// JoinGroup: v0-9, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// v5 static membership (group.instance.id); v6 flexible; v9 reason.
func init() {
	register(api{key: 11, min: 0, max: 9, groups: true,
		acl: wholeRequest(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup,
			func(r kmsg.Request) string { return r.(*kmsg.JoinGroupRequest).Group },
			func(_ kmsg.Request, r kmsg.Response, code int16) { r.(*kmsg.JoinGroupResponse).ErrorCode = code }),
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			return groupAnswer(s.g.JoinGroup(c.requestContext(), req.(*kmsg.JoinGroupRequest)))
		}})
}
