package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// DescribeProducers: v0 (Java AdminClient describeProducers,
// kafka-transactions.sh describe-producers). Each partition's idempotent
// producers as its log remembers them (id, epoch, last sequence and
// append time); no transactions, so no coordinator epoch or open
// transaction. Needs READ on each topic, as in Kafka.
func init() {
	register(api{key: 61, min: 0, max: 0, serve: serveDescribeProducers,
		acl: perResource("READ on each topic")})
}

func serveDescribeProducers(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	ctx := c.requestContext()
	req := kreq.(*kmsg.DescribeProducersRequest)
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewDescribeProducersResponseTopic()
		t.Topic = rt.Topic
		allowed := s.authorize(ctx, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, rt.Topic)
		for _, i := range rt.Partitions {
			p := kmsg.NewDescribeProducersResponseTopicPartition()
			p.Partition = i
			if !allowed {
				p.ErrorCode = kerr.TopicAuthorizationFailed.Code
				t.Partitions = append(t.Partitions, p)
				continue
			}
			ps, err := s.b.Producers(ctx, rt.Topic, i)
			if err != nil {
				p.ErrorCode = s.errCode(err, kerr.KafkaStorageError, "describe producers",
					zap.String("topic", rt.Topic), zap.Int32("partition", i))
				p.ErrorMessage = kmsg.StringPtr(err.Error())
			}
			p.ActiveProducers = ps
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, nil
}
