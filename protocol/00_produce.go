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
// Backend's to check). With a DeferredProducer Backend the partitions are
// appended in order and the answer waits for their durability in the write
// goroutine, so the next request is read meanwhile and pipelined requests
// share fsyncs; otherwise the partitions of one request are appended in
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
func init() {
	register(api{key: produceKey, min: 3, max: 10, advertiseV0: true, serve: serveProduce,
		acl: perResource("WRITE on each topic")})
}

func serveProduce(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	defer c.accountProduce(req, resp) // per-user counts and the producer quota (quota.go)

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
			if fixed == 0 && !s.authorize(ctx, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, rt.Topic) {
				p.ErrorCode = kerr.TopicAuthorizationFailed.Code
			}
			if p.ErrorCode == 0 {
				jobs = append(jobs, job{rt.Topic, &rt.Partitions[j], p})
			}
		}
		resp.Topics = append(resp.Topics, t)
	}

	fail := func(j job, err error) {
		j.out.BaseOffset, j.out.LogStartOffset = -1, -1
		j.out.ErrorCode = s.errCode(err, kerr.KafkaStorageError, "produce", zap.String("topic", j.topic),
			zap.Int32("partition", j.rp.Partition))
		if refusedBatch(j.out.ErrorCode) {
			// The client's bytes are at fault: say which client, and
			// why, once per refused partition.
			c.clientError("bad_batch", "produce: refused record batches", zap.String("topic", j.topic),
				zap.Int32("partition", j.rp.Partition), zap.String("reason", err.Error()))
		}
	}
	check := func(j job) (records int64, ok bool) {
		records, code := checkBatches(j.rp.Records)
		if code != 0 {
			j.out.ErrorCode = code
			c.clientError("bad_batch", "produce: refused record batches", zap.String("topic", j.topic),
				zap.Int32("partition", j.rp.Partition), zap.String("error", kerr.ErrorForCode(code).Error()))
			return 0, false
		}
		return records, true
	}

	if dp, ok := s.b.(DeferredProducer); ok {
		// Append every partition now, in request order; the write
		// goroutine waits for durability before it answers, while this
		// goroutine reads the connection's next request.
		deferred := &produceResponse{ProduceResponse: resp}
		for _, j := range jobs {
			records, ok := check(j)
			if !ok {
				continue
			}
			base, start, wait, err := dp.ProduceDeferred(ctx, j.topic, j.rp.Partition, j.rp.Records)
			if err != nil {
				fail(j, err)
				continue
			}
			j.out.BaseOffset, j.out.LogStartOffset = base, start
			s.m.produced(j.topic, len(j.rp.Records), records)
			deferred.waits = append(deferred.waits, func() {
				if err := wait(); err != nil {
					fail(j, err)
				}
			})
		}
		if req.Acks == 0 {
			return nil, acksZeroError(resp)
		}
		return deferred, nil
	}

	run := func(j job) {
		records, ok := check(j)
		if !ok {
			return
		}
		base, start, err := s.b.Produce(ctx, j.topic, j.rp.Partition, j.rp.Records)
		if err != nil {
			fail(j, err)
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
		return nil, acksZeroError(resp)
	}
	return resp, nil
}

// refusedBatch says whether a Backend's code refuses the batches themselves
// (Kafka's LogValidator codes), rather than the partition's state.
func refusedBatch(code int16) bool {
	switch code {
	case kerr.CorruptMessage.Code, kerr.InvalidRecord.Code, kerr.InvalidTimestamp.Code,
		kerr.MessageTooLarge.Code, kerr.UnsupportedForMessageFormat.Code:
		return true
	}
	return false
}

// acksZeroError is the error that closes the connection after a failed
// acks=0 produce: there is no answer to carry it, so, as Kafka does, the
// connection closes and the client notices and refreshes its metadata.
func acksZeroError(resp *kmsg.ProduceResponse) error {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return fmt.Errorf("acks=0 produce to %s/%d failed: %w", t.Topic, p.Partition, kerr.ErrorForCode(p.ErrorCode))
			}
		}
	}
	return nil
}

// produceResponse is a Produce answer whose partitions are appended but
// not yet acknowledged: the write goroutine calls resolve, which waits for
// each partition's durability and turns a failure into its error code,
// before encoding it. Responses stay in request order.
type produceResponse struct {
	*kmsg.ProduceResponse
	waits []func()
}

func (p *produceResponse) resolve() {
	for _, w := range p.waits {
		w()
	}
	p.waits = nil
}
