package protocol

import (
	"context"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// IncrementalAlterConfigs: v0-1 (Java AdminClient incrementalAlterConfigs,
// kafka-configs --alter).
//
// Topic resources need ALTER_CONFIGS on the topic; the Backend checks each
// change as the YAML file's settings are, stores the result durably and
// puts it in force before the answer; a refused resource changes nothing
// (INVALID_CONFIG with a message naming the key). Broker resources need
// ALTER_CONFIGS on the cluster and are refused: the broker's configs are
// read-only at run time (DescribeConfigs says so). Other resource types are
// INVALID_REQUEST.
//
// Version notes: v1 flexible.
func init() {
	register(api{key: 44, min: 0, max: 1, serve: serveIncrementalAlterConfigs,
		acl: perResource("ALTER_CONFIGS on each topic, or on the cluster for the broker")})
}

func serveIncrementalAlterConfigs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		r := kmsg.NewIncrementalAlterConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		r.ErrorCode, r.ErrorMessage = s.alterConfigs(c.requestContext(), rr.ResourceType, rr.ResourceName, rr.Configs, false, req.ValidateOnly)
		resp.Resources = append(resp.Resources, r)
	}
	return resp, nil
}

// alterConfigs serves one resource of IncrementalAlterConfigs or (replace)
// AlterConfigs: its error code and message.
func (s *Server) alterConfigs(ctx context.Context, rt kmsg.ConfigResourceType, name string,
	changes []kmsg.IncrementalAlterConfigsRequestResourceConfig, replace, validateOnly bool,
) (int16, *string) {
	switch rt {
	case kmsg.ConfigResourceTypeTopic:
		if !s.authorize(ctx, kmsg.ACLOperationAlterConfigs, kmsg.ACLResourceTypeTopic, name) {
			return kerr.TopicAuthorizationFailed.Code, nil
		}
		if err := s.b.AlterTopicConfigs(ctx, name, changes, replace, validateOnly); err != nil {
			code := s.errCode(err, kerr.UnknownServerError, "alter configs", zap.String("topic", name))
			// The code says INVALID_CONFIG; the message says why.
			msg := err.Error()
			if ke := kerr.ErrorForCode(code); ke != nil {
				msg = strings.TrimSuffix(msg, ": "+ke.Error())
			}
			return code, kmsg.StringPtr(msg)
		}
		return 0, nil
	case kmsg.ConfigResourceTypeBroker, kmsg.ConfigResourceTypeBrokerLogger:
		if node := strconv.Itoa(int(s.cfg.NodeID)); name != "" && name != node {
			return kerr.InvalidRequest.Code, kmsg.StringPtr("unknown broker " + name + ": this is node " + node)
		}
		if !s.authorize(ctx, kmsg.ACLOperationAlterConfigs, kmsg.ACLResourceTypeCluster, ClusterResource) {
			return kerr.ClusterAuthorizationFailed.Code, nil
		}
		return kerr.InvalidRequest.Code, kmsg.StringPtr("broker configs cannot change while ztfbroker runs: " +
			"set them in its configuration file and restart")
	}
	return kerr.InvalidRequest.Code, kmsg.StringPtr("unsupported resource type " + rt.String())
}
