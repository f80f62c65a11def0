package broker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A topic created over the wire with cleanup.policy=compact is compacted
// by the broker's cleaner: a franz-go consumer reading it from the start
// gets every key's last value at the offset it was produced at, offsets
// only rising, and reaches the high watermark (stepping over the empty
// batches compaction leaves); tombstones are there until
// delete.retention.ms. DescribeConfigs reports the topic's settings.
func TestCompactedTopicOverTheWire(t *testing.T) {
	s := startStack(t, t.TempDir())
	adm := kadm.NewClient(s.client())
	ctx := context.Background()
	str := func(v string) *string { return &v }
	const topic = "connect-offsets"
	res, err := adm.CreateTopics(ctx, 1, 1, map[string]*string{
		"cleanup.policy": str("compact"), "segment.ms": str("50"), "min.cleanable.dirty.ratio": str("0.01"),
		"delete.retention.ms": str("3600000"),
	}, topic)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	if r, err := adm.CreateTopics(ctx, 1, 1, map[string]*string{"cleanup.policy": str("shred")}, "bad"); err == nil && r.Error() == nil {
		t.Fatal("cleanup.policy=shred accepted")
	}
	// A record without a key is refused, as Kafka refuses it.
	if err := s.client().ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("no key")}).FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("keyless record on a compacted topic: %v, want INVALID_RECORD", err)
	}
	rc, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rc[0].Configs {
		got[c.Key] = c.MaybeValue()
	}
	if got["cleanup.policy"] != "compact" || got["delete.retention.ms"] != "3600000" || got["min.cleanable.dirty.ratio"] != "0.01" {
		t.Fatalf("described configs: cleanup.policy %q, delete.retention.ms %q, min.cleanable.dirty.ratio %q",
			got["cleanup.policy"], got["delete.retention.ms"], got["min.cleanable.dirty.ratio"])
	}

	// Produce in rounds, each compressed its own way, a record a ms apart
	// and each round a second after the last, which rolls a segment.
	last := map[string]string{} // key -> last value ("" for a tombstone)
	lastOff := map[string]int64{}
	rng := rand.New(rand.NewSource(1))
	t0 := time.Now().Add(-time.Minute)
	for round, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.ZstdCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.GzipCompression()} {
		cl := s.client(kgo.ProducerBatchCompression(codec))
		var recs []*kgo.Record
		for i := 0; i < 60; i++ {
			k := fmt.Sprintf("key-%02d", rng.Intn(20))
			r := &kgo.Record{Topic: topic, Key: []byte(k), Value: []byte(fmt.Sprintf("round %d value %d", round, i)),
				Timestamp: t0.Add(time.Duration(round*1000+i) * time.Millisecond)}
			if rng.Intn(10) == 0 {
				r.Value = nil
			}
			recs = append(recs, r)
		}
		// One call: the records go in a few batches of many, which
		// the cleaner thins out leaving gaps inside.
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			last[string(r.Key)], lastOff[string(r.Key)] = string(r.Value), r.Offset
		}
	}
	hwBefore := int64(0)
	for _, o := range lastOff {
		hwBefore = max(hwBefore, o+1)
	}
	if n := s.b.CleanCompacted(); n != 1 {
		t.Fatalf("cleaned %d partitions, want 1", n)
	}
	offs, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	hw := offs[topic][0].Offset
	if hw != hwBefore {
		t.Fatalf("high watermark %d after cleaning, %d before", hw, hwBefore)
	}

	// Read it all as a consumer does; the last record produced is its
	// key's last, in the active segment, so the read ends there.
	cl := s.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	seen := map[string]*kgo.Record{}
	prev, total := int64(-1), 0
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for prev < hw-1 && cctx.Err() == nil {
		fs := cl.PollFetches(cctx)
		if err := fs.Err(); err != nil && cctx.Err() == nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset <= prev {
				t.Fatalf("offset %d after %d", r.Offset, prev)
			}
			prev = r.Offset
			seen[string(r.Key)] = r
			total++
		})
	}
	if cctx.Err() != nil {
		t.Fatalf("consumer stuck at offset %d below the high watermark %d", prev, hw)
	}
	if total >= 300 {
		t.Fatalf("consumer read %d records of 300 produced: nothing compacted", total)
	}
	for k, v := range last {
		r := seen[k]
		if r == nil || string(r.Value) != v || r.Offset != lastOff[k] || (v == "") != (r.Value == nil) {
			t.Fatalf("key %s: consumer read %v, last produced %q at %d", k, r, v, lastOff[k])
		}
	}
	// A timestamp lookup lands on the first record left at or after it.
	var survivors []*kgo.Record
	for _, r := range seen {
		survivors = append(survivors, r)
	}
	for _, r := range survivors {
		ts := r.Timestamp.UnixMilli()
		lo, err := adm.ListOffsetsAfterMilli(ctx, ts, topic)
		if err == nil {
			err = lo.Error()
		}
		if err != nil {
			t.Fatalf("list offsets after %d: %v", ts, err)
		}
		want := r.Offset
		for _, q := range survivors {
			if q.Timestamp.UnixMilli() >= ts && q.Offset < want {
				want = q.Offset
			}
		}
		if got := lo[topic][0].Offset; got > want {
			t.Fatalf("list offsets after %d: offset %d, the first record left at or after it is %d", ts, got, want)
		}
	}
	t.Logf("%d records of 300 left for %d keys; high watermark %d", total, len(last), hw)
}

// max.compaction.lag.ms cleans a log below its min.cleanable.dirty.ratio
// once its dirty records are older.
func TestCompactedMaxLag(t *testing.T) {
	s := startStack(t, t.TempDir())
	adm := kadm.NewClient(s.client())
	ctx := context.Background()
	str := func(v string) *string { return &v }
	for topic, lag := range map[string]string{"ratio-only": "9223372036854775807", "lagged": "1"} {
		res, err := adm.CreateTopics(ctx, 1, 1, map[string]*string{"cleanup.policy": str("compact"), "segment.ms": str("50"),
			"min.cleanable.dirty.ratio": str("1"), "max.compaction.lag.ms": str(lag)}, topic)
		if err == nil {
			err = res.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cl := s.client()
	t0 := time.Now().Add(-time.Minute)
	produce := func(round int) {
		var recs []*kgo.Record
		for _, topic := range []string{"ratio-only", "lagged"} {
			for i := 0; i < 20; i++ {
				recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i % 5)), Value: []byte(fmt.Sprint(round, i)),
					Timestamp: t0.Add(time.Duration(round*1000+i) * time.Millisecond)})
			}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0)
	produce(1) // seals round 0's segment: all dirty, ratio 1
	if n := s.b.CleanCompacted(); n != 2 {
		t.Fatalf("first clean: %d partitions, want 2", n)
	}
	produce(2) // seals round 1's: dirty ratio now below 1
	if n := s.b.CleanCompacted(); n != 1 {
		t.Fatalf("second clean: %d partitions, want only the one past max.compaction.lag.ms", n)
	}
	if n := s.b.CleanCompacted(); n != 0 {
		t.Fatalf("third clean: %d partitions, want none", n)
	}
}

// cleanup.policy altered on the wire takes effect at once: a topic made
// compacted is cleaned, and retention no longer deletes its segments.
func TestCompactedByAlterConfigs(t *testing.T) {
	s := startStack(t, t.TempDir())
	adm := kadm.NewClient(s.client())
	ctx := context.Background()
	str := func(v string) *string { return &v }
	res, err := adm.CreateTopics(ctx, 1, 1, map[string]*string{"segment.ms": str("50"), "retention.ms": str("1000")}, "state")
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour) // past retention.ms: delete would remove it
	keyless := &kgo.Record{Topic: "state", Value: []byte("no key yet"), Timestamp: t0.Add(-time.Second)}
	if err := s.client().ProduceSync(ctx, keyless).FirstErr(); err != nil {
		t.Fatalf("keyless record before compaction: %v", err)
	}
	alt, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: str("compact")},
		{Op: kadm.SetConfig, Name: "min.cleanable.dirty.ratio", Value: str("0")}}, "state")
	if err == nil {
		_, err = alt.On("state", nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	cl := s.client()
	for round := 0; round < 3; round++ {
		var recs []*kgo.Record
		for i := 0; i < 10; i++ {
			recs = append(recs, &kgo.Record{Topic: "state", Key: []byte(fmt.Sprint(i % 3)), Value: []byte(fmt.Sprint(round, i)),
				Timestamp: t0.Add(time.Duration(round*1000+i) * time.Millisecond)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.b.EnforceRetention(); n != 0 {
		t.Fatalf("retention deleted %d segments of a compacted topic", n)
	}
	if n := s.b.CleanCompacted(); n != 1 {
		t.Fatalf("cleaned %d partitions after the alter, want 1", n)
	}
	offs, err := adm.ListStartOffsets(ctx, "state")
	if err != nil || offs["state"][0].Offset != 0 {
		t.Fatalf("log start offset %v (%v), want 0", offs["state"][0].Offset, err)
	}
}
