package broker_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/protocol"
)

// stack is the real listener, broker and group coordinator on a loopback
// port, as `ztfbroker serve` wires them.
type stack struct {
	t    testing.TB
	dir  string
	addr string
	b    *broker.Broker
	gc   *broker.GroupCoordinator
	srv  *protocol.Server
	reg  *prometheus.Registry
	done chan struct{}
}

func startStack(t testing.TB, dir string) *stack {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.DataDir = dir
	b, err := broker.Open(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, dir: dir, b: b, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	if s.gc, err = broker.OpenGroupCoordinator(b, broker.DefaultGroupConfig(), s.reg); err != nil {
		t.Fatal(err)
	}
	s.gc.SetClientInfo(protocol.ClientInfo)
	if s.srv, err = protocol.NewServer(protocol.DefaultConfig(), b, s.gc, nil, nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go func() { defer close(s.done); s.srv.Serve(ln) }()
	t.Cleanup(s.stop)
	return s
}

func (s *stack) stop() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	<-s.done
	s.gc.Close()
	if err := s.b.Close(); err != nil {
		s.t.Error(err)
	}
	s.srv = nil
}

func (s *stack) client(opts ...kgo.Opt) *kgo.Client {
	s.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.addr), kgo.FetchMaxWait(200 * time.Millisecond)}, opts...)...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(cl.Close)
	return cl
}

// consumed collects what every member of a group consumed, by partition.
type consumed struct {
	mu      sync.Mutex
	offsets map[int32][]int64
	n       int
}

func (c *consumed) add(r *kgo.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offsets[r.Partition] = append(c.offsets[r.Partition], r.Offset)
	c.n++
}

func (c *consumed) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// member polls a group consumer until ctx ends, committing as it goes.
func member(ctx context.Context, cl *kgo.Client, into *consumed, wg *sync.WaitGroup) {
	defer wg.Done()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(into.add)
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func produceN(t *testing.T, cl *kgo.Client, topic string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("alert-%d", i))}
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// TestGroupKgoCooperativeSticky: three kgo members (cooperative-sticky)
// share six partitions, one leaves and the others take over its partitions
// with nothing skipped; kadm lists and describes the group; after a broker
// restart the group resumes exactly after its committed offsets.
func TestGroupKgoCooperativeSticky(t *testing.T) {
	s := startStack(t, t.TempDir())
	const topic = "ztf_20261128_programid1"
	if err := s.b.CreateTopic(context.Background(), topic, 6, nil, false); err != nil {
		t.Fatal(err)
	}
	producer := s.client(kgo.RecordPartitioner(kgo.RoundRobinPartitioner())) // idempotent by default
	produceN(t, producer, topic, 600)

	got := &consumed{offsets: map[int32][]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	opts := []kgo.Opt{
		kgo.ConsumerGroup("fink"), kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.HeartbeatInterval(300 * time.Millisecond),
		kgo.AutoCommitInterval(200 * time.Millisecond),
	}
	members := make([]*kgo.Client, 3)
	mctx := make([]context.CancelFunc, 3)
	for i := range members {
		members[i] = s.client(append(opts, kgo.ClientID(fmt.Sprintf("member-%d", i)))...)
		var c context.Context
		c, mctx[i] = context.WithCancel(ctx)
		wg.Add(1)
		go member(c, members[i], got, &wg)
	}
	adm := kadm.NewClient(s.client())
	waitFor(t, "three members, two partitions each", 20*time.Second, func() bool {
		dg, err := adm.DescribeGroups(ctx, "fink")
		if err != nil || dg["fink"].State != "Stable" || len(dg["fink"].Members) != 3 {
			return false
		}
		for _, m := range dg["fink"].Members {
			a, ok := m.Assigned.AsConsumer()
			if !ok || len(a.Topics) != 1 || len(a.Topics[0].Partitions) != 2 {
				return false
			}
		}
		return true
	})
	waitFor(t, "600 records", 20*time.Second, func() bool { return got.count() >= 600 })

	lg, err := adm.ListGroups(ctx)
	if err != nil || len(lg) != 1 || lg["fink"].State != "Stable" || lg["fink"].ProtocolType != "consumer" {
		t.Fatalf("list groups: %v %+v", err, lg)
	}
	dg, err := adm.DescribeGroups(ctx, "fink")
	if err != nil || dg["fink"].Protocol != "cooperative-sticky" {
		t.Fatalf("describe: %v %+v", err, dg)
	}
	for _, m := range dg["fink"].Members {
		if !strings.HasPrefix(m.ClientID, "member-") || m.ClientHost != "/127.0.0.1" || !strings.HasPrefix(m.MemberID, m.ClientID+"-") {
			t.Fatalf("member %s: client id %q host %q", m.MemberID, m.ClientID, m.ClientHost)
		}
	}

	// Member 2 leaves: the other two take over all six partitions.
	mctx[2]()
	members[2].Close()
	waitFor(t, "two members, three partitions each", 20*time.Second, func() bool {
		dg, err := adm.DescribeGroups(ctx, "fink")
		if err != nil || dg["fink"].State != "Stable" || len(dg["fink"].Members) != 2 {
			return false
		}
		n := 0
		for _, m := range dg["fink"].Members {
			if a, ok := m.Assigned.AsConsumer(); ok && len(a.Topics) == 1 {
				n += len(a.Topics[0].Partitions)
			}
		}
		return n == 6
	})
	produceN(t, producer, topic, 300)
	waitFor(t, "900 records", 20*time.Second, func() bool { return got.count() >= 900 })
	for _, m := range members[:2] {
		if err := m.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	for _, m := range members[:2] {
		m.Close()
	}

	// Nothing skipped: every offset of every partition, once at least.
	got.mu.Lock()
	for p := int32(0); p < 6; p++ {
		seen := map[int64]bool{}
		for _, o := range got.offsets[p] {
			seen[o] = true
		}
		if len(seen) != 150 {
			t.Errorf("partition %d: %d distinct offsets consumed, want 150", p, len(seen))
		}
		for o := int64(0); o < 150; o++ {
			if !seen[o] {
				t.Errorf("partition %d offset %d skipped", p, o)
				break
			}
		}
	}
	got.mu.Unlock()
	offs, err := adm.FetchOffsets(context.Background(), "fink")
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 6; p++ {
		if o, ok := offs.Lookup(topic, p); !ok || o.At != 150 {
			t.Fatalf("committed offset of partition %d: %+v", p, o)
		}
	}

	// Consumer lag at scrape time: everything committed, nothing behind.
	produceN(t, producer, topic, 6) // one more record per partition
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	lags := 0
	for _, mf := range mfs {
		if mf.GetName() != "ztfbroker_group_lag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetGauge().GetValue(); v != 1 {
				t.Errorf("lag %v of %v, want 1", v, m.GetLabel())
			}
			lags++
		}
	}
	if lags != 6 {
		t.Fatalf("%d lag series, want 6", lags)
	}

	// Restart the broker: the group resumes after its commits.
	s.stop()
	s = startStack(t, s.dir)
	producer = s.client(kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	produceN(t, producer, topic, 60)
	after := &consumed{offsets: map[int32][]int64{}}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	cl := s.client(append(opts, kgo.ClientID("after-restart"))...)
	wg.Add(1)
	go member(ctx, cl, after, &wg)
	waitFor(t, "66 records after restart", 20*time.Second, func() bool { return after.count() >= 66 })
	time.Sleep(300 * time.Millisecond) // anything older would arrive now
	cancel()
	wg.Wait()
	after.mu.Lock()
	defer after.mu.Unlock()
	for p, os := range after.offsets {
		sort.Slice(os, func(i, j int) bool { return os[i] < os[j] })
		if len(os) != 11 || os[0] != 150 || os[10] != 160 {
			t.Errorf("partition %d after restart: offsets %v, want 150..160", p, os)
		}
	}
}

// rawBatch builds one v2 record batch of n records for an idempotent
// producer, with a valid CRC.
func rawBatch(pid int64, epoch int16, seq int32, n int) []byte {
	var recs []byte
	for i := 0; i < n; i++ {
		r := kmsg.NewRecord()
		r.OffsetDelta = int32(i)
		r.Value = []byte(fmt.Sprintf("v%d", int(seq)+i))
		r.Length = int32(len(r.AppendTo(nil)) - 1) // the broker checks record framing
		recs = r.AppendTo(recs)
	}
	b := kmsg.NewRecordBatch()
	b.Magic = 2
	b.LastOffsetDelta = int32(n - 1)
	now := time.Now().UnixMilli() // within message.timestamp.before.max.ms
	b.FirstTimestamp, b.MaxTimestamp = now, now
	b.ProducerID, b.ProducerEpoch, b.FirstSequence = pid, epoch, seq
	b.NumRecords = int32(n)
	b.Records = recs
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}

// TestProducerIdempotentOverTheWire: a retried batch is acknowledged with
// its first offset and not written twice; a gap is refused; an old epoch is
// fenced.
func TestProducerIdempotentOverTheWire(t *testing.T) {
	s := startStack(t, t.TempDir())
	if err := s.b.CreateTopic(context.Background(), "idem", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	cl := s.client()
	ctx := context.Background()
	ipid := kmsg.NewPtrInitProducerIDRequest()
	ipid.Version = 4
	r, err := ipid.RequestWith(ctx, cl)
	if err != nil || r.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %v", err, kerr.ErrorForCode(r.ErrorCode))
	}
	produce := func(batch []byte) (int64, int16) {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Version = 9
		req.Acks = -1
		req.TimeoutMillis = 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "idem"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = batch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		return p.BaseOffset, p.ErrorCode
	}
	pid, epoch := r.ProducerID, r.ProducerEpoch
	for i, want := range []struct {
		seq, n  int32
		epoch   int16
		offset  int64
		errCode int16
	}{
		{0, 5, epoch, 0, 0},
		{5, 5, epoch, 5, 0},
		{0, 5, epoch, 0, 0}, // retry of the first batch
		{5, 5, epoch, 5, 0}, // retry of the second
		{20, 5, epoch, -1, kerr.OutOfOrderSequenceNumber.Code}, // gap
		{0, 1, epoch + 1, 10, 0},                               // new epoch from 0
		{10, 5, epoch, -1, kerr.InvalidProducerEpoch.Code},     // old epoch
		{1, 2, epoch + 1, 11, 0},                               // continues
	} {
		off, code := produce(rawBatch(pid, want.epoch, want.seq, int(want.n)))
		if code != want.errCode || (code == 0 && off != want.offset) {
			t.Fatalf("batch %d (seq %d epoch %d): offset %d %v, want %d %v", i, want.seq, want.epoch, off, kerr.ErrorForCode(code), want.offset, kerr.ErrorForCode(want.errCode))
		}
	}
	if _, hwm, err := s.b.Offsets(context.Background(), "idem", 0); err != nil || hwm != 13 {
		t.Fatalf("high watermark %d %v, want 13: duplicates written", hwm, err)
	}
}
