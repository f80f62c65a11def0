package log

import (
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

	// flush.ms from 0 to an hour: an append is visible at once and waits
	// for no fsync; back to 0: the next append is fsynced before it returns.
	cfg.Flush, cfg.FlushInterval = FlushInterval, time.Hour
	if err := l.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	info := mustAppend(t, l, batch())
	l.mu.RLock()
	durable, hw := l.durable, l.hw
	l.mu.RUnlock()
	if hw != info.LastOffset+1 || durable > info.LastOffset {
		t.Fatalf("under flush.ms 3600000: high watermark %d, durable to %d, after an append ending at %d; want visible, not synced",
			hw, durable, info.LastOffset+1)
	}
	cfg.Flush = FlushAlways
	if err := l.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	info = mustAppend(t, l, batch())
	l.mu.RLock()
	durable = l.durable
	l.mu.RUnlock()
	if durable != info.LastOffset+1 {
		t.Fatalf("back under flush.ms 0: durable to %d after an acknowledged append ending at %d", durable, info.LastOffset+1)
	}
}
