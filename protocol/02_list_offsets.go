package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// ListOffsets: v1-7.
//
// Timestamp -1 is the high watermark, -2 the log start offset, -3 (v7) the
// offset of the record with the largest timestamp, anything else the first
// record with a timestamp at or after it; Backend.ListOffset resolves all of
// them. No record at or after a timestamp is offset -1, timestamp -1.
//
// Version notes: v1 single offset and timestamp; v2 isolation level (no
// transactions: read_committed sees the same); v4 CurrentLeaderEpoch and
// LeaderEpoch (always 0); v6 flexible; v7 max timestamp.
func init() {
	register(api{key: 2, min: 1, max: 7, serve: serveListOffsets,
		acl: perResource("DESCRIBE on each topic")})
}

func serveListOffsets(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewListOffsetsResponseTopic()
		t.Topic = rt.Topic
		allowed := s.authorize(ctx, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, rt.Topic)
		for _, rp := range rt.Partitions {
			p := kmsg.NewListOffsetsResponseTopicPartition()
			p.Partition = rp.Partition
			p.Timestamp, p.Offset, p.LeaderEpoch = -1, -1, -1
			switch {
			case !allowed:
				p.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case rp.CurrentLeaderEpoch > 0:
				p.ErrorCode = kerr.UnknownLeaderEpoch.Code
			case rp.Timestamp == -3 && req.Version < 7:
				p.ErrorCode = kerr.UnsupportedVersion.Code
			default:
				off, ts, err := s.b.ListOffset(ctx, rt.Topic, rp.Partition, rp.Timestamp)
				if err != nil {
					p.ErrorCode = s.errCode(err, kerr.KafkaStorageError, "list offsets",
						zap.String("topic", rt.Topic), zap.Int32("partition", rp.Partition))
					break
				}
				p.Offset, p.Timestamp = off, ts
				if off >= 0 {
					p.LeaderEpoch = 0
				}
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
