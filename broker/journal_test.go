package broker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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
