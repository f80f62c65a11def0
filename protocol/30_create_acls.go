package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreateAcls: v0-3, answered by the Authorizer when it implements ACLAdmin,
// SECURITY_DISABLED for every creation otherwise.
//
// Version notes: v1 pattern types; v2 flexible; v3 USER_INFO operations.
func init() {
	register(api{key: 30, min: 0, max: 3, serve: serveCreateACLs,
		acl: wholeRequest(kmsg.ACLOperationAlter, kmsg.ACLResourceTypeCluster, nil,
			func(r kmsg.Request, w kmsg.Response, code int16) {
				resp := w.(*kmsg.CreateACLsResponse)
				for range r.(*kmsg.CreateACLsRequest).Creations {
					res := kmsg.NewCreateACLsResponseResult()
					res.ErrorCode = code
					resp.Results = append(resp.Results, res)
				}
			})})
}

func serveCreateACLs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreateACLsRequest)
	if a, ok := s.authz.(ACLAdmin); ok {
		if resp := a.CreateACLs(c.requestContext(), req); resp != nil {
			return resp, nil
		}
	}
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	for range req.Creations {
		res := kmsg.NewCreateACLsResponseResult()
		res.ErrorCode = kerr.SecurityDisabled.Code
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}
