package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// OffsetForLeaderEpoch: v2-4 (librdkafka sends exactly v2).
//
// Every partition has had one leader epoch, 0, since it was created, so the
// end offset of epoch 0 is the high watermark; any other requested epoch has
// no end offset (-1, -1), as Kafka answers for an epoch it never had.
//
// Version notes: v2 CurrentLeaderEpoch and ThrottleMillis; v3 ReplicaID;
// v4 flexible.
func init() {
	register(api{key: 23, min: 2, max: 4, serve: serveOffsetForLeaderEpoch,
		acl: perResource("DESCRIBE on each topic")})
}

func serveOffsetForLeaderEpoch(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewOffsetForLeaderEpochResponseTopic()
		t.Topic = rt.Topic
		allowed := s.authorize(ctx, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, rt.Topic)
		for _, rp := range rt.Partitions {
			p := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			p.Partition = rp.Partition
			p.LeaderEpoch, p.EndOffset = -1, -1
			switch {
			case !allowed:
				p.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case rp.CurrentLeaderEpoch > 0:
				p.ErrorCode = kerr.UnknownLeaderEpoch.Code
			default:
				_, hw, err := s.b.Offsets(ctx, rt.Topic, rp.Partition)
				if err != nil {
					p.ErrorCode = s.errCode(err, kerr.KafkaStorageError, "offset for leader epoch",
						zap.String("topic", rt.Topic), zap.Int32("partition", rp.Partition))
					break
				}
				if rp.LeaderEpoch == 0 {
					p.LeaderEpoch, p.EndOffset = 0, hw
				}
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
