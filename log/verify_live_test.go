package log

import (
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// VerifyLive reads a running log up to its last complete batch: a partial
// batch at the end of the active segment is in flight, not damage, while
// a flipped bit in a whole batch is still damage.
func TestVerifyLive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	l := openT(t, nil, dir, Config{SegmentBytes: 4000, IndexIntervalBytes: 200, Flush: FlushInterval, FlushInterval: time.Hour})
	rng := rand.New(rand.NewSource(5))
	var next []byte
	for i := 0; ; i++ {
		b := testBatch(rng, i, int64(i))
		if l.Segments() >= 3 {
			next = b
			break
		}
		mustAppend(t, l, b)
	}
	end := l.HighWatermark()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A writer caught half-way through the next batch, with its base
	// offset patched in as the log does.
	putBaseOffset(next, end)
	names, err := OSFS{}.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	last := int64(-1)
	for _, n := range names {
		if base, ok := parseSegmentName(n); ok {
			last = max(last, base)
		}
	}
	seg, _, _ := segmentPaths(dir, last)
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	torn := append(append([]byte(nil), data...), next[:len(next)/2]...)
	if err := os.WriteFile(seg, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dir); !isCorruptionErr(err) {
		t.Fatalf("Verify of a torn tail: %v, want corruption", err)
	}
	in, err := VerifyLive(dir)
	if err != nil || in == nil || in.Segment != seg || in.Position != int64(len(data)) || in.Bytes != int64(len(next)/2) {
		t.Fatalf("VerifyLive of a torn tail: %+v, %v", in, err)
	}

	// A flipped bit inside the last whole batch is damage, live or not.
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)-3] ^= 0x20
	if err := os.WriteFile(seg, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	if in, err := VerifyLive(dir); !isCorruptionErr(err) || in != nil {
		t.Fatalf("VerifyLive of a flipped bit: %+v, %v", in, err)
	}
}

func putBaseOffset(b []byte, offset int64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(offset >> (56 - 8*i))
	}
}
