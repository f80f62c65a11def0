package protocol

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// DescribeConfigs: v1-4.
//
// Topic resources list every topic config, broker resources (named by this
// node's id, or empty) every broker config, each with its value, source and
// sensitivity as the Backend reports them; sensitive values are never sent.
// Other resource types are INVALID_REQUEST.
//
// Version notes: v1 Source and synonyms (sent only when asked); v3
// ConfigType and Documentation (sent only when asked); v4 flexible.
func init() {
	register(api{key: 32, min: 1, max: 4, serve: serveDescribeConfigs,
		acl: perResource("DESCRIBE_CONFIGS on each topic, or on the cluster for the broker")})
}

func serveDescribeConfigs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	node := strconv.Itoa(int(s.cfg.NodeID))
	for _, rr := range req.Resources {
		r := kmsg.NewDescribeConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		var cfgs []kmsg.DescribeConfigsResponseResourceConfig
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			if !s.authorize(ctx, kmsg.ACLOperationDescribeConfigs, kmsg.ACLResourceTypeTopic, rr.ResourceName) {
				r.ErrorCode = kerr.TopicAuthorizationFailed.Code
				break
			}
			var err error
			cfgs, err = s.b.TopicConfigs(ctx, rr.ResourceName, rr.ConfigNames)
			if err != nil {
				r.ErrorCode = s.errCode(err, kerr.UnknownServerError, "describe configs", zap.String("topic", rr.ResourceName))
				r.ErrorMessage = kmsg.StringPtr(err.Error())
			}
		case kmsg.ConfigResourceTypeBroker:
			if rr.ResourceName != "" && rr.ResourceName != node {
				r.ErrorCode = kerr.InvalidRequest.Code
				r.ErrorMessage = kmsg.StringPtr("unknown broker " + rr.ResourceName + ": this is node " + node)
				break
			}
			if !s.authorize(ctx, kmsg.ACLOperationDescribeConfigs, kmsg.ACLResourceTypeCluster, ClusterResource) {
				r.ErrorCode = kerr.ClusterAuthorizationFailed.Code
				break
			}
			cfgs = s.b.BrokerConfigs(ctx, rr.ConfigNames)
		default:
			r.ErrorCode = kerr.InvalidRequest.Code
			r.ErrorMessage = kmsg.StringPtr("unsupported resource type " + rr.ResourceType.String())
		}
		for _, c := range cfgs {
			if c.IsSensitive {
				c.Value = nil
			}
			if !req.IncludeSynonyms {
				c.ConfigSynonyms = nil
			}
			if !req.IncludeDocumentation {
				c.Documentation = nil
			}
			r.Configs = append(r.Configs, c)
		}
		resp.Resources = append(resp.Resources, r)
	}
	return resp, nil
}
