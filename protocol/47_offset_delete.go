package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// OffsetDelete: v0, answered by Groups (issue 4), advertised and served only
// when the server has one.
func init() {
	register(api{key: 47, min: 0, max: 0, groups: true,
		acl: wholeRequest(kmsg.ACLOperationDelete, kmsg.ACLResourceTypeGroup,
			func(r kmsg.Request) string { return r.(*kmsg.OffsetDeleteRequest).Group },
			func(_ kmsg.Request, r kmsg.Response, code int16) { r.(*kmsg.OffsetDeleteResponse).ErrorCode = code }),
		serve: func(s *Server, c *conn, req kmsg.Request) (kmsg.Response, error) {
			return groupAnswer(s.g.OffsetDelete(c.requestContext(), req.(*kmsg.OffsetDeleteRequest)))
		}})
}
