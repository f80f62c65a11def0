package broker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The journal's checkpoint damaged on disk: Open refuses, naming the file
// and the way out; with the folder moved away the broker starts, and what
// a clean close left in the segments is all there.
func TestJournalCheckpointDamaged(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	ctx := context.Background()
	if err := b.CreateTopic(ctx, "night", 3, nil, false); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, _, err := b.Produce(ctx, "night", int32(i), e.batch(5, 1, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(e.dir, journalDir, "checkpoint")
	raw, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatalf("the broker keeps no journal checkpoint: %v", err)
	}
	raw[9] ^= 0x40
	if err := os.WriteFile(ckpt, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(e.cfg, nil, nil, e.clock.Now)
	if err == nil || !strings.Contains(err.Error(), ckpt) || !strings.Contains(err.Error(), "CRC") ||
		!strings.Contains(err.Error(), "moved away") {
		t.Fatalf("Open with a damaged journal checkpoint: %v", err)
	}
	if err := os.Rename(filepath.Join(e.dir, journalDir), filepath.Join(e.dir, "journal.damaged")); err != nil {
		t.Fatal(err)
	}
	b = e.open()
	for i := range 3 {
		if hw := b.topics["night"].partitions[i].log.HighWatermark(); hw != 5 {
			t.Fatalf("partition %d: high watermark %d after the restart, want 5", i, hw)
		}
	}
}

// Partitions written at once are acknowledged through the journal, and its
// metrics say so.
func TestJournalTakesConcurrentPartitions(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	ctx := context.Background()
	if err := b.CreateTopic(ctx, "night", 3, nil, false); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if _, _, err := b.Produce(ctx, "night", int32(i), e.batch(2, 1, 500)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var bytes float64
	var syncs uint64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "ztfbroker_log_journal_bytes_total":
			bytes = mf.Metric[0].GetCounter().GetValue()
		case "ztfbroker_log_journal_fsync_seconds":
			syncs = mf.Metric[0].GetHistogram().GetSampleCount()
		}
	}
	if bytes == 0 || syncs == 0 {
		t.Fatalf("600 batches to 3 partitions at once: %v bytes and %d fsyncs through the journal", bytes, syncs)
	}
	t.Logf("%v bytes through the journal in %d fsyncs", bytes, syncs)
}
