package log

import (
	"errors"
	"math/rand"
	"testing"
	"time"
)

// TestReconfigure changes segment.bytes and retention.bytes of an open log
// while a writer appends: the log rolls at the new size at once and the
// next retention pass deletes by the new bound; the flush policy stays.
func TestReconfigure(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	cfg := Config{SegmentBytes: 1 << 30, RetentionBytes: -1}
	l := openT(t, nil, t.TempDir(), cfg)
	defer l.Close()
	batch := func() []byte { return makeBatch(rng, 1, time.Now().UnixMilli(), 4000) }
	for range 10 {
		mustAppend(t, l, batch())
	}
	if n := l.Segments(); n != 1 {
		t.Fatalf("%d segments before the change, want 1", n)
	}
	done := make(chan struct{})
	go func() { // a writer racing the change (run with -race)
		defer close(done)
		for range 50 {
			if _, err := l.Append(batch()); err != nil {
				t.Errorf("append: %v", err)
				return
			}
		}
	}()
	cfg.SegmentBytes, cfg.RetentionBytes = 10_000, 20_000
	if err := l.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	<-done
	for range 10 {
		mustAppend(t, l, batch())
	}
	if n := l.Segments(); n < 5 {
		t.Fatalf("%d segments after segment.bytes 10000 and 70 more 4 kB batches, want many", n)
	}
	if _, bySize, err := l.Retain(); err != nil || len(bySize) == 0 {
		t.Fatalf("retention after retention.bytes 20000: deleted %d segments by size, err %v", len(bySize), err)
	}
	if l.Size() > 40_000 {
		t.Fatalf("log holds %d bytes after retention.bytes 20000", l.Size())
	}
	cfg.Flush, cfg.FlushInterval = FlushInterval, time.Second
	if err := l.Reconfigure(cfg); !errors.Is(err, ErrFlushFixed) {
		t.Fatalf("changing flush.ms live: %v, want ErrFlushFixed", err)
	}
}
