package main

import (
	"bufio"
	"bytes"
	"context"
	be "encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Issue 11: batches whose CRC is right but whose contents lie were stored,
// and consumers then looped on them forever; a small gzip batch that
// decompresses to 120 MiB made ListOffsets-by-timestamp allocate it all.

// wireBatch is a v2 record batch put together field by field, with the
// CRC32C computed over whatever body it is given, as a hostile or broken
// client would send it.
type wireBatch struct {
	attrs     int16
	count     int32
	lastDelta int32 // used when not 0; else count-1
	baseTS    int64
	maxTS     int64
	body      []byte
}

func (w wireBatch) encode() []byte {
	last := w.lastDelta
	if last == 0 {
		last = w.count - 1
	}
	b := kmsg.RecordBatch{
		Magic: 2, Attributes: w.attrs, LastOffsetDelta: last, FirstTimestamp: w.baseTS, MaxTimestamp: w.maxTS,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: w.count, Records: w.body,
	}
	raw := b.AppendTo(nil)
	be.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	be.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}

// wireRecord is one record framed as clients frame it.
func wireRecord(offsetDelta int32, tsDelta int64, value []byte) []byte {
	r := kmsg.Record{TimestampDelta64: tsDelta, OffsetDelta: offsetDelta, Value: value}
	body := r.AppendTo(nil)[1:] // Length 0 encodes as one byte
	return append(be.AppendVarint(nil, int64(len(body))), body...)
}

// produceRaw sends batches to partition 0 of topic in one Produce request
// and returns the partition's answer.
func produceRaw(t *testing.T, cl *kgo.Client, topic string, batches []byte) (int64, int16) {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 9, -1, 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batches
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	p := resp.Topics[0].Partitions[0]
	return p.BaseOffset, p.ErrorCode
}

func TestMalformedBatchesRefused(t *testing.T) {
	b := startBroker(t, "")
	const topic = "malformed"
	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite())
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	three := func() []byte {
		var out []byte
		for i := range 3 {
			out = append(out, wireRecord(int32(i), int64(i), []byte("v"))...)
		}
		return out
	}
	shuffled := append(append(wireRecord(0, 0, []byte("a")), wireRecord(2, 1, []byte("b"))...), wireRecord(1, 2, []byte("c"))...)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(bytes.Repeat([]byte{0x7f}, 300))
	w.Close()

	for _, c := range []struct {
		name  string
		batch wireBatch
		want  *kerr.Error
	}{
		{"unknown codec 7", wireBatch{attrs: 7, count: 3, body: three()}, kerr.CorruptMessage},
		{"garbage records", wireBatch{count: 3, body: bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 16)}, kerr.InvalidRecord},
		{"lastOffsetDelta absurd", wireBatch{count: 1, lastDelta: 1<<31 - 1, body: wireRecord(0, 0, []byte("x"))}, kerr.InvalidRecord},
		{"recordCount 0", wireBatch{count: 0, lastDelta: -1}, kerr.InvalidRecord},
		{"offsetDelta not sequential", wireBatch{count: 3, body: shuffled}, kerr.InvalidRecord},
		{"gzip of garbage records", wireBatch{attrs: 1, count: 3, body: gz.Bytes()}, kerr.InvalidRecord},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.batch.baseTS, c.batch.maxTS = now, now+2
			// A good batch ahead of it in the same request is not stored either.
			good := wireBatch{count: 1, baseTS: now, maxTS: now, body: wireRecord(0, 0, []byte("good"))}.encode()
			if _, code := produceRaw(t, cl, topic, append(good, c.batch.encode()...)); code != c.want.Code {
				t.Fatalf("produce answered %v, want %v", kerr.ErrorForCode(code), c.want)
			}
			if !b.waitLog(strconv.Quote(topic)) || !b.waitLog("refused record batches") {
				t.Fatalf("no log line names the refused batch:\n%s", b.Logs())
			}
		})
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// A consumer reads the topic to its end: two records, nothing between.
	// consumeAll gives up after a minute: a consumer stuck on a stored bad
	// batch fails here.
	recs := consumeAll(t, b.Kafka, topic)
	if len(recs) != 2 || string(recs[0].Value) != "before" || string(recs[1].Value) != "after" || recs[1].Offset != 1 {
		t.Fatalf("consumed %d records, want before and after at offsets 0 and 1", len(recs))
	}
	logs := b.Logs()
	for _, want := range []string{"refused record batches", `"partition":0`, "client_id"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
}

// TestListOffsetsGzipBomb: 4 parallel ListOffsets-by-timestamp over a
// ~120 KB gzip batch of 120 records of 1 MiB of zeros each. The broker
// reads the records from the stream and stops at the answer, so its peak
// RSS stays far below the 4 x 120 MiB that decompressing whole batches takes.
func TestListOffsetsGzipBomb(t *testing.T) {
	b := startBroker(t, "")
	const topic = "bomb"
	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite())
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("first")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	const n, step = 120, 10
	base := time.Now().UnixMilli() + 1000
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	zeros := make([]byte, 1<<20)
	for i := range n {
		w.Write(wireRecord(int32(i), int64(i*step), zeros))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	bomb := wireBatch{attrs: 1, count: n, baseTS: base, maxTS: base + (n-1)*step, body: gz.Bytes()}.encode()
	t.Logf("gzip batch of %d KB decompressing to %d MiB", len(bomb)>>10, n)
	if off, code := produceRaw(t, cl, topic, bomb); code != 0 || off != 1 {
		t.Fatalf("produce of the gzip batch: offset %d %v", off, kerr.ErrorForCode(code))
	}
	after := wireBatch{count: 1, baseTS: base + n*step, maxTS: base + n*step, body: wireRecord(0, 0, []byte("after"))}.encode()
	if off, code := produceRaw(t, cl, topic, after); code != 0 || off != n+1 {
		t.Fatalf("produce after: offset %d %v", off, kerr.ErrorForCode(code))
	}
	before := peakRSS(t, b.cmd.Process.Pid)

	// Records 30, 60, 90 and 119 of the batch (offsets 31, 61, 91, 120),
	// asked for with timestamps just above their predecessor's.
	var wg sync.WaitGroup
	for _, rec := range []int64{30, 60, 90, 119} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := base + rec*step - step + 1
			req := kmsg.NewPtrListOffsetsRequest()
			req.Version = 4
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = topic
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Timestamp = ts
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			resp, err := req.RequestWith(ctx, cl)
			if err != nil {
				t.Error(err)
				return
			}
			p := resp.Topics[0].Partitions[0]
			if p.ErrorCode != 0 || p.Offset != 1+rec || p.Timestamp != base+rec*step {
				t.Errorf("ListOffsets(%d) = offset %d timestamp %d %v, want offset %d timestamp %d",
					ts, p.Offset, p.Timestamp, kerr.ErrorForCode(p.ErrorCode), 1+rec, base+rec*step)
			}
		}()
	}
	wg.Wait()
	peak := peakRSS(t, b.cmd.Process.Pid)
	t.Logf("broker peak RSS (VmHWM): %d MiB before the ListOffsets requests, %d MiB after", before>>20, peak>>20)
	if peak > 200<<20 {
		t.Fatalf("broker peak RSS %d MiB over 200 MiB answering 4 ListOffsets over a gzip batch", peak>>20)
	}
}

// peakRSS reads VmHWM, the process's peak resident set, from /proc.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
