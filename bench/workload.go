package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func runTarget(ctx context.Context, cfg Config, t Target) TargetReport {
	tr := TargetReport{Target: t}
	fail := func(phase string, err error) {
		tr.Errors = append(tr.Errors, fmt.Sprintf("%s: %v", phase, err))
		fmt.Fprintf(cfg.Log, "bench: %s: %s: %v\n", t.Name, phase, err)
	}
	run := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	for _, size := range cfg.Sizes {
		topic := fmt.Sprintf("bench-%s-%d", run, size)
		fmt.Fprintf(cfg.Log, "bench: %s: produce %d B records for %s\n", t.Name, size, cfg.Duration)
		p, err := produceThroughput(ctx, cfg, t, topic, size)
		if err != nil {
			fail(fmt.Sprintf("produce %d B", size), err)
			continue
		}
		tr.Throughput = append(tr.Throughput, p)
		fmt.Fprintf(cfg.Log, "bench: %s: consume %d B records\n", t.Name, size)
		c, err := consumeThroughput(ctx, cfg, t, topic, size)
		if err != nil {
			fail(fmt.Sprintf("consume %d B", size), err)
		} else {
			tr.Throughput = append(tr.Throughput, c)
		}
		deleteTopic(ctx, t, topic)
	}
	for _, rate := range cfg.Rates {
		topic := fmt.Sprintf("bench-%s-lat-%g", run, rate)
		fmt.Fprintf(cfg.Log, "bench: %s: latency at %g MB/s for %s\n", t.Name, rate, cfg.Duration)
		l, err := latency(ctx, cfg, t, topic, rate)
		if err != nil {
			fail(fmt.Sprintf("latency %g MB/s", rate), err)
			continue
		}
		tr.Latency = append(tr.Latency, l)
		deleteTopic(ctx, t, topic)
	}
	return tr
}

func client(t Target, opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{
		kgo.SeedBrokers(t.Addrs...),
		kgo.ClientID("ztfbroker-bench"),
		kgo.DialTimeout(5 * time.Second),
	}
	sec, err := t.Security.opts()
	if err != nil {
		return nil, err
	}
	base = append(base, sec...)
	return kgo.NewClient(append(base, opts...)...)
}

func createTopic(ctx context.Context, cfg Config, t Target, topic string) error {
	cl, err := client(t)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).CreateTopic(ctx, cfg.Partitions, 1, nil, topic)
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

func deleteTopic(ctx context.Context, t Target, topic string) {
	cl, err := client(t)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, _ = kadm.NewClient(cl).DeleteTopics(ctx, topic)
}

func randomValue(size int) []byte {
	b := make([]byte, size)
	_, _ = rand.Read(b)
	return b
}

func producerOpts(size int) []kgo.Opt {
	buffered := max(16, (8<<20)/size)
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.MaxBufferedRecords(buffered),
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}
}

// produceThroughput runs cfg.Producers producers flat out for cfg.Duration
// (or cfg.MaxBytes) and counts acknowledged records.
func produceThroughput(ctx context.Context, cfg Config, t Target, topic string, size int) (Throughput, error) {
	res := Throughput{Phase: "produce", RecordBytes: size, Producers: cfg.Producers, Partitions: cfg.Partitions}
	if err := createTopic(ctx, cfg, t, topic); err != nil {
		return res, err
	}
	value := randomValue(size)
	clients := make([]*kgo.Client, cfg.Producers)
	for i := range clients {
		cl, err := client(t, append(producerOpts(size), kgo.DefaultProduceTopic(topic))...)
		if err != nil {
			return res, err
		}
		defer cl.Close()
		clients[i] = cl
	}
	var (
		acked, queued atomic.Int64
		firstErr      atomic.Value
		lastAck       atomic.Int64
	)
	limit := cfg.MaxBytes / int64(size)
	sampler := startSampler(t.PID)
	self := startSampler(os.Getpid())
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil && firstErr.Load() == nil {
				if queued.Add(1) > limit {
					return
				}
				cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					acked.Add(1)
					lastAck.Store(time.Now().UnixNano())
				})
			}
		}()
	}
	wg.Wait()
	for _, cl := range clients {
		_ = cl.Flush(ctx)
	}
	end := time.Unix(0, lastAck.Load())
	res.CPUSeconds, res.MaxRSSBytes, _ = sampler.Stop()
	res.BenchCPUSeconds, _, _ = self.Stop()
	if err, _ := firstErr.Load().(error); err != nil {
		return res, fmt.Errorf("produce: %w", err)
	}
	res.fill(acked.Load(), end.Sub(start))
	if res.Records == 0 {
		return res, errors.New("produce: nothing acknowledged")
	}
	return res, nil
}

// consumeThroughput reads topic from the start to its current end offsets.
func consumeThroughput(ctx context.Context, cfg Config, t Target, topic string, size int) (Throughput, error) {
	res := Throughput{Phase: "consume", RecordBytes: size, Producers: cfg.Producers, Partitions: cfg.Partitions}
	adm, err := client(t)
	if err != nil {
		return res, err
	}
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	ends, err := kadm.NewClient(adm).ListEndOffsets(lctx, topic)
	cancel()
	adm.Close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return res, fmt.Errorf("list end offsets: %w", err)
	}
	var want int64
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	cl, err := client(t,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(16<<20),
	)
	if err != nil {
		return res, err
	}
	defer cl.Close()
	sampler := startSampler(t.PID)
	self := startSampler(os.Getpid())
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, cfg.Duration+10*time.Second)
	defer cancel()
	var got, bytes int64
	for got < want {
		fs := cl.PollFetches(pctx)
		if pctx.Err() != nil {
			break
		}
		for _, fe := range fs.Errors() {
			return res, fmt.Errorf("fetch: %w", fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			bytes += int64(len(r.Value))
		})
	}
	elapsed := time.Since(start)
	res.CPUSeconds, res.MaxRSSBytes, _ = sampler.Stop()
	res.BenchCPUSeconds, _, _ = self.Stop()
	res.fill(got, elapsed)
	if got == 0 {
		return res, errors.New("consume: no records")
	}
	return res, nil
}

// latency offers rate MB/s of cfg.LatencySize records on a fixed schedule
// and measures, for each record, receive time minus scheduled send time.
func latency(ctx context.Context, cfg Config, t Target, topic string, rate float64) (Latency, error) {
	size := cfg.LatencySize
	res := Latency{OfferedMBps: rate, RecordBytes: size, Producers: cfg.Producers, Partitions: cfg.Partitions}
	res.OfferedRecordsPerSec = rate * 1e6 / float64(size)
	if err := createTopic(ctx, cfg, t, topic); err != nil {
		return res, err
	}
	cons, err := client(t,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.FetchMaxBytes(64<<20),
	)
	if err != nil {
		return res, err
	}
	defer cons.Close()
	producers := make([]*kgo.Client, cfg.Producers)
	for i := range producers {
		cl, err := client(t, append(producerOpts(size), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))...)
		if err != nil {
			return res, err
		}
		defer cl.Close()
		producers[i] = cl
	}

	// Warm up: one record through every producer, seen by the consumer,
	// so that connections and metadata are in place before the clock runs.
	warm := make([]byte, 16)
	for _, p := range producers {
		if err := p.ProduceSync(ctx, &kgo.Record{Value: warm}).FirstErr(); err != nil {
			return res, fmt.Errorf("warm-up produce: %w", err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	for seen := 0; seen < len(producers); {
		fs := cons.PollFetches(wctx)
		if wctx.Err() != nil {
			cancel()
			return res, errors.New("warm-up: consumer saw no records in 15s")
		}
		for _, fe := range fs.Errors() {
			cancel()
			return res, fmt.Errorf("warm-up fetch: %w", fe.Err)
		}
		seen += fs.NumRecords()
	}
	cancel()

	interval := time.Duration(float64(time.Second) / res.OfferedRecordsPerSec)
	total := int64(cfg.Duration / interval)
	if total < 1 {
		total = 1
	}
	base := randomValue(size)
	var (
		sent     atomic.Int64
		firstErr atomic.Value
	)
	sampler := startSampler(t.PID)
	self := startSampler(os.Getpid())
	t0 := time.Now().Add(10 * time.Millisecond)

	// Consumer: latencies in nanoseconds, one per received record.
	lats := make([]int64, 0, total)
	var recvBytes int64
	consDone := make(chan struct{})
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	go func() {
		defer close(consDone)
		for int64(len(lats)) < total {
			fs := cons.PollFetches(cctx)
			now := time.Now().UnixNano()
			if cctx.Err() != nil {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				if len(r.Value) < 16 || len(r.Value) != size {
					return
				}
				sched := int64(binary.LittleEndian.Uint64(r.Value))
				lats = append(lats, now-sched)
				recvBytes += int64(len(r.Value))
			})
		}
	}()

	var wg sync.WaitGroup
	for pi, p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(pi); i < total && ctx.Err() == nil; i += int64(len(producers)) {
				sched := t0.Add(time.Duration(i) * interval)
				if d := time.Until(sched); d > 0 {
					time.Sleep(d)
				}
				v := make([]byte, size)
				copy(v, base)
				binary.LittleEndian.PutUint64(v, uint64(sched.UnixNano()))
				binary.LittleEndian.PutUint64(v[8:], uint64(i))
				p.Produce(ctx, &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
					}
				})
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	for _, p := range producers {
		_ = p.Flush(ctx)
	}
	sendEnd := time.Now()
	select {
	case <-consDone:
	case <-time.After(max(5*time.Second, cfg.Duration/2)):
		ccancel()
		<-consDone
	}
	res.CPUSeconds, res.MaxRSSBytes, _ = sampler.Stop()
	res.BenchCPUSeconds, _, _ = self.Stop()
	if err, _ := firstErr.Load().(error); err != nil {
		return res, fmt.Errorf("produce: %w", err)
	}
	res.Sent = sent.Load()
	res.Received = int64(len(lats))
	res.Seconds = sendEnd.Sub(t0).Seconds()
	res.AchievedMBps = float64(recvBytes) / 1e6 / max(res.Seconds, 1e-9)
	if len(lats) == 0 {
		return res, errors.New("latency: no records received")
	}
	ms := percentilesMs(lats, 0.50, 0.99, 0.999, 1)
	res.P50ms, res.P99ms, res.P999ms, res.Maxms = ms[0], ms[1], ms[2], ms[3]
	return res, nil
}

// percentilesMs sorts lats (nanoseconds) and returns the nearest-rank
// percentile for each q (0 < q <= 1), in milliseconds.
func percentilesMs(lats []int64, qs ...float64) []float64 {
	slices.Sort(lats)
	out := make([]float64, len(qs))
	if len(lats) == 0 {
		return out
	}
	for k, q := range qs {
		i := int(math.Ceil(q*float64(len(lats)))) - 1
		i = min(max(i, 0), len(lats)-1)
		out[k] = float64(lats[i]) / 1e6
	}
	return out
}
