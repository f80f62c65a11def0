package protocol

import "github.com/twmb/franz-go/pkg/kmsg"

// AlterConfigs: v0-2, the older whole-set form of IncrementalAlterConfigs
// (44_incremental_alter_configs.go): the configs given become the topic's
// whole set of overrides, every other key going back to its default.
// Checked, stored and put in force as there, with the same ACLs.
//
// Version notes: v1 same as v0; v2 flexible.
func init() {
	register(api{key: 33, min: 0, max: 2, serve: serveAlterConfigs,
		acl: perResource("ALTER_CONFIGS on each topic, or on the cluster for the broker")})
}

func serveAlterConfigs(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		changes := make([]kmsg.IncrementalAlterConfigsRequestResourceConfig, 0, len(rr.Configs))
		for _, cfg := range rr.Configs {
			ch := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			ch.Name, ch.Value, ch.Op = cfg.Name, cfg.Value, kmsg.IncrementalAlterConfigOpSet
			if cfg.Value == nil {
				ch.Op = kmsg.IncrementalAlterConfigOpDelete
			}
			changes = append(changes, ch)
		}
		r := kmsg.NewAlterConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		r.ErrorCode, r.ErrorMessage = s.alterConfigs(c.requestContext(), rr.ResourceType, rr.ResourceName, changes, true, req.ValidateOnly)
		resp.Resources = append(resp.Resources, r)
	}
	return resp, nil
}
