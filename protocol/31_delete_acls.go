package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteAcls: v0-3, answered by the Authorizer when it implements ACLAdmin,
// SECURITY_DISABLED for every filter otherwise.
//
// Version notes: v1 pattern types; v2 flexible; v3 USER_INFO operations.
func init() {
	register(api{key: 31, min: 0, max: 3, serve: serveDeleteACLs,
		acl: wholeRequest(kmsg.ACLOperationAlter, kmsg.ACLResourceTypeCluster, nil,
			func(r kmsg.Request, w kmsg.Response, code int16) {
				resp := w.(*kmsg.DeleteACLsResponse)
				for range r.(*kmsg.DeleteACLsRequest).Filters {
					res := kmsg.NewDeleteACLsResponseResult()
					res.ErrorCode = code
					resp.Results = append(resp.Results, res)
				}
			})})
}

func serveDeleteACLs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteACLsRequest)
	if a, ok := s.authz.(ACLAdmin); ok {
		if resp := a.DeleteACLs(c.requestContext(), req); resp != nil {
			return resp, nil
		}
	}
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	for range req.Filters {
		res := kmsg.NewDeleteACLsResponseResult()
		res.ErrorCode = kerr.SecurityDisabled.Code
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}
