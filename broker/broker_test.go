package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ztfbroker/ztfbroker/log"
)

// clock is a fake clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.UnixMilli(1_532_500_000_000)} } // 2018-07-25, a ZTF night

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     *testing.T
	dir   string
	clock *clock
	reg   *prometheus.Registry
	logs  *observer.ObservedLogs
	cfg   Config
}

func newEnv(t *testing.T, mutate func(*Config)) *env {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.RetentionCheckInterval = time.Hour // tests call EnforceRetention
	// Tests produce at fixed timestamps (1, 1000) under a 2018 clock;
	// timestamp_test.go sets the bound back to check it.
	cfg.MessageTimestampBeforeMaxMs = 1<<63 - 1
	if mutate != nil {
		mutate(&cfg)
	}
	return &env{t: t, dir: cfg.DataDir, clock: newClock(), cfg: cfg}
}

// open opens a broker on the env's folder, closed at the end of the test.
func (e *env) open() *Broker {
	e.t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	e.logs = logs
	e.reg = prometheus.NewRegistry()
	b, err := Open(e.cfg, zap.New(core), e.reg, e.clock.Now)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { b.Close() })
	return b
}

func (e *env) batch(n int, step int64, size int) []byte {
	return makeBatch(e.t, testBatch{baseTS: e.clock.Now().UnixMilli(), tsDeltas: deltas(n, step), valueSize: size})
}

func produce(t *testing.T, b *Broker, topic string, p int32, batches ...[]byte) int64 {
	t.Helper()
	req := bytes.Join(batches, nil)
	base, _, err := b.Produce(context.Background(), topic, p, req)
	if err != nil {
		t.Fatalf("produce %s-%d: %v", topic, p, err)
	}
	return base
}

// fetchAll reads every batch of a partition from offset on.
func fetchAll(t *testing.T, b *Broker, topic string, p int32, offset int64) []batch {
	t.Helper()
	var out []batch
	for {
		data, hw, _, err := b.Fetch(context.Background(), topic, p, offset, 1<<20, nil)
		if err != nil {
			t.Fatalf("fetch %s-%d at %d: %v", topic, p, offset, err)
		}
		if len(data) == 0 {
			if offset != hw {
				t.Fatalf("empty fetch at %d below high watermark %d", offset, hw)
			}
			return out
		}
		for {
			bt, rest, ok := nextBatch(data)
			if !ok {
				break
			}
			out = append(out, bt)
			offset = bt.lastOffset() + 1
			data = rest
		}
	}
}

func isKerr(err error, want *kerr.Error) bool { return errors.Is(err, want) }

func TestBackendTopics(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.NumPartitions = 2 })
	b := e.open()

	// ZTF's nightly topics need no set-up.
	id, n, err := b.Topic(context.Background(), "ztf_20180725_programid1", true)
	if err != nil || n != 2 || id == ([16]byte{}) {
		t.Fatalf("auto-create: id %x partitions %d err %v", id, n, err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "ztf_20180725_programid1-1")); err != nil {
		t.Fatalf("partition folder: %v", err)
	}
	id2, _, _ := b.Topic(context.Background(), "ztf_20180725_programid1", true)
	if id2 != id {
		t.Fatal("topic id changed on second lookup")
	}
	if _, _, err := b.Topic(context.Background(), "missing", false); !isKerr(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("missing topic: %v", err)
	}
	if _, _, err := b.Topic(context.Background(), "bad/name", true); !isKerr(err, kerr.InvalidTopicException) {
		t.Fatalf("bad name: %v", err)
	}

	if err := b.CreateTopic(context.Background(), "alerts", 3, nil, true); err != nil {
		t.Fatalf("validate only: %v", err)
	}
	if _, _, err := b.Topic(context.Background(), "alerts", false); !isKerr(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("validateOnly created the topic: %v", err)
	}
	if err := b.CreateTopic(context.Background(), "alerts", 3, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateTopic(context.Background(), "alerts", 3, nil, false); !isKerr(err, kerr.TopicAlreadyExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if err := b.CreateTopic(context.Background(), "ztf.20180725.programid1", 1, nil, false); !isKerr(err, kerr.InvalidTopicException) {
		t.Fatalf("'.'/'_' collision: %v", err)
	}
	if err := b.CreateTopic(context.Background(), "zero", 0, nil, false); !isKerr(err, kerr.InvalidPartitions) {
		t.Fatalf("0 partitions: %v", err)
	}
	if got := strings.Join(b.TopicNames(context.Background()), ","); got != "__consumer_offsets,alerts,ztf_20180725_programid1" {
		t.Fatalf("TopicNames = %s", got)
	}

	// CreatePartitions only grows.
	if err := b.CreatePartitions(context.Background(), "alerts", 2, false); !isKerr(err, kerr.InvalidPartitions) {
		t.Fatalf("shrink: %v", err)
	}
	if err := b.CreatePartitions(context.Background(), "alerts", 3, false); !isKerr(err, kerr.InvalidPartitions) {
		t.Fatalf("same count: %v", err)
	}
	if err := b.CreatePartitions(context.Background(), "alerts", 5, true); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := b.Topic(context.Background(), "alerts", false); n != 3 {
		t.Fatalf("validateOnly grew the topic to %d", n)
	}
	produce(t, b, "alerts", 0, e.batch(2, 1, 10))
	if err := b.CreatePartitions(context.Background(), "alerts", 5, false); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := b.Topic(context.Background(), "alerts", false); n != 5 {
		t.Fatalf("partitions %d after growth, want 5", n)
	}
	produce(t, b, "alerts", 4, e.batch(2, 1, 10))
	if _, hw, _ := b.Offsets(context.Background(), "alerts", 0); hw != 2 {
		t.Fatalf("partition 0 lost its data on growth: hw %d", hw)
	}
	if err := b.CreatePartitions(context.Background(), "missing", 5, false); !isKerr(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("grow missing: %v", err)
	}

	// Deletion removes metadata and logs; a new topic of the name starts empty.
	if err := b.DeleteTopic(context.Background(), "alerts"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteTopic(context.Background(), "alerts"); !isKerr(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "alerts-0")); !os.IsNotExist(err) {
		t.Fatalf("log folder left after delete: %v", err)
	}
	if _, _, err := b.Produce(context.Background(), "alerts", 0, e.batch(1, 1, 1)); !isKerr(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("produce to deleted topic: %v", err)
	}
	if err := b.CreateTopic(context.Background(), "alerts", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, hw, _ := b.Offsets(context.Background(), "alerts", 0); hw != 0 {
		t.Fatalf("recreated topic has hw %d", hw)
	}
}

func TestAutoCreateDisabled(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AutoCreateTopics = false })
	b := e.open()
	if _, _, err := b.Topic(context.Background(), "ztf_20180725_programid1", true); !isKerr(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("auto-create when disabled: %v", err)
	}
	if err := b.CreateTopic(context.Background(), "ztf_20180725_programid1", -1, nil, false); err != nil {
		t.Fatalf("explicit create: %v", err)
	}
}

func configMap(cs []kmsg.DescribeConfigsResponseResourceConfig) map[string]kmsg.DescribeConfigsResponseResourceConfig {
	m := map[string]kmsg.DescribeConfigsResponseResourceConfig{}
	for _, c := range cs {
		m[c.Name] = c
	}
	return m
}

func TestTopicConfigs(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Topic.RetentionBytes = 1 << 30 }) // a static broker setting
	b := e.open()
	s := func(v string) *string { return &v }

	err := b.CreateTopic(context.Background(), "bad", 1, map[string]*string{"retention.ms": s("a week"), "cleanup.policy": s("shred"), "no.such": s("1")}, false)
	if !isKerr(err, kerr.InvalidConfig) {
		t.Fatalf("bad configs: %v", err)
	}
	for _, key := range []string{"retention.ms", "cleanup.policy", "no.such"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	if err := b.CreateTopic(context.Background(), "bad", 1, map[string]*string{"retention.ms": s("a week")}, true); !isKerr(err, kerr.InvalidConfig) {
		t.Fatalf("validateOnly with a bad config: %v", err)
	}
	if _, _, err := b.Topic(context.Background(), "bad", false); err == nil {
		t.Fatal("topic with bad configs created")
	}

	if err := b.CreateTopic(context.Background(), "night", 1, map[string]*string{"retention.ms": s("3600000"), "max.message.bytes": s("200"), "segment.bytes": nil}, false); err != nil {
		t.Fatal(err)
	}
	check := func(b *Broker) {
		t.Helper()
		cs, err := b.TopicConfigs(context.Background(), "night", nil)
		if err != nil {
			t.Fatal(err)
		}
		m := configMap(cs)
		if len(m) != len(topicKeys)+len(unimplemented()) {
			t.Errorf("%d configs listed, want %d", len(m), len(topicKeys)+len(unimplemented()))
		}
		r := m["retention.ms"]
		if *r.Value != "3600000" || r.Source != kmsg.ConfigSourceDynamicTopicConfig || r.IsDefault {
			t.Errorf("retention.ms = %s source %v", *r.Value, r.Source)
		}
		if last := r.ConfigSynonyms[len(r.ConfigSynonyms)-1]; *last.Value != "604800000" || last.Source != kmsg.ConfigSourceDefaultConfig {
			t.Errorf("retention.ms default synonym %s %v", *last.Value, last.Source)
		}
		rb := m["retention.bytes"]
		if *rb.Value != "1073741824" || rb.Source != kmsg.ConfigSourceStaticBrokerConfig {
			t.Errorf("retention.bytes = %s source %v", *rb.Value, rb.Source)
		}
		sb := m["segment.bytes"]
		if want := strconv.Itoa(log.DefaultSegmentBytes); *sb.Value != want || sb.Source != kmsg.ConfigSourceDefaultConfig || !sb.IsDefault {
			t.Errorf("segment.bytes = %s source %v", *sb.Value, sb.Source)
		}
		only, _ := b.TopicConfigs(context.Background(), "night", []string{"flush.ms"})
		if len(only) != 1 || *only[0].Value != "0" {
			t.Errorf("flush.ms only: %+v", only)
		}
	}
	check(b)

	// max.message.bytes of the topic is enforced.
	if _, _, err := b.Produce(context.Background(), "night", 0, e.batch(1, 1, 300)); !isKerr(err, kerr.MessageTooLarge) {
		t.Fatalf("batch over the topic's max.message.bytes: %v", err)
	}

	bc := configMap(b.BrokerConfigs(context.Background(), nil))
	if c := bc["log.retention.bytes"]; *c.Value != "1073741824" || c.Source != kmsg.ConfigSourceStaticBrokerConfig {
		t.Errorf("log.retention.bytes %s %v", *c.Value, c.Source)
	}
	if c := bc["num.partitions"]; *c.Value != "1" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Errorf("num.partitions %s %v", *c.Value, c.Source)
	}
	if c := bc["cluster.id"]; *c.Value != b.ClusterID() || b.ClusterID() == "" {
		t.Errorf("cluster.id %s vs %s", *c.Value, b.ClusterID())
	}
	if _, err := b.TopicConfigs(context.Background(), "missing", nil); !isKerr(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("configs of a missing topic: %v", err)
	}

	// Round trip through a reopen.
	cluster := b.ClusterID()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = e.open()
	check(b)
	if b.ClusterID() != cluster {
		t.Errorf("cluster id %s after reopen, was %s", b.ClusterID(), cluster)
	}
}

func TestProduceFetch(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	if err := b.CreateTopic(context.Background(), "t", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	changed, err := b.Changed(context.Background(), "t", 0)
	if err != nil {
		t.Fatal(err)
	}

	sent := [][]byte{e.batch(3, 1, 100), e.batch(2, 1, 100), e.batch(4, 1, 100)}
	// Two batches in one request, then one more.
	if base := produce(t, b, "t", 0, sent[0], sent[1]); base != 0 {
		t.Fatalf("base %d, want 0", base)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed not closed by a produce")
	}
	if base := produce(t, b, "t", 0, sent[2]); base != 5 {
		t.Fatalf("base %d, want 5", base)
	}
	if ls, hw, err := b.Offsets(context.Background(), "t", 0); ls != 0 || hw != 9 || err != nil {
		t.Fatalf("offsets %d %d %v", ls, hw, err)
	}

	got := fetchAll(t, b, "t", 0, 0)
	if len(got) != 3 {
		t.Fatalf("%d batches, want 3", len(got))
	}
	wantBase := []int64{0, 3, 5}
	for i, bt := range got {
		if bt.baseOffset() != wantBase[i] {
			t.Errorf("batch %d base %d, want %d", i, bt.baseOffset(), wantBase[i])
		}
		// Stored as sent but for baseOffset and partitionLeaderEpoch.
		if !bytes.Equal(bt[offMagic:], sent[i][offMagic:]) || binary.BigEndian.Uint32(bt[offEpoch:]) != 0 {
			t.Errorf("batch %d not stored verbatim", i)
		}
	}
	// A fetch from the middle of a batch returns the whole batch.
	data, hw, ls, err := b.Fetch(context.Background(), "t", 0, 4, 1, nil)
	if err != nil || hw != 9 || ls != 0 {
		t.Fatal(err, hw, ls)
	}
	if bt, _, ok := nextBatch(data); !ok || bt.baseOffset() != 3 {
		t.Fatalf("fetch at 4 did not start with the batch at 3")
	}
	if data, _, _, err := b.Fetch(context.Background(), "t", 0, 9, 1<<20, nil); err != nil || len(data) != 0 {
		t.Fatalf("fetch at the high watermark: %d bytes, %v", len(data), err)
	}
	if _, _, _, err := b.Fetch(context.Background(), "t", 0, 10, 1<<20, nil); !isKerr(err, kerr.OffsetOutOfRange) {
		t.Fatalf("fetch past the end: %v", err)
	}
	if _, _, _, err := b.Fetch(context.Background(), "t", 1, 0, 1<<20, nil); !isKerr(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("fetch from a missing partition: %v", err)
	}

	// Refused batches leave the log untouched, whatever their position.
	old := e.batch(1, 1, 10)
	old[offMagic] = 1
	for name, c := range map[string]struct {
		req  []byte
		want *kerr.Error
	}{
		"magic 1":         {old, kerr.UnsupportedForMessageFormat},
		"good then bad":   {append(append([]byte(nil), e.batch(1, 1, 10)...), old...), kerr.UnsupportedForMessageFormat},
		"too large":       {e.batch(1, 1, defaultMessageMaxBytes), kerr.MessageTooLarge},
		"transactional":   {makeBatch(t, testBatch{tsDeltas: deltas(1, 1), attrs: attrTransactional, producerID: 3}), kerr.TransactionalIDAuthorizationFailed},
		"truncated":       {e.batch(2, 1, 10)[:70], kerr.CorruptMessage},
		"bad crc":         {func() []byte { b := e.batch(2, 1, 10); b[70] ^= 1; return b }(), kerr.CorruptMessage},
		"unknown topic":   {e.batch(1, 1, 1), kerr.UnknownTopicOrPartition},
		"empty request":   {nil, kerr.CorruptMessage},
		"trailing header": {append(e.batch(1, 1, 1), 0, 0, 0), kerr.CorruptMessage},
	} {
		topic := "t"
		if name == "unknown topic" {
			topic = "nope"
		}
		if _, _, err := b.Produce(context.Background(), topic, 0, c.req); !isKerr(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if _, hw, _ := b.Offsets(context.Background(), "t", 0); hw != 9 {
		t.Fatalf("refused produces moved the high watermark to %d", hw)
	}
}

// The offsets of records inside one batch, found by decoding it, for every codec.
func TestListOffsetByTimestamp(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			topic := "ts-" + c.name
			if err := b.CreateTopic(context.Background(), topic, 1, nil, false); err != nil {
				t.Fatal(err)
			}
			// Offsets 0-3 at 1000, 1010, 1020, 1030; 4-7 at 2000, 2040, 2020, 2030.
			produce(t, b, topic, 0,
				makeBatch(t, testBatch{codec: c, baseTS: 1000, tsDeltas: []int64{0, 10, 20, 30}, valueSize: 200}),
				makeBatch(t, testBatch{codec: c, baseTS: 2000, tsDeltas: []int64{0, 40, 20, 30}, valueSize: 200}))
			for _, q := range []struct{ ts, off, at int64 }{
				{0, 0, 1000},
				{1000, 0, 1000},
				{1001, 1, 1010},
				{1015, 2, 1020},
				{1030, 3, 1030},
				{1031, 4, 2000},
				{2025, 5, 2040}, // the first at or after, not the closest
				{2040, 5, 2040},
				{2041, -1, -1},
				{-1, 8, -1},
				{-2, 0, -1},
				{-3, 5, 2040},
			} {
				off, at, err := b.ListOffset(context.Background(), topic, 0, q.ts)
				if err != nil || off != q.off || at != q.at {
					t.Errorf("ListOffset(%d) = %d at %d (%v), want %d at %d", q.ts, off, at, err, q.off, q.at)
				}
			}
			// After DeleteRecords inside a batch, nothing below the log start.
			if _, err := b.DeleteRecords(context.Background(), topic, 0, 2); err != nil {
				t.Fatal(err)
			}
			if off, at, _ := b.ListOffset(context.Background(), topic, 0, 1000); off != 2 || at != 1020 {
				t.Errorf("after DeleteRecords(2): ListOffset(1000) = %d at %d, want 2 at 1020", off, at)
			}
		})
	}
}

func TestDeleteRecords(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	if err := b.CreateTopic(context.Background(), "t", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		produce(t, b, "t", 0, e.batch(5, 1, 10))
	}
	low, err := b.DeleteRecords(context.Background(), "t", 0, 7)
	if err != nil || low != 7 {
		t.Fatalf("DeleteRecords(7) = %d, %v", low, err)
	}
	if _, _, _, err := b.Fetch(context.Background(), "t", 0, 6, 1<<20, nil); !isKerr(err, kerr.OffsetOutOfRange) {
		t.Fatalf("fetch below the log start: %v", err)
	}
	if off, _, _ := b.ListOffset(context.Background(), "t", 0, -2); off != 7 {
		t.Fatalf("earliest %d, want 7", off)
	}
	if bs := fetchAll(t, b, "t", 0, 7); len(bs) != 3 || bs[0].baseOffset() != 5 {
		t.Fatalf("fetch at the log start: %d batches", len(bs))
	}
	if _, err := b.DeleteRecords(context.Background(), "t", 0, 21); !isKerr(err, kerr.OffsetOutOfRange) {
		t.Fatalf("delete past the high watermark: %v", err)
	}
	if low, _ := b.DeleteRecords(context.Background(), "t", 0, 3); low != 7 {
		t.Fatalf("delete below the log start moved it to %d", low)
	}
	if low, err := b.DeleteRecords(context.Background(), "t", 0, -1); err != nil || low != 20 {
		t.Fatalf("DeleteRecords(-1) = %d, %v; want the high watermark 20", low, err)
	}
	// The log start survives a reopen.
	b.Close()
	b = e.open()
	if ls, hw, _ := b.Offsets(context.Background(), "t", 0); ls != 20 || hw != 20 {
		t.Fatalf("after reopen: log start %d hw %d", ls, hw)
	}
}

func TestRetentionWithFakeClock(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	s := func(v string) *string { return &v }
	err := b.CreateTopic(context.Background(), "t", 1, map[string]*string{"segment.bytes": s("1048576"), "retention.ms": s("3600000")}, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ { // 40 x 64 KiB: three segments and a bit
		produce(t, b, "t", 0, e.batch(1, 0, 64<<10))
	}
	before := b.partitionsOf(t, "t")[0].log.Segments()
	if before < 3 {
		t.Fatalf("%d segments, want >= 3", before)
	}
	if n := b.EnforceRetention(); n != 0 {
		t.Fatalf("retention deleted %d segments of fresh data", n)
	}
	e.clock.Advance(2 * time.Hour)
	if n := b.EnforceRetention(); n != before-1 {
		t.Fatalf("retention deleted %d segments, want %d (all sealed)", n, before-1)
	}
	if ls, _, _ := b.Offsets(context.Background(), "t", 0); ls == 0 {
		t.Fatal("log start did not move")
	}
	if e.logs.FilterMessage("retention deleted segments").Len() != 1 {
		t.Fatalf("no zap line for the deletion: %v", e.logs.All())
	}
}

func (b *Broker) partitionsOf(t *testing.T, topic string) []*partition {
	t.Helper()
	tp, err := b.lookup(topic)
	if err != nil {
		t.Fatal(err)
	}
	return tp.partitions
}

func TestReopenKeepsEverything(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.NumPartitions = 3 })
	b := e.open()
	id, _, err := b.Topic(context.Background(), "ztf_20180725_programid1", true)
	if err != nil {
		t.Fatal(err)
	}
	s := "7200000"
	if err := b.CreateTopic(context.Background(), "alerts", 2, map[string]*string{"retention.ms": &s}, false); err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 3; p++ {
		produce(t, b, "ztf_20180725_programid1", p, e.batch(int(p)+1, 1, 1000))
	}
	sent := fetchAll(t, b, "ztf_20180725_programid1", 2, 0)
	cluster := b.ClusterID()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := b.Topic(context.Background(), "alerts", false); !errors.Is(err, ErrClosed) {
		t.Fatalf("Topic after Close: %v", err)
	}

	// A folder no topic owns is reported, not adopted.
	if err := os.Mkdir(filepath.Join(e.dir, "stray-0"), 0o755); err != nil {
		t.Fatal(err)
	}
	b = e.open()
	if got := strings.Join(b.TopicNames(context.Background()), ","); got != "__consumer_offsets,alerts,ztf_20180725_programid1" {
		t.Fatalf("topics after reopen: %s", got)
	}
	if id2, n, _ := b.Topic(context.Background(), "ztf_20180725_programid1", false); id2 != id || n != 3 {
		t.Fatalf("topic id or partitions changed: %x %d", id2, n)
	}
	if b.ClusterID() != cluster {
		t.Fatal("cluster id changed")
	}
	for p := int32(0); p < 3; p++ {
		if _, hw, _ := b.Offsets(context.Background(), "ztf_20180725_programid1", p); hw != int64(p)+1 {
			t.Fatalf("partition %d hw %d after reopen", p, hw)
		}
	}
	got := fetchAll(t, b, "ztf_20180725_programid1", 2, 0)
	if len(got) != 1 || !bytes.Equal(got[0], sent[0]) {
		t.Fatal("data changed across reopen")
	}
	if o := b.Orphans(); len(o) != 1 || o[0] != "stray-0" {
		t.Fatalf("orphans %v", o)
	}
	if e.logs.FilterMessage("directory with no topic metadata; left in place").Len() != 1 {
		t.Fatal("orphan folder not logged")
	}
	cs, _ := b.TopicConfigs(context.Background(), "alerts", []string{"retention.ms"})
	if len(cs) != 1 || *cs[0].Value != "7200000" {
		t.Fatal("topic config lost across reopen")
	}
	// A topic later created with the name moves the stray folder aside.
	if err := b.CreateTopic(context.Background(), "stray", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, hw, _ := b.Offsets(context.Background(), "stray", 0); hw != 0 {
		t.Fatal("new topic adopted a stray folder")
	}
}

// A bit flipped on disk while the broker was down is found by the first
// fetch after the restart: batches written before it are not verified in
// the new process, so the fetch checks their CRCs. (No scrub here, so that
// the fetch is what finds it; the scrub's own tests are in log/.)
func TestCorruptBatchNotServed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LogScrubBytesPerSecond = -1 })
	b := e.open()
	if err := b.CreateTopic(context.Background(), "t", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	produce(t, b, "t", 0, e.batch(3, 1, 500))
	produce(t, b, "t", 0, e.batch(3, 1, 500))
	segs, _ := filepath.Glob(filepath.Join(e.dir, "t-0", "*.log"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	flipBit(t, segs[0], 200) // inside the first batch's records
	b = e.open()

	if _, _, _, err := b.Fetch(context.Background(), "t", 0, 0, 1<<20, nil); !isKerr(err, kerr.KafkaStorageError) {
		t.Fatalf("fetch of a damaged batch: %v", err)
	}
	lines := e.logs.FilterMessage("fetch").All()
	if len(lines) != 1 || lines[0].Level != zapcore.ErrorLevel {
		t.Fatalf("no error line: %v", e.logs.All())
	}
	ctx := lines[0].ContextMap()
	if ctx["segment"] != segs[0] || ctx["position"] != int64(0) {
		t.Fatalf("error line does not name file and offset: %v", ctx)
	}
	b.Fetch(context.Background(), "t", 0, 0, 1<<20, nil)
	if n := e.logs.FilterMessage("fetch").FilterLevelExact(zapcore.ErrorLevel).Len(); n != 1 {
		t.Fatalf("%d error lines for the same damage, want 1", n)
	}
	// The batch after it is still served.
	if data, _, _, err := b.Fetch(context.Background(), "t", 0, 3, 1<<20, nil); err != nil || len(data) == 0 {
		t.Fatalf("fetch of the good batch: %v", err)
	}
}

// The scrub (log.scrub.bytes.per.second) finds a flipped bit before any
// fetch does: it logs the segment, and the fetch that comes later answers
// KAFKA_STORAGE_ERROR, never the bytes.
func TestScrubFindsDamageFirst(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LogScrubBytesPerSecond = 1 << 30 })
	b := e.open()
	if err := b.CreateTopic(context.Background(), "t", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	produce(t, b, "t", 0, e.batch(3, 1, 500))
	produce(t, b, "t", 0, e.batch(3, 1, 500))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(e.dir, "t-0", "*.log"))
	flipBit(t, segs[0], 200)
	b = e.open()
	deadline := time.Now().Add(10 * time.Second)
	for e.logs.FilterMessage("scrub found damage").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the scrub did not report the damage: %v", e.logs.All())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, _, _, err := b.Fetch(context.Background(), "t", 0, 0, 1<<20, nil); !isKerr(err, kerr.KafkaStorageError) {
		t.Fatalf("fetch of the damaged batch: %v", err)
	}
	if data, _, _, err := b.Fetch(context.Background(), "t", 0, 3, 1<<20, nil); err != nil || len(data) == 0 {
		t.Fatalf("fetch of the good batch: %v", err)
	}
	found := metricSums(t, e.reg)
	if found["ztfbroker_log_scrub_damage_total"] != 1 || found["ztfbroker_log_scrub_bytes_total"] == 0 {
		t.Fatalf("scrub metrics: damage %v, bytes %v", found["ztfbroker_log_scrub_damage_total"], found["ztfbroker_log_scrub_bytes_total"])
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	produce(t, b, mustTopic(t, b, "m"), 0, e.batch(2, 1, 100))
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			found[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	if found["ztfbroker_log_size_bytes"] <= 0 || found["ztfbroker_log_segments"] != 1 || found["ztfbroker_topics"] != 2 { // m and __consumer_offsets
		t.Fatalf("metrics %v", found)
	}
}

func mustTopic(t *testing.T, b *Broker, name string) string {
	t.Helper()
	if _, _, err := b.Topic(context.Background(), name, true); err != nil {
		t.Fatal(err)
	}
	return name
}

// Concurrent producers on one partition get contiguous, distinct offsets.
func TestConcurrentProduce(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	mustTopic(t, b, "c")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, _, err := b.Produce(context.Background(), "c", 0, e.batch(2, 1, 50)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	bs := fetchAll(t, b, "c", 0, 0)
	if len(bs) != 80 {
		t.Fatalf("%d batches, want 80", len(bs))
	}
	for i, bt := range bs {
		if bt.baseOffset() != int64(2*i) {
			t.Fatalf("batch %d at %d", i, bt.baseOffset())
		}
	}
}

var _ ProducerCheck = (*ProducerSequences)(nil)

// The seam for idempotent producers: a retried batch is acknowledged with its
// first offsets and not written twice; a gap in sequences is refused.
func TestProducerCheckSeam(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	seqs, err := newProducerSequences(b.Meta(), time.Hour, zap.NewNop(), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	b.SetProducerCheck(seqs)
	mustTopic(t, b, "idem")
	idem := func(seq int32) []byte {
		return makeBatch(t, testBatch{baseTS: 1, tsDeltas: deltas(2, 1), producerID: 9, sequence: seq})
	}
	produce(t, b, "idem", 0, e.batch(3, 1, 1)) // a plain batch first: offsets 0-2
	if base := produce(t, b, "idem", 0, idem(0)); base != 3 {
		t.Fatalf("first idempotent batch at %d, want 3", base)
	}
	if base := produce(t, b, "idem", 0, idem(2)); base != 5 {
		t.Fatalf("second idempotent batch at %d, want 5", base)
	}
	if base := produce(t, b, "idem", 0, idem(0)); base != 3 {
		t.Fatalf("retry acknowledged at %d, want its first offset 3", base)
	}
	if _, _, err := b.Produce(context.Background(), "idem", 0, idem(7)); !isKerr(err, kerr.OutOfOrderSequenceNumber) {
		t.Fatalf("sequence gap: %v", err)
	}
	if _, hw, _ := b.Offsets(context.Background(), "idem", 0); hw != 7 {
		t.Fatalf("hw %d, want 7: a retry or a refused batch was written", hw)
	}
	if err := b.DeleteTopic(context.Background(), "idem"); err != nil {
		t.Fatal(err)
	}
}

func TestListOffsetEmpty(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	mustTopic(t, b, "empty")
	for ts, want := range map[int64]int64{-1: 0, -2: 0, -3: -1, 0: -1, 12345: -1} {
		if off, _, err := b.ListOffset(context.Background(), "empty", 0, ts); err != nil || off != want {
			t.Errorf("ListOffset(%d) = %d, %v; want %d", ts, off, err, want)
		}
	}
	if _, _, err := b.ListOffset(context.Background(), "empty", 0, -7); !isKerr(err, kerr.InvalidRequest) {
		t.Errorf("ListOffset(-7): %v", err)
	}
	if _, _, err := b.ListOffset(context.Background(), "empty", 3, -1); !isKerr(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("missing partition: %v", err)
	}
}

// Deleting a topic while it is produced to and fetched from: every call
// either succeeds or says the topic is unknown; nothing hangs or leaks.
func TestDeleteWhileProducing(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	for round := 0; round < 3; round++ {
		mustTopic(t, b, "busy")
		var wg sync.WaitGroup
		stop := make(chan struct{})
		errs := make(chan error, 4)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					_, _, err := b.Produce(context.Background(), "busy", 0, e.batch(1, 1, 100))
					if err == nil {
						_, _, _, err = b.Fetch(context.Background(), "busy", 0, 0, 1<<10, nil)
					}
					if err != nil && !isKerr(err, kerr.UnknownTopicOrPartition) && !isKerr(err, kerr.NotLeaderForPartition) {
						errs <- err
						return
					}
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		if err := b.DeleteTopic(context.Background(), "busy"); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = ""
	cfg.NumPartitions = 0
	_, err := Open(cfg, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "log.dirs") || !strings.Contains(err.Error(), "num.partitions") {
		t.Fatalf("Open with a bad config: %v", err)
	}
}

// TestConsumerOffsetsTopic: the internal topic exists from the first start,
// empty, and refuses produce and deletion.
func TestConsumerOffsetsTopic(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	if _, n, err := b.Topic(context.Background(), "__consumer_offsets", false); err != nil || n != 1 {
		t.Fatalf("__consumer_offsets: %d partitions, %v", n, err)
	}
	if _, _, err := b.Produce(context.Background(), "__consumer_offsets", 0, e.batch(0, 1, 10)); !isKerr(err, kerr.InvalidTopicException) {
		t.Fatalf("produce to __consumer_offsets: %v", err)
	}
	if err := b.DeleteTopic(context.Background(), "__consumer_offsets"); !isKerr(err, kerr.InvalidTopicException) {
		t.Fatalf("delete __consumer_offsets: %v", err)
	}
}

// flipBit flips one bit of the byte at pos in the file at path, as a disk
// that rots would.
func flipBit(t *testing.T, path string, pos int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var one [1]byte
	if _, err := f.ReadAt(one[:], pos); err != nil {
		t.Fatal(err)
	}
	one[0] ^= 0x10
	if _, err := f.WriteAt(one[:], pos); err != nil {
		t.Fatal(err)
	}
}

// metricSums gathers reg: each metric's name to the sum of its series'
// gauge and counter values.
func metricSums(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			found[mf.GetName()] += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return found
}
