package protocol

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// Produce: v3-10.
//
// v3 is the first version carrying record batch v2, the only format stored;
// a magic 0/1 message set is answered UNSUPPORTED_FOR_MESSAGE_FORMAT and a
// batch whose framing does not add up CORRUPT_MESSAGE, per partition. The
// batches go to Backend.Produce as sent (CRC and message.max.bytes are the
// Backend's to check). The partitions of one request are appended in
// parallel, so their flushes can share one fsync. acks=0 sends no response
// (a failed partition closes the connection instead, as in Kafka); acks 1
// and -1 mean the same on one node.
//
// Advertised as 0-10 although v0-2 are refused (connection closed), as
// Kafka 4 does (KAFKA-18659): librdkafka enables gzip, snappy, lz4 and zstd
// only when the advertised Produce range includes v2 (librdkafka #4956) and
// otherwise sends every batch uncompressed without a word. Clients take the
// highest common version, so none sends v0-2 to us.
//
// Version notes: v5 LogStartOffset; v7 zstd allowed; v8 ErrorRecords and
// ErrorMessage; v9 flexible; v10 CurrentLeader/NodeEndpoints tags (not
// sent: this node is always the leader). Transactions are not served
// (no AddPartitionsToTxn), so a transactional produce is refused.
func init() { register(api{key: produceKey, min: 3, max: 10, advertiseV0: true, serve: serveProduce}) }

func serveProduce(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)

	var fixed int16 // one code for every partition
	switch {
	case req.Acks != 0 && req.Acks != 1 && req.Acks != -1:
		fixed = kerr.InvalidRequiredAcks.Code
	case req.TransactionID != nil:
		fixed = kerr.TransactionalIDAuthorizationFailed.Code
	}

	ctx := c.requestContext()
	if req.TimeoutMillis > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMillis)*time.Millisecond)
		defer cancel()
	}

	type job struct {
		topic string
		rp    *kmsg.ProduceRequestTopicPartition
		out   *kmsg.ProduceResponseTopicPartition
	}
	var jobs []job
	resp.Topics = make([]kmsg.ProduceResponseTopic, 0, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		t := kmsg.NewProduceResponseTopic()
		t.Topic = rt.Topic
		t.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			p := &t.Partitions[j]
			*p = kmsg.NewProduceResponseTopicPartition()
			p.Partition = rt.Partitions[j].Partition
			p.BaseOffset, p.LogAppendTime, p.LogStartOffset = -1, -1, -1
			p.ErrorCode = fixed
			if fixed == 0 {
				jobs = append(jobs, job{rt.Topic, &rt.Partitions[j], p})
			}
		}
		resp.Topics = append(resp.Topics, t)
	}

	run := func(j job) {
		records, code := checkBatches(j.rp.Records)
		if code != 0 {
			j.out.ErrorCode = code
			c.clientError("bad_batch", "produce: refused record batches", zap.String("topic", j.topic),
				zap.Int32("partition", j.rp.Partition), zap.String("error", kerr.ErrorForCode(code).Error()))
			return
		}
		base, start, err := s.b.Produce(ctx, j.topic, j.rp.Partition, j.rp.Records)
		if err != nil {
			j.out.ErrorCode = s.errCode(err, kerr.KafkaStorageError, "produce", zap.String("topic", j.topic),
				zap.Int32("partition", j.rp.Partition))
			return
		}
		j.out.BaseOffset, j.out.LogStartOffset = base, start
		s.m.produced(j.topic, len(j.rp.Records), records)
	}
	if len(jobs) == 1 {
		run(jobs[0])
	} else {
		var wg sync.WaitGroup
		wg.Add(len(jobs))
		for _, j := range jobs {
			s.goTracked(func() {
				defer wg.Done()
				run(j)
			})
		}
		wg.Wait()
	}
	if req.Acks == 0 {
		// No answer to carry an error: close the connection instead, as
		// Kafka does, so the client notices and refreshes its metadata.
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					return nil, fmt.Errorf("acks=0 produce to %s/%d failed: %w", t.Topic, p.Partition, kerr.ErrorForCode(p.ErrorCode))
				}
			}
		}
		return nil, nil
	}
	return resp, nil
}
