package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// DeleteRecords: v0-2.
//
// Offset -1 means the high watermark (delete everything). Version notes: v2
// flexible.
func init() {
	register(api{key: 21, min: 0, max: 2, serve: serveDeleteRecords,
		acl: perResource("DELETE on each topic")})
}

func serveDeleteRecords(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewDeleteRecordsResponseTopic()
		t.Topic = rt.Topic
		allowed := s.authorize(ctx, kmsg.ACLOperationDelete, kmsg.ACLResourceTypeTopic, rt.Topic)
		for _, rp := range rt.Partitions {
			p := kmsg.NewDeleteRecordsResponseTopicPartition()
			p.Partition, p.LowWatermark = rp.Partition, -1
			before := rp.Offset
			var err error
			if !allowed {
				p.ErrorCode = kerr.TopicAuthorizationFailed.Code
				t.Partitions = append(t.Partitions, p)
				continue
			}
			if before == -1 {
				_, before, err = s.b.Offsets(ctx, rt.Topic, rp.Partition)
			}
			if err == nil {
				p.LowWatermark, err = s.b.DeleteRecords(ctx, rt.Topic, rp.Partition, before)
			}
			if err != nil {
				p.LowWatermark = -1
				p.ErrorCode = s.errCode(err, kerr.KafkaStorageError, "delete records",
					zap.String("topic", rt.Topic), zap.Int32("partition", rp.Partition))
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
