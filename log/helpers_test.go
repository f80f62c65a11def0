package log

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// makeBatch builds a v2 record batch of n records with value bytes from
// rng (or zeros), timestamps ts .. ts+n-1, as a producer would send it.
func makeBatch(rng *rand.Rand, n int, ts int64, valueSize int) []byte {
	var recs []byte
	for i := 0; i < n; i++ {
		v := make([]byte, valueSize)
		if rng != nil {
			rng.Read(v)
		}
		r := kmsg.Record{TimestampDelta64: int64(i), OffsetDelta: int32(i), Value: v}
		body := r.AppendTo(nil)
		r.Length = int32(len(body) - 1)
		recs = r.AppendTo(recs)
	}
	b := kmsg.RecordBatch{
		Magic:           2,
		LastOffsetDelta: int32(n - 1),
		FirstTimestamp:  ts,
		MaxTimestamp:    ts + int64(n) - 1,
		ProducerID:      -1,
		ProducerEpoch:   -1,
		FirstSequence:   -1,
		NumRecords:      int32(n),
		Records:         recs,
	}
	raw := b.AppendTo(nil)
	putInt32(raw[batchLengthPos:], int32(len(raw)-batchFrameSize))
	putInt32(raw[batchCRCPos:], int32(crc32.Checksum(raw[batchAttributesPos:], castagnoli)))
	return raw
}

// testBatch is a small batch whose size varies with i.
func testBatch(rng *rand.Rand, i int, ts int64) []byte {
	return makeBatch(rng, 1+i%4, ts, 10+rng.Intn(200))
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time      { return c.t }
func (c *fakeClock) Add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock               { return &fakeClock{t: time.UnixMilli(1_700_000_000_000)} }

func openT(t testing.TB, fsys FS, dir string, cfg Config, opts ...func(*Options)) *Log {
	t.Helper()
	o := Options{FS: fsys}
	for _, f := range opts {
		f(&o)
	}
	l, err := Open(dir, cfg, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

func mustAppend(t testing.TB, l *Log, b []byte) AppendInfo {
	t.Helper()
	info, err := l.Append(b)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return info
}

// readAll reads the log from offset to the high watermark in steps of
// maxBytes and returns the batches by base offset.
func readAll(t testing.TB, l *Log, from int64, maxBytes int) map[int64][]byte {
	t.Helper()
	out := map[int64][]byte{}
	off := from
	for off < l.HighWatermark() {
		data, err := l.Read(off, maxBytes, nil)
		if err != nil {
			l.mu.RLock()
			var segs []string
			for _, s := range l.segs {
				segs = append(segs, fmt.Sprintf("%d(%dB)", s.base, s.size))
			}
			l.mu.RUnlock()
			t.Fatalf("read at %d (log start %d, hw %d, segments %v): %v", off, l.LogStartOffset(), l.HighWatermark(), segs, err)
		}
		if len(data) == 0 {
			t.Fatalf("read at %d returned nothing below hw %d", off, l.HighWatermark())
		}
		for len(data) > 0 {
			h, err := parseBatchHeader(data)
			if err != nil {
				t.Fatalf("parse at %d: %v", off, err)
			}
			out[h.BaseOffset] = data[:h.Size]
			off = h.nextOffset()
			data = data[h.Size:]
		}
	}
	return out
}

// readsBack checks that l holds exactly the batches acked, by base offset.
func readsBack(t testing.TB, l *Log, acked map[int64][]byte) {
	t.Helper()
	got := readAll(t, l, 0, 1<<20)
	if len(got) != len(acked) {
		t.Fatalf("read %d batches, appended %d", len(got), len(acked))
	}
	for off, b := range acked {
		if !bytes.Equal(got[off], b) {
			t.Fatalf("batch at %d differs", off)
		}
	}
}

// sameBatch compares a stored batch with what was appended (the append
// patched baseOffset and leader epoch in the caller's slice already).
func sameBatch(a, b []byte) bool { return bytes.Equal(a, b) }

func isCorruptionErr(err error) bool {
	var ce *CorruptionError
	return errors.As(err, &ce)
}
