package protocol

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerId: v0-4, answered by Groups (issue 4), advertised and served only when
// the server has one.
//
// Idempotent producers only (no transactional id serves transactions here);
// v2 flexible; v3 producer id and epoch to bump; v4 no change.
func init() {
	register(api{key: 22, min: 0, max: 4, groups: true,
		acl: perResource("IDEMPOTENT_WRITE on the cluster, or WRITE on any topic (Kafka 3.0's rule)"),
		serve: func(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
			ctx := c.requestContext()
			req := kreq.(*kmsg.InitProducerIDRequest)
			if s.mayWriteIdempotently(ctx) {
				return groupAnswer(s.g.InitProducerID(ctx, req))
			}
			resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
			resp.ProducerID, resp.ProducerEpoch = -1, -1
			resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
			return resp, nil
		}})
}

// mayWriteIdempotently: since Kafka 3.0 WRITE on any topic implies
// IDEMPOTENT_WRITE, so idempotent producers (franz-go's and Java's
// default) need no cluster rule.
func (s *Server) mayWriteIdempotently(ctx context.Context) bool {
	if s.authorize(ctx, kmsg.ACLOperationIdempotentWrite, kmsg.ACLResourceTypeCluster, ClusterResource) {
		return true
	}
	for _, t := range s.b.TopicNames(ctx) {
		if s.authorize(ctx, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, t) {
			return true
		}
	}
	return false
}
