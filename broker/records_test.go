package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ztfbroker/ztfbroker/log"
)

func TestSplitBatches(t *testing.T) {
	one := makeBatch(t, testBatch{baseTS: 1000, tsDeltas: deltas(3, 1), valueSize: 10})
	two := makeBatch(t, testBatch{codec: codecs[1], baseTS: 2000, tsDeltas: deltas(5, 1), valueSize: 10})
	magic1 := append([]byte(nil), one...)
	magic1[offMagic] = 1
	badCRC := append([]byte(nil), one...)
	badCRC[len(badCRC)-1] ^= 0x01
	txn := makeBatch(t, testBatch{baseTS: 1, tsDeltas: deltas(1, 1), attrs: attrTransactional, producerID: 7})
	control := makeBatch(t, testBatch{baseTS: 1, tsDeltas: deltas(1, 1), attrs: attrControl})
	longLen := append([]byte(nil), one...)
	binary.BigEndian.PutUint32(longLen[offLength:], uint32(len(one)))

	cases := map[string]struct {
		in      []byte
		max     int32
		batches int
		want    *kerr.Error
	}{
		"one":           {in: one, max: 1 << 20, batches: 1},
		"two":           {in: append(append([]byte(nil), one...), two...), max: 1 << 20, batches: 2},
		"empty":         {in: nil, max: 1 << 20, want: kerr.CorruptMessage},
		"magic 1":       {in: magic1, max: 1 << 20, want: kerr.UnsupportedForMessageFormat},
		"bad crc":       {in: badCRC, max: 1 << 20, want: kerr.CorruptMessage},
		"truncated":     {in: one[:len(one)-3], max: 1 << 20, want: kerr.CorruptMessage},
		"short header":  {in: one[:10], max: 1 << 20, want: kerr.CorruptMessage},
		"length past":   {in: longLen, max: 1 << 20, want: kerr.CorruptMessage},
		"too large":     {in: one, max: int32(len(one) - 1), want: kerr.MessageTooLarge},
		"exactly max":   {in: one, max: int32(len(one)), batches: 1},
		"transactional": {in: txn, max: 1 << 20, want: kerr.TransactionalIDAuthorizationFailed},
		"control":       {in: control, max: 1 << 20, want: kerr.InvalidRecord},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			in := append([]byte(nil), c.in...)
			got, err := splitBatches(in, c.max)
			if c.want != nil {
				if !errors.Is(err, c.want) {
					t.Fatalf("err = %v, want %v", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.batches {
				t.Fatalf("%d batches, want %d", len(got), c.batches)
			}
			for _, b := range got {
				if e := binary.BigEndian.Uint32(b.batch[offEpoch:]); e != 0 {
					t.Errorf("partitionLeaderEpoch %d, want 0", e)
				}
				if _, err := log.CheckBatch(b.batch); err != nil {
					t.Errorf("CRC broken by patching the epoch: %v", err)
				}
			}
		})
	}
}

// allRecords reads every record of b, as ListOffsets does.
func allRecords(b batch) ([]record, error) {
	var out []record
	err := b.scanRecords(func(r record) bool {
		out = append(out, r)
		return true
	})
	return out, err
}

func TestRecordsEveryCodec(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			raw := makeBatch(t, testBatch{codec: c, baseTS: 5000, tsDeltas: []int64{0, 30, 10, 20}, valueSize: 300})
			b := batch(raw)
			binary.BigEndian.PutUint64(b, 100) // as the log assigns
			recs, err := allRecords(b)
			if err != nil {
				t.Fatal(err)
			}
			want := []record{{offset: 100, timestamp: 5000}, {offset: 101, timestamp: 5030}, {offset: 102, timestamp: 5010}, {offset: 103, timestamp: 5020}}
			if len(recs) != len(want) {
				t.Fatalf("got %v, want %v", recs, want)
			}
			for i := range want {
				if recs[i] != want[i] {
					t.Fatalf("got %v, want %v", recs, want)
				}
			}
			if err := b.validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
		})
	}
}

func TestRecordsLogAppendTime(t *testing.T) {
	raw := makeBatch(t, testBatch{baseTS: 5000, tsDeltas: []int64{0, 5}, attrs: attrLogAppendTime})
	recs, err := allRecords(batch(raw))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.timestamp != 5005 {
			t.Fatalf("LogAppendTime record timestamp %d, want the batch max 5005", r.timestamp)
		}
	}
}

func TestRecordsMalformed(t *testing.T) {
	raw := makeBatch(t, testBatch{baseTS: 1, tsDeltas: deltas(3, 1), valueSize: 5})
	b := batch(raw[:len(raw)-4])
	if _, err := allRecords(b); err == nil {
		t.Fatal("truncated records decoded without error")
	}
	for _, c := range codecs[1:] {
		raw := makeBatch(t, testBatch{codec: c, baseTS: 1, tsDeltas: deltas(3, 1), valueSize: 50})
		garbled := append([]byte(nil), raw...)
		for i := batchHeaderLen + 2; i < len(garbled); i++ {
			garbled[i] ^= 0x5a
		}
		if _, err := allRecords(batch(garbled)); err == nil {
			t.Errorf("%s: garbled records decoded without error", c.name)
		}
	}
}

// TestMalformedBatchRefused is issue 11: batches that pass the CRC but are
// not what they claim are refused with Kafka's code, and nothing of the
// request is stored.
func TestMalformedBatchRefused(t *testing.T) {
	good := func(n int) []byte { return recordsBody(n, 0, 10) }
	gzipOf := func(b []byte) []byte { return compress(t, codecs[1], b) }
	shuffled := append(append(append([]byte(nil), recordBytes(0, 0, 10)...), recordBytes(2, 2, 10)...), recordBytes(1, 1, 10)...)
	pid := rawBatch{count: 1, body: good(1), producerID: 9, baseSequence: -1}

	cases := map[string]struct {
		in   []byte
		want *kerr.Error
	}{
		"unknown codec 7":            {rawBatch{attrs: 7, count: 3, body: good(3)}.encode(), kerr.CorruptMessage},
		"unknown codec 5":            {rawBatch{attrs: 5, count: 3, body: good(3)}.encode(), kerr.CorruptMessage},
		"garbage records":            {rawBatch{count: 3, body: bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 20)}.encode(), kerr.InvalidRecord},
		"lastOffsetDelta absurd":     {rawBatch{count: 1, lastDelta: 1<<31 - 1, body: good(1)}.encode(), kerr.InvalidRecord},
		"recordCount 0":              {rawBatch{count: 0, lastDelta: -1, body: nil}.encode(), kerr.InvalidRecord},
		"recordCount 0 delta 0":      {rawBatch{count: 0, lastDelta: 0, body: good(1)}.encode(), kerr.InvalidRecord},
		"recordCount negative":       {rawBatch{count: -5, lastDelta: -6, body: good(1)}.encode(), kerr.InvalidRecord},
		"recordCount absurd":         {rawBatch{count: 1<<31 - 1, body: good(3)}.encode(), kerr.InvalidRecord},
		"offsetDelta not sequential": {rawBatch{count: 3, body: shuffled}.encode(), kerr.InvalidRecord},
		"offsetDelta from 1":         {rawBatch{count: 1, body: recordBytes(1, 0, 10)}.encode(), kerr.InvalidRecord},
		"fewer records than count":   {rawBatch{count: 4, body: good(3)}.encode(), kerr.InvalidRecord},
		"bytes after the records":    {rawBatch{count: 3, body: append(good(3), 0, 0)}.encode(), kerr.InvalidRecord},
		"record length too long":     {rawBatch{count: 1, body: withLength(recordBytes(0, 0, 10), +3)}.encode(), kerr.InvalidRecord},
		"record length too short":    {rawBatch{count: 1, body: append(withLength(recordBytes(0, 0, 10), -3), 0, 0, 0)}.encode(), kerr.InvalidRecord},
		"key length -2":              {rawBatch{count: 1, body: []byte{12, 0, 0, 0, 3 /* -2 */, 2, 'x', 0, 0, 0, 0, 0, 0}}.encode(), kerr.InvalidRecord},
		"header count negative":      {rawBatch{count: 1, body: []byte{12, 0, 0, 0, 1, 0, 1 /* -1 */, 0, 0, 0, 0, 0, 0}}.encode(), kerr.InvalidRecord},
		"varint too long":            {rawBatch{count: 1, body: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0, 0, 0}}.encode(), kerr.InvalidRecord},
		"LogAppendTime":              {rawBatch{attrs: attrLogAppendTime, count: 3, body: good(3)}.encode(), kerr.InvalidTimestamp},
		"delete horizon bit":         {rawBatch{attrs: 0x40, count: 3, body: good(3)}.encode(), kerr.InvalidRecord},
		"producer id, no sequence":   {pid.encode(), kerr.InvalidRecord},
		"gzip not gzip":              {rawBatch{attrs: 1, count: 3, body: good(3)}.encode(), kerr.CorruptMessage},
		"gzip of garbage records":    {rawBatch{attrs: 1, count: 3, body: gzipOf(bytes.Repeat([]byte{0x7f}, 200))}.encode(), kerr.InvalidRecord},
		"gzip checksum broken":       {rawBatch{attrs: 1, count: 3, body: flipLast(gzipOf(good(3)))}.encode(), kerr.CorruptMessage},
		"snappy block claims 1 GiB":  {rawBatch{attrs: 2, count: 1, body: append(binary.AppendUvarint(nil, 1<<30), 0, 0, 0)}.encode(), kerr.MessageTooLarge},
		"lz4 garbage":                {rawBatch{attrs: 3, count: 3, body: good(3)}.encode(), kerr.CorruptMessage},
		"zstd garbage":               {rawBatch{attrs: 4, count: 3, body: good(3)}.encode(), kerr.CorruptMessage},
	}
	e := newEnv(t, nil)
	b := e.open()
	ctx := context.Background()
	topic := mustTopic(t, b, "malformed")
	first := e.batch(2, 1, 10)
	if _, _, err := b.Produce(ctx, topic, 0, first); err != nil {
		t.Fatal(err)
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := splitBatches(append([]byte(nil), c.in...), 1<<20)
			if !errors.Is(err, c.want) {
				t.Fatalf("splitBatches: err = %v, want %v", err, c.want)
			}
			// Behind a good batch in the same request: neither is stored.
			req := append(e.batch(1, 1, 10), c.in...)
			if _, _, err := b.Produce(ctx, topic, 0, req); !errors.Is(err, c.want) {
				t.Fatalf("Produce: err = %v, want %v", err, c.want)
			}
			if ls, hw, _ := b.Offsets(context.Background(), topic, 0); ls != 0 || hw != 2 {
				t.Fatalf("offsets after a refused produce: [%d, %d), want [0, 2)", ls, hw)
			}
		})
	}
	if got := fetchAll(t, b, topic, 0, 0); len(got) != 1 {
		t.Fatalf("%d batches stored, want the first only", len(got))
	}
}

// TestDecompressionBombs: a batch that decompresses past maxDecompressed, or
// asks for a zstd window over maxZstdWindow, is refused without the memory
// it asks for.
func TestDecompressionBombs(t *testing.T) {
	zeros := make([]byte, 1<<20)
	// records whose values are n MiB of zeros in all, 1 MiB a record
	stream := func(w io.Writer, mib int) {
		for i := 0; i < mib; i++ {
			rec := kmsg.Record{TimestampDelta64: int64(i), OffsetDelta: int32(i), Value: zeros}
			enc := rec.AppendTo(nil)[1:]
			w.Write(binary.AppendVarint(nil, int64(len(enc))))
			w.Write(enc)
		}
	}
	const mib = maxDecompressed>>20 + 2
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	stream(gw, mib)
	gw.Close()
	var zs bytes.Buffer
	zw, err := zstd.NewWriter(&zs, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	stream(zw, mib)
	zw.Close()
	var wide bytes.Buffer // a window of 64 MiB declared in the frame header
	ww, err := zstd.NewWriter(&wide, zstd.WithWindowSize(64<<20), zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	stream(ww, 16)
	ww.Close()

	cases := map[string][]byte{
		"gzip":        rawBatch{attrs: 1, count: mib, body: gz.Bytes()}.encode(),
		"zstd":        rawBatch{attrs: 4, count: mib, body: zs.Bytes()}.encode(),
		"zstd window": rawBatch{attrs: 4, count: 16, body: wide.Bytes()}.encode(),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := splitBatches(in, 10<<20)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, kerr.MessageTooLarge) || !errors.Is(err, errTooLarge) {
				t.Fatalf("err = %v, want MESSAGE_TOO_LARGE", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 20<<20 {
				t.Errorf("refusing a %d-byte bomb allocated %d MiB", len(in), grew>>20)
			}
		})
	}
}

// FuzzRecords: whatever the bytes, splitBatches and the record reader
// neither panic nor accept a batch that cannot be read to its end.
func FuzzRecords(f *testing.F) {
	for _, c := range codecs {
		f.Add(makeBatch(f, testBatch{codec: c, baseTS: 1, tsDeltas: deltas(3, 7), valueSize: 20}))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if bs, err := splitBatches(append([]byte(nil), in...), 1<<20); err == nil {
			for _, b := range bs {
				if recs, err := allRecords(b.batch); err != nil || len(recs) != int(b.recordCount()) {
					t.Fatalf("accepted batch reads %d of %d records: %v", len(recs), b.recordCount(), err)
				}
			}
		}
		if len(in) >= batchHeaderLen {
			allRecords(batch(in)) // stored bytes are decoded without a CRC check here
		}
	})
}
