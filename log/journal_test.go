package log

import (
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"
)

// openJournalT opens the journal /d/journal of fsys with a ring of ring
// bytes and the logs /d/t-<i> behind it (keys[i] their topic ids), then
// starts the journal.
func openJournalT(t *testing.T, fsys *CrashFS, ring int64, keys []JournalKey) (*Journal, []*Log) {
	t.Helper()
	j, err := OpenJournal("/d/journal", ring, Options{FS: fsys})
	if err != nil {
		t.Fatalf("open journal: %v", err)
	}
	j.solo = true // one log alone also goes through the ring
	logs := make([]*Log, len(keys))
	for i, k := range keys {
		l, err := Open(fmt.Sprintf("/d/t-%d", i), Config{Flush: FlushAlways, RetentionAge: -1}, Options{FS: fsys, Journal: j, JournalKey: k})
		if err != nil {
			t.Fatalf("open log %d: %v", i, err)
		}
		logs[i] = l
	}
	if err := j.Start(); err != nil {
		t.Fatalf("start journal: %v", err)
	}
	waitFilled(t, j)
	return j, logs
}

// waitFilled waits until the journal takes records (the start of its ring
// is filled).
func waitFilled(t testing.TB, j *Journal) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(time.Millisecond) {
		j.mu.Lock()
		filled := j.filled > j.pos
		j.mu.Unlock()
		if filled {
			return
		}
	}
	t.Fatal("the journal's ring was not filled in 10 s")
}

func closeJournalT(j *Journal, logs []*Log) {
	for _, l := range logs {
		l.Close()
	}
	j.Close()
}

// A power cut after acknowledgements that only the journal holds: every
// acknowledged batch of every partition comes back, and the segments had
// not held them (the replay did the work). A ring of 64 KiB wraps many
// times, so the checkpointer's segment fsyncs and checkpoints run too.
func TestJournalPowerCut(t *testing.T) {
	for _, ring := range []int64{64 << 10, DefaultJournalBytes} {
		t.Run(fmt.Sprint(ring), func(t *testing.T) {
			fsys := NewCrashFS()
			keys := []JournalKey{{1}, {2}, {3}}
			j, logs := openJournalT(t, fsys, ring, keys)
			acked := make([]map[int64][]byte, len(logs))
			var wg sync.WaitGroup
			for i, l := range logs {
				acked[i] = map[int64][]byte{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewSource(int64(i)))
					for n := 0; n < 300; n++ {
						b := makeBatch(rng, 1+rng.Intn(4), 1000, 50+rng.Intn(1500))
						info := mustAppend(t, l, b)
						acked[i][info.BaseOffset] = b
					}
				}()
			}
			wg.Wait()
			rebooted := fsys.Crash(nil)
			closeJournalT(j, logs)
			if ring == DefaultJournalBytes {
				// The ring never turned: no segment fsync happened, so the
				// segments on disk lack what was acknowledged.
				if n := durableBatches(rebooted, "/d/t-0"); n >= len(acked[0]) {
					t.Fatalf("the segment held %d of %d batches without the journal: the test does not test the replay", n, len(acked[0]))
				}
			}
			j, logs = openJournalT(t, rebooted, ring, keys)
			defer closeJournalT(j, logs)
			for i, l := range logs {
				readsBack(t, l, acked[i])
				// The log goes on where it ended.
				rng := rand.New(rand.NewSource(99))
				b := makeBatch(rng, 2, 2000, 100)
				if info := mustAppend(t, l, b); info.BaseOffset != l.HighWatermark()-2 {
					t.Fatalf("log %d: appended at %d, high watermark %d", i, info.BaseOffset, l.HighWatermark())
				}
			}
		})
	}
}

// durableBatches counts the valid batches at the start of the active
// segment of dir as fsys holds it.
func durableBatches(fsys *CrashFS, dir string) int {
	seg, _ := fsys.Bytes(dir + "/" + segmentName(0) + logSuffix)
	n := 0
	for len(seg) >= batchFrameSize {
		h, err := parseBatchHeader(seg)
		if err != nil || h.Size > int64(len(seg)) {
			break
		}
		if _, err := validateIncoming(seg[:h.Size]); err != nil {
			break
		}
		n++
		seg = seg[h.Size:]
	}
	return n
}

// A topic deleted and created again under the same name (a new topic id),
// then a power cut: the new topic's log gets none of the old topic's
// records, which the ring still holds.
func TestJournalKeyedByTopic(t *testing.T) {
	fsys := NewCrashFS()
	j, logs := openJournalT(t, fsys, DefaultJournalBytes, []JournalKey{{7}})
	rng := rand.New(rand.NewSource(1))
	for n := 0; n < 20; n++ {
		mustAppend(t, logs[0], makeBatch(rng, 2, 1000, 300))
	}
	// DeleteTopic: the log closes and its folder goes.
	if err := logs[0].Close(); err != nil {
		t.Fatal(err)
	}
	if err := fsys.RemoveAll("/d/t-0"); err != nil {
		t.Fatal(err)
	}
	if err := fsys.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	// CreateTopics: a new log in a new folder of the same name.
	l, err := Open("/d/t-0", Config{Flush: FlushAlways, RetentionAge: -1}, Options{FS: fsys, Journal: j, JournalKey: JournalKey{8}})
	if err != nil {
		t.Fatal(err)
	}
	rebooted := fsys.Crash(nil)
	closeJournalT(j, []*Log{l})
	j, logs = openJournalT(t, rebooted, DefaultJournalBytes, []JournalKey{{8}})
	defer closeJournalT(j, logs)
	if hw := logs[0].HighWatermark(); hw != 0 {
		t.Fatalf("the new topic starts at %d: the old topic's records were replayed into it", hw)
	}
}

// A failed fsync of the ring turns the journal off: the logs go on,
// fsyncing their own segments, and what they acknowledge survives a cut.
func TestJournalSyncFailure(t *testing.T) {
	fsys := NewCrashFS()
	j, logs := openJournalT(t, fsys, DefaultJournalBytes, []JournalKey{{1}})
	l := logs[0]
	rng := rand.New(rand.NewSource(1))
	acked := map[int64][]byte{}
	b := makeBatch(rng, 1, 1000, 100)
	acked[mustAppend(t, l, b).BaseOffset] = b
	j.mu.Lock()
	j.breakLocked(fmt.Errorf("injected"))
	j.mu.Unlock()
	for n := 0; n < 10; n++ {
		b := makeBatch(rng, 1, 1000, 100)
		acked[mustAppend(t, l, b).BaseOffset] = b
	}
	if got := durableBatches(fsys.Crash(nil), "/d/t-0"); got < len(acked)-1 {
		t.Fatalf("with the journal off the segment holds %d of the %d batches acknowledged after", got, len(acked)-1)
	}
	closeJournalT(j, logs)
}

// A log writing alone shares no fsync: it fsyncs its own segment, and the
// journal stays out of its way.
func TestJournalLoneWriter(t *testing.T) {
	fsys := NewCrashFS()
	j, logs := openJournalT(t, fsys, DefaultJournalBytes, []JournalKey{{1}})
	j.mu.Lock()
	j.solo = false
	j.mu.Unlock()
	rng := rand.New(rand.NewSource(1))
	for n := 0; n < 20; n++ {
		mustAppend(t, logs[0], makeBatch(rng, 1, 1000, 100))
	}
	if got := durableBatches(fsys.Crash(nil), "/d/t-0"); got != 20 {
		t.Fatalf("the segment holds %d of 20 batches acknowledged by a lone writer", got)
	}
	closeJournalT(j, logs)
}

// A failed segment fsync makes the log read-only; Reopen cuts the segment
// back to what it holds fsynced and replays the live ring, so the batches
// the journal acknowledged past that cut stay.
func TestJournalReopenReplays(t *testing.T) {
	fsys := NewCrashFS()
	j, logs := openJournalT(t, fsys, DefaultJournalBytes, []JournalKey{{1}})
	defer closeJournalT(j, logs)
	l := logs[0]
	rng := rand.New(rand.NewSource(1))
	acked := map[int64][]byte{}
	for n := 0; n < 30; n++ {
		b := makeBatch(rng, 2, 1000, 200)
		acked[mustAppend(t, l, b).BaseOffset] = b
	}
	fsys.InjectSyncError(fmt.Errorf("injected EIO"))
	if err := l.Sync(); err == nil {
		t.Fatal("Sync succeeded under an injected fsync error")
	}
	fsys.InjectSyncError(nil)
	if _, err := l.Append(makeBatch(rng, 1, 1000, 10)); err == nil {
		t.Fatal("a read-only log took a write")
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	readsBack(t, l, acked)
}
