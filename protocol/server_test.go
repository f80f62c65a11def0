package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type testServer struct {
	s    *Server
	b    *memBackend
	reg  *prometheus.Registry
	addr string
}

// startServer serves a memBackend on a loopback port until the test ends.
func startServer(t testing.TB, cfg Config, g Groups) *testServer {
	t.Helper()
	b := newMemBackend()
	s, reg, addr := serveBackend(t, cfg, b, g)
	return &testServer{s: s, b: b, reg: reg, addr: addr}
}

// serveBackend serves b on a loopback port until the test ends.
func serveBackend(t testing.TB, cfg Config, b Backend, g Groups) (*Server, *prometheus.Registry, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	var logger *zap.Logger
	if tt, ok := t.(*testing.T); ok && testing.Verbose() {
		logger = zaptest.NewLogger(tt)
	}
	s, err := NewServer(cfg, b, g, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve returned %v", err)
		}
	})
	return s, reg, ln.Addr().String()
}

func newClient(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DisableIdempotentWrite()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// consume polls until n records arrived or the context ends.
func consume(t testing.TB, cl *kgo.Client, n int, d time.Duration) []*kgo.Record {
	t.Helper()
	ctx := ctxT(t, d)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records: %v", len(out), n, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{DefaultConfig(), {}} {
		if err := c.Validate(); err != nil {
			t.Fatalf("%+v invalid: %v", c, err)
		}
	}
	bad := Config{NodeID: -1, AdvertisedAddr: "nohost", MaxRequestBytes: 10, IdleTimeout: -1,
		RequestReadTimeout: 1, WriteTimeout: 1, MaxConnections: -3, FetchMaxBytes: 1, FetchMaxWait: 1}
	err := bad.Validate()
	for _, want := range []string{"node.id", "advertised.listeners", "socket.request.max.bytes",
		"connections.max.idle.ms", "max.connections"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	if _, err := NewServer(bad, newMemBackend(), nil, nil, nil); err == nil {
		t.Error("NewServer accepted a bad config")
	}
}

func TestProduceConsume(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	const topic = "ztf_20260101_programid1"
	cl := newClient(t, ts.addr, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(time.Second),
		kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	ctx := ctxT(t, 20*time.Second)
	const n = 300
	var want [][]byte
	for i := range n {
		v := bytes.Repeat([]byte{byte(i)}, 1000+i*7)
		want = append(want, v)
		cl.Produce(ctx, &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := consume(t, cl, n, 20*time.Second)
	for i, r := range got {
		if r.Offset != int64(i) || !bytes.Equal(r.Value, want[i]) {
			t.Fatalf("record %d: offset %d, %d bytes; want %d bytes", i, r.Offset, len(r.Value), len(want[i]))
		}
	}
	if v := metricValue(ts.s.m.topicRecordsIn.WithLabelValues(topic)); v != n {
		t.Errorf("records in = %v, want %d", v, n)
	}
	if v := metricValue(ts.s.m.topicRecordsOut.WithLabelValues(topic)); v < n {
		t.Errorf("records out = %v, want >= %d", v, n)
	}
	if v := metricValue(ts.s.m.requests.WithLabelValues("Produce")); v < 1 {
		t.Errorf("produce requests = %v", v)
	}
}

// TestFetchInsideBatch fetches from an offset in the middle of a batch: the
// whole batch comes back and the client skips the records before it.
func TestFetchInsideBatch(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	const topic = "inside"
	p := newClient(t, ts.addr, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.ProducerLinger(50*time.Millisecond))
	ctx := ctxT(t, 10*time.Second)
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Value: []byte(fmt.Sprint(i))})
	}
	if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.b.topics[topic].parts[0].batches); n != 1 {
		t.Fatalf("%d batches stored, want 1 for this test", n)
	}
	c := newClient(t, ts.addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {0: kgo.NewOffset().At(6)}}))
	got := consume(t, c, 4, 10*time.Second)
	if got[0].Offset != 6 || string(got[0].Value) != "6" || got[3].Offset != 9 {
		t.Fatalf("first record offset %d value %q, last offset %d", got[0].Offset, got[0].Value, got[3].Offset)
	}
}

// TestLongPollWakeup parks a fetch with a long MaxWait; a produce must wake
// it long before the wait ends.
func TestLongPollWakeup(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	const topic = "wake"
	if _, _, err := ts.b.Topic(context.Background(), topic, true); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, ts.addr, kgo.ConsumeTopics(topic), kgo.FetchMaxWait(20*time.Second),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := make(chan time.Time, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		for {
			fs := c.PollFetches(ctx)
			if len(fs.Records()) > 0 || ctx.Err() != nil {
				got <- time.Now()
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // the fetch is parked by now
	p := newClient(t, ts.addr, kgo.DefaultProduceTopic(topic))
	sent := time.Now()
	if err := p.ProduceSync(ctxT(t, 5*time.Second), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if d := (<-got).Sub(sent); d > 5*time.Second { // the wait is 20 s
		t.Fatalf("woken %v after the produce", d)
	}
}

func TestProduceAcksZero(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	const topic = "acks0"
	p := newClient(t, ts.addr, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.RequiredAcks(kgo.NoAck()))
	ctx := ctxT(t, 10*time.Second)
	for i := range 50 {
		p.Produce(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}, nil)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Then acks=1 on the same connection proves it is still in step.
	p2 := newClient(t, ts.addr, kgo.DefaultProduceTopic(topic))
	if err := p2.ProduceSync(ctx, &kgo.Record{Value: []byte("last")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, ts.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	consume(t, c, 51, 10*time.Second)
}

func TestAdmin(t *testing.T) {
	ts := startServer(t, Config{NodeID: 3}, nil)
	cl := newClient(t, ts.addr)
	adm := kadm.NewClient(cl)
	ctx := ctxT(t, 20*time.Second)

	created, err := adm.CreateTopics(ctx, 2, 1, map[string]*string{"retention.ms": kmsg.StringPtr("1000")}, "a", "b")
	if err != nil || created.Error() != nil {
		t.Fatalf("create: %v %v", err, created.Error())
	}
	if created["a"].ID == (kadm.TopicID{}) || created["a"].NumPartitions != 2 {
		t.Errorf("created a: %+v", created["a"])
	}
	again, _ := adm.CreateTopics(ctx, 1, 1, nil, "a")
	if !errors.Is(again["a"].Err, kerr.TopicAlreadyExists) {
		t.Errorf("create twice: %v", again["a"].Err)
	}
	rf3, _ := adm.CreateTopics(ctx, 1, 3, nil, "c")
	if !errors.Is(rf3["c"].Err, kerr.InvalidReplicationFactor) {
		t.Errorf("replication 3: %v", rf3["c"].Err)
	}

	md, err := adm.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].NodeID != 3 || md.Controller != 3 || md.Cluster != "test-cluster" {
		t.Errorf("metadata brokers %+v controller %d cluster %q", md.Brokers, md.Controller, md.Cluster)
	}
	if len(md.Topics) != 2 || len(md.Topics["a"].Partitions) != 2 || md.Topics["a"].Partitions[1].Leader != 3 {
		t.Errorf("metadata topics %+v", md.Topics)
	}

	if _, err := adm.CreatePartitions(ctx, 2, "a"); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.b.topics["a"].parts); n != 4 {
		t.Errorf("partitions after create = %d", n)
	}

	cfgs, err := adm.DescribeTopicConfigs(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On("a", nil)
	if err != nil || len(rc.Configs) != 2 {
		t.Fatalf("topic configs %+v %v", rc, err)
	}
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" && (c.MaybeValue() != "1000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig) {
			t.Errorf("retention.ms = %q source %v", c.MaybeValue(), c.Source)
		}
	}
	bcfgs, err := adm.DescribeBrokerConfigs(ctx, 3)
	if err != nil || len(bcfgs) != 1 || len(bcfgs[0].Configs) != 1 {
		t.Fatalf("broker configs %+v %v", bcfgs, err)
	}

	// Records, then ListOffsets and DeleteRecords.
	p := newClient(t, ts.addr, kgo.DefaultProduceTopic("b"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	base := time.Now().Add(-time.Hour)
	for i := range 5 {
		r := &kgo.Record{Value: []byte{byte(i)}, Timestamp: base.Add(time.Duration(i) * time.Minute)}
		if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ends, err := adm.ListEndOffsets(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("b", 0); o.Offset != 5 || o.LeaderEpoch != 0 {
		t.Errorf("end offset %+v", o)
	}
	after, err := adm.ListOffsetsAfterMilli(ctx, base.Add(150*time.Second).UnixMilli(), "b")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := after.Lookup("b", 0); o.Offset != 3 {
		t.Errorf("offset after 2.5 min = %+v, want 3", o)
	}
	maxTS := kmsg.NewPtrListOffsetsRequest()
	maxTS.Version = 7
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "b"
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = -3
	rt.Partitions = append(rt.Partitions, rp)
	maxTS.Topics = append(maxTS.Topics, rt)
	if r := rawRoundTrip(t, ts.addr, maxTS).(*kmsg.ListOffsetsResponse); r.Topics[0].Partitions[0].Offset != 4 {
		t.Errorf("max timestamp answer %+v", r.Topics[0].Partitions[0])
	}

	del, err := adm.DeleteRecords(ctx, kadm.Offsets{"b": {0: {At: 2}}})
	if err != nil || del.Error() != nil {
		t.Fatalf("delete records %v %v", err, del.Error())
	}
	starts, _ := adm.ListStartOffsets(ctx, "b")
	if o, _ := starts.Lookup("b", 0); o.Offset != 2 {
		t.Errorf("start offset after delete = %+v", o)
	}

	// librdkafka's exact OffsetForLeaderEpoch: v2.
	ofe := kmsg.NewPtrOffsetForLeaderEpochRequest()
	ofe.Version = 2
	et := kmsg.NewOffsetForLeaderEpochRequestTopic()
	et.Topic = "b"
	for _, epoch := range []int32{0, 1} {
		ep := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		ep.LeaderEpoch, ep.CurrentLeaderEpoch = epoch, 0
		et.Partitions = append(et.Partitions, ep)
	}
	ofe.Topics = append(ofe.Topics, et)
	er := rawRoundTrip(t, ts.addr, ofe).(*kmsg.OffsetForLeaderEpochResponse)
	if p := er.Topics[0].Partitions; p[0].EndOffset != 5 || p[0].LeaderEpoch != 0 || p[1].EndOffset != -1 {
		t.Errorf("offset for leader epoch %+v", p)
	}

	dt, err := adm.DeleteTopics(ctx, "a", "nope")
	if err != nil {
		t.Fatal(err)
	}
	if dt["a"].Err != nil || !errors.Is(dt["nope"].Err, kerr.UnknownTopicOrPartition) {
		t.Errorf("delete topics a=%v nope=%v", dt["a"].Err, dt["nope"].Err)
	}

	cluster := kmsg.NewPtrDescribeClusterRequest()
	cluster.Version = 1
	cluster.EndpointType = 1
	dc := rawRoundTrip(t, ts.addr, cluster).(*kmsg.DescribeClusterResponse)
	if dc.ErrorCode != 0 || dc.ClusterID != "test-cluster" || len(dc.Brokers) != 1 || dc.Brokers[0].Port == 0 {
		t.Errorf("describe cluster %+v", dc)
	}
}

func TestShutdownTwiceWithParkedFetch(t *testing.T) {
	b := newMemBackend()
	s, err := NewServer(Config{}, b, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	b.Topic(context.Background(), "t", true)
	c := newClient(t, ln.Addr().String(), kgo.ConsumeTopics("t"), kgo.FetchMaxWait(30*time.Second))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c.PollFetches(ctx)
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second { // the fetch waits 30 s
		t.Errorf("shutdown took %v with a parked fetch", d)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("serve: %v", err)
	}
	if err := s.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Errorf("serve after shutdown: %v", err)
	}
	wg.Wait()
	c.Close()
}

// metricValue reads a single counter or gauge.
func metricValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	close(ch)
	var pb dto.Metric
	if err := (<-ch).Write(&pb); err != nil {
		panic(err)
	}
	if pb.Counter != nil {
		return pb.Counter.GetValue()
	}
	return pb.Gauge.GetValue()
}
