package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// consumeAll reads partition 0 of topic from offset 0 to its high watermark.
func consumeAll(t *testing.T, addr, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(newClient(t, addr))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok || end.Err != nil {
		t.Fatalf("end offset of %s: %v", topic, end.Err)
	}
	if end.Offset == 0 {
		return nil
	}
	cl := newClient(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}}))
	var recs []*kgo.Record
	for int64(len(recs)) < end.Offset {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records of %s: %v", len(recs), end.Offset, topic, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

func TestFranzGoProduceConsume(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic("kgo"), kgo.DisableIdempotentWrite())
	var want [][]byte
	for _, m := range messages(500, 4000) {
		want = append(want, m)
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: m}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var got [][]byte
	for i, r := range consumeAll(t, b.Kafka, "kgo") {
		if r.Offset != int64(i) {
			t.Fatalf("record %d at offset %d", i, r.Offset)
		}
		got = append(got, r.Value)
	}
	sameMessages(t, "franz-go round trip", got, want)
}

const confluentScript = `
import sys
from confluent_kafka import Producer, Consumer, TopicPartition, OFFSET_BEGINNING
addr, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = Producer({"bootstrap.servers": addr, "acks": "all", "linger.ms": 5})
errors = []
def done(err, msg):
    if err is not None:
        errors.append(err)
for i in range(n):
    p.produce(topic, value=("confluent-%06d-" % i).encode() + b"x" * 3000, key=str(i).encode(), on_delivery=done)
    p.poll(0)
p.flush(60)
assert not errors, errors
c = Consumer({"bootstrap.servers": addr, "group.id": "unused", "enable.auto.commit": False})
c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
got = []
while len(got) < n:
    m = c.poll(30)
    assert m is not None, "timed out after %d messages" % len(got)
    assert m.error() is None, m.error()
    got.append(m)
c.close()
for i, m in enumerate(got):
    assert m.offset() == i, (i, m.offset())
    assert m.value() == ("confluent-%06d-" % i).encode() + b"x" * 3000
    assert m.key() == str(i).encode()
print("ok", len(got))
`

func TestConfluentKafkaProduceConsume(t *testing.T) {
	b := startBroker(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := runTool(t, ctx, nil, "/usr/bin/python3", "-c", confluentScript, b.Kafka, "librdkafka", "2000")
	if !strings.HasPrefix(string(out), "ok 2000") {
		t.Fatalf("python3-confluent-kafka: %s", out)
	}
	// The same data read by another client.
	recs := consumeAll(t, b.Kafka, "librdkafka")
	if len(recs) != 2000 || !bytes.HasPrefix(recs[1999].Value, []byte("confluent-001999-")) {
		t.Fatalf("franz-go read %d records of librdkafka's 2000", len(recs))
	}
}

// acked is the set of records a producer saw acknowledged.
type acked struct {
	mu   sync.Mutex
	recs map[int64][]byte // offset -> value
}

// produceUntilKilled produces from several goroutines until the broker dies,
// recording each acknowledged record with its offset.
func produceUntilKilled(t *testing.T, b *serveProc, topic string, after time.Duration) *acked {
	t.Helper()
	a := &acked{recs: map[int64][]byte{}}
	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite(),
		kgo.RecordRetries(0), kgo.ProducerLinger(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				v := []byte(fmt.Sprintf("w%d-%08d-%s", w, i, printable(2000)))
				cl.Produce(ctx, &kgo.Record{Value: v}, func(r *kgo.Record, err error) {
					if err == nil {
						a.mu.Lock()
						a.recs[r.Offset] = r.Value
						a.mu.Unlock()
					}
				})
			}
		}(w)
	}
	time.Sleep(after)
	b.Kill()
	cancel()
	wg.Wait()
	cl.Close()
	return a
}

func TestSIGKILLMidProduceKeepsAcknowledged(t *testing.T) {
	b := startBroker(t, "")
	const topic = "killed"
	a := produceUntilKilled(t, b, topic, 1500*time.Millisecond)
	if len(a.recs) == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}
	b.Restart()
	recs := consumeAll(t, b.Kafka, topic)
	checkAcked(t, a, recs)

	// And once more after a clean SIGTERM restart.
	b.Stop()
	b.Restart()
	checkAcked(t, a, consumeAll(t, b.Kafka, topic))
}

func checkAcked(t *testing.T, a *acked, recs []*kgo.Record) {
	t.Helper()
	for i, r := range recs {
		if r.Offset != int64(i) {
			t.Fatalf("offsets not contiguous: record %d has offset %d", i, r.Offset)
		}
	}
	var offsets []int64
	for o := range a.recs {
		offsets = append(offsets, o)
	}
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	for _, o := range offsets {
		if o >= int64(len(recs)) {
			t.Fatalf("acknowledged offset %d lost: only %d records after restart", o, len(recs))
		}
		if !bytes.Equal(recs[o].Value, a.recs[o]) {
			t.Fatalf("acknowledged record at offset %d differs after restart", o)
		}
	}
	t.Logf("%d acknowledged records all present among %d", len(offsets), len(recs))
}

// segmentFiles returns the .log files of a partition folder, oldest first.
func segmentFiles(t *testing.T, dataDir, partition string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dataDir, partition, "*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no segments in %s: %v", partition, err)
	}
	sort.Strings(files)
	return files
}

func logBytes(t *testing.T, dataDir, partition string) int64 {
	t.Helper()
	var n int64
	for _, f := range segmentFiles(t, dataDir, partition) {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

func TestTornTailIsRecoveredAndReported(t *testing.T) {
	b := startBroker(t, "")
	const topic = "torn"
	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite())
	for i := 0; i < 100; i++ {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(fmt.Sprintf("torn-%03d", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	b.Stop()

	files := segmentFiles(t, b.DataDir, topic+"-0")
	last := files[len(files)-1]
	st, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, st.Size()-5); err != nil {
		t.Fatal(err)
	}
	b.Restart()
	recs := consumeAll(t, b.Kafka, topic)
	if len(recs) != 99 {
		t.Fatalf("after cutting 5 bytes off the last batch, %d records remain, want 99", len(recs))
	}
	for i, r := range recs {
		if string(r.Value) != fmt.Sprintf("torn-%03d", i) {
			t.Fatalf("record %d is %q", i, r.Value)
		}
	}
	if !b.waitLog("truncat") {
		t.Fatalf("recovery did not report the truncation:\n%s", b.Logs())
	}
	// The partition takes new appends at the next offset.
	cl = newClient(t, b.Kafka, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite())
	r := &kgo.Record{Value: []byte("after")}
	if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil || r.Offset != 99 {
		t.Fatalf("produce after recovery: offset %d, %v", r.Offset, err)
	}
}

func TestFlippedBitIsNeverServed(t *testing.T) {
	b := startBroker(t, "")
	const topic = "flipped"
	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite())
	marker := []byte("THE-MESSAGE-THAT-WILL-BE-DAMAGED")
	for i := 0; i < 30; i++ {
		v := []byte(fmt.Sprintf("flip-%03d", i))
		if i == 10 {
			v = marker
		}
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	b.Stop()

	files := segmentFiles(t, b.DataDir, topic+"-0")
	seg := files[len(files)-1]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, marker)
	if at < 0 {
		t.Fatal("stored message not found verbatim in the segment")
	}
	data[at+5] ^= 0x04
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b.Restart()

	// A raw Fetch at the damaged record's offset must answer
	// KAFKA_STORAGE_ERROR and carry no data.
	cl = newClient(t, b.Kafka)
	details, err := kadm.NewClient(cl).ListTopics(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.MaxWaitMillis = 100
	req.MaxBytes = 1 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	ft.TopicID = details[topic].ID // kgo sends the newest Fetch version, which names topics by id
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset = 10
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	req.Topics = append(req.Topics, ft)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatalf("fetch of a damaged batch answered %v, want KAFKA_STORAGE_ERROR; broker log:\n%s", err, b.Logs())
	}
	if bytes.Contains(p.RecordBatches, marker[:5]) || len(p.RecordBatches) > 0 {
		t.Fatalf("damaged data served: %d bytes", len(p.RecordBatches))
	}
	if !b.waitLog(filepath.Base(seg)) {
		t.Fatalf("the broker log does not name the damaged segment %s:\n%s", filepath.Base(seg), b.Logs())
	}
	// Records before the damage are still served: a fetch from offset 0
	// returns the good batches before it and stops there.
	fp.FetchOffset = 0
	req.Topics[0].Partitions[0] = fp
	resp, err = req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	p = resp.Topics[0].Partitions[0]
	if bytes.Contains(p.RecordBatches, marker[:5]) {
		t.Fatal("a fetch from offset 0 served the damaged record")
	}
	var good []kmsg.Record
	for raw := p.RecordBatches; len(raw) > 0; {
		var batch kmsg.RecordBatch
		if err := batch.ReadFrom(raw); err != nil {
			t.Fatal(err)
		}
		raw = raw[12+int(batch.Length):]
		recs := make([]kmsg.Record, batch.NumRecords)
		kgoRecords(t, batch.Records, recs)
		good = append(good, recs...)
	}
	if len(good) != 10 {
		t.Fatalf("a fetch from offset 0 returned %d records before the damage, want 10", len(good))
	}
}

// kgoRecords decodes the uncompressed records of a batch.
func kgoRecords(t *testing.T, raw []byte, into []kmsg.Record) {
	t.Helper()
	for i := range into {
		n, used := varint(raw)
		if used <= 0 {
			t.Fatal("bad record length")
		}
		if err := into[i].ReadFrom(raw[:used+int(n)]); err != nil {
			t.Fatal(err)
		}
		raw = raw[used+int(n):]
	}
}

func varint(b []byte) (int64, int) {
	var x uint64
	var s uint
	for i, c := range b {
		if i == 10 {
			return 0, -1
		}
		x |= uint64(c&0x7f) << s
		if c < 0x80 {
			return int64(x>>1) ^ -int64(x&1), i + 1
		}
		s += 7
	}
	return 0, 0
}
