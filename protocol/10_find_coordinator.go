package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator: v0-4.
//
// Always advertised, with or without Groups: librdkafka decides features on
// the advertised keys. This node coordinates every group (type 0) and
// transaction (type 1) key; other types are INVALID_REQUEST.
//
// Version notes: v1 CoordinatorType, ThrottleMillis, ErrorMessage; v3
// flexible; v4 batched CoordinatorKeys answered per key.
func init() {
	register(api{key: 10, min: 0, max: 4, serve: serveFindCoordinator,
		acl: public("every key's coordinator is this node: the answer tells nothing")})
}

func serveFindCoordinator(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	var code int16
	if req.CoordinatorType != 0 && req.CoordinatorType != 1 {
		code = kerr.InvalidRequest.Code
	}
	if req.Version < 4 {
		resp.ErrorCode = code
		if code == 0 {
			resp.NodeID, resp.Host, resp.Port = s.cfg.NodeID, c.l.host, c.l.port
		} else {
			resp.NodeID, resp.Port = -1, -1
		}
		return resp, nil
	}
	for _, key := range req.CoordinatorKeys {
		co := kmsg.NewFindCoordinatorResponseCoordinator()
		co.Key, co.ErrorCode = key, code
		if code == 0 {
			co.NodeID, co.Host, co.Port = s.cfg.NodeID, c.l.host, c.l.port
		} else {
			co.NodeID, co.Port = -1, -1
		}
		resp.Coordinators = append(resp.Coordinators, co)
	}
	return resp, nil
}
