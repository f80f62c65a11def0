package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeCluster: v0-2.
//
// One broker, this node, which is also the controller. Version notes: v1
// EndpointType (only brokers, 1, are described: controllers are
// UNSUPPORTED_ENDPOINT_TYPE); v2 IncludeFencedBrokers (none is ever fenced).
func init() {
	register(api{key: 60, min: 0, max: 2, serve: serveDescribeCluster,
		acl: wholeRequest(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeCluster, nil,
			func(_ kmsg.Request, r kmsg.Response, code int16) { r.(*kmsg.DescribeClusterResponse).ErrorCode = code })})
}

func serveDescribeCluster(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = req.EndpointType
	if req.Version >= 1 && req.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		return resp, nil
	}
	resp.ClusterID = s.b.ClusterID()
	resp.ControllerID = s.cfg.NodeID
	b := kmsg.NewDescribeClusterResponseBroker()
	b.NodeID, b.Host, b.Port = s.cfg.NodeID, c.l.host, c.l.port
	resp.Brokers = []kmsg.DescribeClusterResponseBroker{b}
	return resp, nil
}
