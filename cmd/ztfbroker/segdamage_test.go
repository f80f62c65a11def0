package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Issue 11, damaged segment files, against the real binary: a zeroed
// .timeindex is rebuilt before ListOffsets answers from it; a sealed .log
// deleted or truncated to zero takes its partition offline (it used to
// make consumers skip or stall); verify names each.

const (
	segTopic   = "segs"
	segRecords = 5000 // 1 KiB each: about five segments of 1 MiB
)

// segBroker starts a broker rolling 1 MiB segments, writes segRecords
// records to segTopic (record i timestamped t0+i ms, in batches of at most
// 64 KiB, so each segment has many index entries) and a few to "other",
// stops it cleanly and returns it with t0 and the segment bases.
func segBroker(t *testing.T) (*serveProc, int64, []int64) {
	t.Helper()
	b := startBroker(t, "", "--set", "log.segment.bytes=1048576")
	damageTopics(t, b.Kafka, segTopic, "other")
	t0 := time.Now().Add(-10 * time.Minute).UnixMilli()
	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic(segTopic), kgo.ProducerBatchMaxBytes(64<<10), kgo.ProducerLinger(50*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs := make([]*kgo.Record, segRecords)
	for i := range rs {
		v := make([]byte, 1024)
		copy(v, fmt.Sprintf("%s-%05d", segTopic, i))
		rs[i] = &kgo.Record{Value: v, Timestamp: time.UnixMilli(t0 + int64(i))}
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produceN(t, b.Kafka, "other", 10)
	b.Stop()
	return b, t0, segmentBases(t, filepath.Join(b.DataDir, segTopic+"-0"))
}

func segmentBases(t *testing.T, dir string) []int64 {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	var bases []int64
	for _, n := range names {
		var base int64
		if _, err := fmt.Sscanf(filepath.Base(n), "%020d.log", &base); err == nil {
			bases = append(bases, base)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	if len(bases) < 4 {
		t.Fatalf("%d segments in %s, want at least 4", len(bases), dir)
	}
	return bases
}

func segFile(b *serveProc, base int64, suffix string) string {
	return filepath.Join(b.DataDir, segTopic+"-0", fmt.Sprintf("%020d%s", base, suffix))
}

// verifyNames runs `ztfbroker verify` on the stopped broker's data dir and
// fails unless it reports segTopic damaged, naming each of words.
func verifyNames(t *testing.T, b *serveProc, words ...string) {
	t.Helper()
	out, err := runBinary(t, "verify", "--data-dir", b.DataDir)
	if err == nil || !strings.Contains(out, "DAMAGED "+segTopic+"-0") || !strings.Contains(out, "ok      other-0") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	for _, w := range words {
		if !strings.Contains(out, w) {
			t.Fatalf("verify does not name %s:\n%s", w, out)
		}
	}
}

// (a) Zeroed bytes in a sealed segment's .timeindex (a lost page read back
// as zeros) made ListOffsets by timestamp skip records: the index is now
// checked against its segment when first used, rebuilt, and the answer is
// the exact offset.
func TestSegmentDamageZeroedTimeIndex(t *testing.T) {
	b, t0, bases := segBroker(t)
	mid := len(bases) / 2
	// The middle segment loses the end of its time index, seal entry
	// included (the old code then skipped the whole segment); segment 1
	// loses entries in the middle, seal kept (found when first used).
	tidx := segFile(b, bases[mid], ".timeindex")
	early := segFile(b, bases[1], ".timeindex")
	for _, c := range []struct {
		path     string
		from, to func(n int) int
	}{
		{tidx, func(n int) int { return n / 3 }, func(n int) int { return n }},
		{early, func(n int) int { return n / 3 }, func(n int) int { return n - 1 }},
	} {
		data, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		n := len(data) / 12
		if n < 6 {
			t.Fatalf("%s has %d entries, want more", c.path, n)
		}
		clear(data[c.from(n)*12 : c.to(n)*12])
		if err := os.WriteFile(c.path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	verifyNames(t, b, tidx, early)

	b.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b.Kafka))
	check := func(off int64) {
		t.Helper()
		res, err := adm.ListOffsetsAfterMilli(ctx, t0+off, segTopic)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := res.Lookup(segTopic, 0)
		if !ok || got.Err != nil || got.Offset != off {
			t.Fatalf("ListOffsets at timestamp t0+%d: offset %d (%v), want %d", off, got.Offset, got.Err, off)
		}
	}
	for _, seg := range []int{1, mid} {
		for off := bases[seg]; off < bases[seg+1]; off += 3 {
			check(off)
		}
	}
	for _, off := range []int64{0, bases[len(bases)-1] + 1, segRecords - 1} {
		check(off)
	}
	for _, p := range []string{tidx, early} {
		if !b.waitLog(p) {
			t.Fatalf("no warning names %s:\n%s", p, b.Logs())
		}
	}
	if got := len(consumeAll(t, b.Kafka, segTopic)); got != segRecords {
		t.Fatalf("consumed %d records, want %d", got, segRecords)
	}
	b.Stop()
	if out, err := runBinary(t, "verify", "--data-dir", b.DataDir); err != nil {
		t.Fatalf("verify after the rebuild: %v\n%s", err, out)
	}
}

// (b) A middle sealed .log deleted (its indexes left) made consumers skip
// its offsets with no log line; (c) one truncated to zero stalled them at
// its first offset. Now the partition goes offline (KAFKA_STORAGE_ERROR,
// a Fetch inside the lost range included), an error line names the
// segment, and the other partitions serve.
func TestSegmentDamageMissingOrTruncated(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"deleted", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated to zero", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b, _, bases := segBroker(t)
			mid := len(bases) / 2
			seg := segFile(b, bases[mid], ".log")
			c.damage(t, seg)
			lost := fmt.Sprintf("%d to %d", bases[mid], bases[mid+1]-1)
			verifyNames(t, b, seg, lost)

			b.Restart()
			if !b.waitLog("partition offline") || !strings.Contains(b.Logs(), seg) || !strings.Contains(b.Logs(), lost) {
				t.Fatalf("no error line naming %s and offsets %s:\n%s", seg, lost, b.Logs())
			}
			produceN(t, b.Kafka, "other", 1)
			if got := len(consumeAll(t, b.Kafka, "other")); got != 11 {
				t.Fatalf("other: %d records, want 11", got)
			}
			assertStorageError(t, b, segTopic, bases[mid]+7)
		})
	}
}

// assertStorageError checks that ListOffsets and a raw Fetch at offset of
// partition 0 of topic answer KAFKA_STORAGE_ERROR and metadata names the
// partition offline.
func assertStorageError(t *testing.T, b *serveProc, topic string, offset int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b.Kafka))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil && !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatal(err)
	}
	if end, _ := ends.Lookup(topic, 0); err == nil && !errors.Is(end.Err, kerr.KafkaStorageError) {
		t.Fatalf("ListOffsets of the damaged partition: %+v, want KAFKA_STORAGE_ERROR", end)
	}
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if p := details[topic].Partitions[0]; !errors.Is(p.Err, kerr.KafkaStorageError) || len(p.OfflineReplicas) != 1 {
		t.Fatalf("metadata of the damaged partition: %+v, want KAFKA_STORAGE_ERROR and this node offline", p)
	}
	// A raw Fetch: franz-go retries KAFKA_STORAGE_ERROR without telling.
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.MaxWaitMillis, req.MaxBytes = 11, 100, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = topic, details[topic].ID
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset, fp.PartitionMaxBytes = offset, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	req.Topics = append(req.Topics, ft)
	resp, err := req.RequestWith(ctx, newClient(t, b.Kafka))
	if err != nil {
		t.Fatal(err)
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); !errors.Is(err, kerr.KafkaStorageError) || len(p.RecordBatches) != 0 {
		t.Fatalf("fetch at %d of the damaged partition: %v, %d bytes; want KAFKA_STORAGE_ERROR and no data", offset, err, len(p.RecordBatches))
	}
}
