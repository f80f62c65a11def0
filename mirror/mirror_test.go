package mirror

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// produceSome writes n records to topic over its partitions: keys (every
// tenth null), values of varied size (one a tombstone), a header, and
// timestamps a day old, in order per partition.
func produceSome(t testing.TB, c *cluster, topic string, partitions int32, first, n int) {
	t.Helper()
	ctx := context.Background()
	cl := c.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil && !strings.Contains(err.Error(), "TOPIC_ALREADY_EXISTS") {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(int64(first)))
	base := time.Now().Add(-24 * time.Hour)
	var recs []*kgo.Record
	for i := first; i < first+n; i++ {
		r := &kgo.Record{Topic: topic, Partition: int32(i) % partitions, Timestamp: base.Add(time.Duration(i) * time.Millisecond),
			Headers: []kgo.RecordHeader{{Key: "candid", Value: []byte(strconv.Itoa(i))}}}
		if i%10 != 0 {
			r.Key = []byte(fmt.Sprintf("ZTF18a%05d", i))
		}
		if i%17 != 7 {
			r.Value = make([]byte, 100+rng.Intn(2000))
			rng.Read(r.Value)
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// readAll returns every record of topic by partition, in offset order,
// once the topic holds want records.
func readAll(t testing.TB, c *cluster, topic string, want int64) map[int32][]*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm := kadm.NewClient(c.client(t))
	for {
		ends, err := adm.ListEndOffsets(ctx, topic)
		var n int64
		if err == nil {
			ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		}
		if n >= want {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%s holds %d records after 20 s, want %d (%v)", topic, n, want, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cl := c.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	out := map[int32][]*kgo.Record{}
	var n int64
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d of %d records", topic, n, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], r)
			n++
		})
	}
	return out
}

// sameRecords checks that down holds exactly up's records, partition by
// partition: key (null kept), value, timestamp, headers, and the mirror's
// header naming each one's upstream offset.
func sameRecords(t testing.TB, topic string, up, down map[int32][]*kgo.Record) {
	t.Helper()
	if len(up) != len(down) {
		t.Errorf("%s: %d partitions upstream hold records, %d downstream", topic, len(up), len(down))
	}
	for p, ur := range up {
		dr := down[p]
		if len(dr) != len(ur) {
			t.Errorf("%s-%d: %d records upstream, %d downstream", topic, p, len(ur), len(dr))
			continue
		}
		for i, u := range ur {
			d := dr[i]
			hs := d.Headers[:len(d.Headers)-1]
			off, err := upstreamOffset(d)
			switch {
			case err != nil || off != u.Offset:
				t.Fatalf("%s-%d record %d: mirror header names %d (%v), upstream offset %d", topic, p, i, off, err, u.Offset)
			case !bytes.Equal(u.Key, d.Key) || (u.Key == nil) != (d.Key == nil):
				t.Fatalf("%s-%d offset %d: key %q, downstream %q", topic, p, u.Offset, u.Key, d.Key)
			case !bytes.Equal(u.Value, d.Value) || (u.Value == nil) != (d.Value == nil):
				t.Fatalf("%s-%d offset %d: values differ", topic, p, u.Offset)
			case !u.Timestamp.Equal(d.Timestamp):
				t.Fatalf("%s-%d offset %d: timestamp %v, downstream %v", topic, p, u.Offset, u.Timestamp, d.Timestamp)
			case !slices.EqualFunc(u.Headers, hs, func(a, b kgo.RecordHeader) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }):
				t.Fatalf("%s-%d offset %d: headers %v, downstream %v", topic, p, u.Offset, u.Headers, hs)
			}
		}
	}
}

// TestMirrorCopiesAndResumes mirrors ztf_* between two in-process
// ztfbrokers, stops, and starts again after more records and a new topic:
// every record once, in order, as sent; other topics left alone.
func TestMirrorCopiesAndResumes(t *testing.T) {
	up, down := startCluster(t), startCluster(t)
	// The topic's own configs go with it.
	overrides := map[string]*string{"retention.ms": kmsg.StringPtr("86400000"), "ztf.alert.format": kmsg.StringPtr("ocf")}
	if _, err := kadm.NewClient(up.client(t)).CreateTopic(context.Background(), 2, 1, overrides, "ztf_a"); err != nil {
		t.Fatal(err)
	}
	produceSome(t, up, "ztf_a", 2, 0, 50)
	produceSome(t, up, "other", 1, 0, 5)
	stop := runMirror(t, up, down, "ztf_*")
	readAll(t, down, "ztf_a", 50)
	stop()

	produceSome(t, up, "ztf_a", 2, 50, 30)
	produceSome(t, up, "ztf_b", 3, 0, 20)
	runMirror(t, up, down, "ztf_*")
	sameRecords(t, "ztf_a", readAll(t, up, "ztf_a", 80), readAll(t, down, "ztf_a", 80))
	sameRecords(t, "ztf_b", readAll(t, up, "ztf_b", 20), readAll(t, down, "ztf_b", 20))
	// New records keep flowing into a running mirror.
	produceSome(t, up, "ztf_b", 3, 20, 10)
	sameRecords(t, "ztf_b", readAll(t, up, "ztf_b", 30), readAll(t, down, "ztf_b", 30))

	topics, err := kadm.NewClient(down.client(t)).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has("other") {
		t.Error("topic other, outside ztf_*, was mirrored")
	}
	if n := len(topics["ztf_b"].Partitions); n != 3 {
		t.Errorf("ztf_b has %d partitions downstream, 3 upstream", n)
	}
	rcs, err := kadm.NewClient(down.client(t)).DescribeTopicConfigs(context.Background(), "ztf_a")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rcs[0].Configs {
		if want, ok := overrides[c.Key]; ok && (c.Source != kmsg.ConfigSourceDynamicTopicConfig || *c.Value != *want) {
			t.Errorf("ztf_a's %s downstream: %s (%v), upstream's override %s", c.Key, *c.Value, c.Source, *want)
		}
	}
}

// TestMirrorRefusesForeignDestination: a destination partition whose last
// record the mirror did not write is not mirrored into; the error says so
// and the partition is left as it was.
func TestMirrorRefusesForeignDestination(t *testing.T) {
	up, down := startCluster(t), startCluster(t)
	produceSome(t, up, "ztf_c", 1, 0, 5)
	produceSome(t, down, "ztf_c", 1, 0, 1)
	core, logs := observer.New(zap.ErrorLevel)
	cfg := DefaultConfig()
	cfg.Bootstrap, cfg.Dest, cfg.Topics = []string{up.addr}, []string{down.addr}, "ztf_c"
	mr, err := New(cfg, zap.New(core), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mr.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessageSnippet("mirror session failed").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	entries := logs.FilterMessageSnippet("mirror session failed").All()
	if len(entries) == 0 || !strings.Contains(fmt.Sprint(entries[0].ContextMap()["error"]), "the mirror did not write") {
		t.Fatalf("no error naming the foreign records: %v", entries)
	}
	if n := len(readAll(t, down, "ztf_c", 1)[0]); n != 1 {
		t.Errorf("destination holds %d records, want its 1", n)
	}
}
