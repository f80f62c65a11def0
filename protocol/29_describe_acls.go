package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeAcls: v0-3, answered by the Authorizer when it implements
// ACLAdmin, SECURITY_DISABLED otherwise (Kafka's answer without an
// authorizer).
//
// Version notes: v1 pattern types (v0 is LITERAL only); v2 flexible; v3 the
// USER_INFO operations (no change here).
func init() {
	register(api{key: 29, min: 0, max: 3, serve: serveDescribeACLs,
		acl: wholeRequest(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeCluster, nil,
			func(_ kmsg.Request, r kmsg.Response, code int16) { r.(*kmsg.DescribeACLsResponse).ErrorCode = code })})
}

func serveDescribeACLs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeACLsRequest)
	if a, ok := s.authz.(ACLAdmin); ok {
		if resp := a.DescribeACLs(c.requestContext(), req); resp != nil {
			return resp, nil
		}
	}
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	resp.ErrorCode = kerr.SecurityDisabled.Code
	return resp, nil
}
