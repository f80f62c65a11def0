package log

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// randomTear decides what survives of a file's unsynced tail: nothing, a
// prefix, a prefix turned to zeros (extended size without data) or a
// prefix followed by garbage.
func randomTear(rng *rand.Rand, mu *sync.Mutex) func(string, []byte) []byte {
	return func(_ string, tail []byte) []byte {
		mu.Lock()
		defer mu.Unlock()
		n := rng.Intn(len(tail) + 1)
		switch rng.Intn(4) {
		case 0:
			return nil
		case 1:
			return tail[:n]
		case 2:
			return make([]byte, n)
		default:
			out := append([]byte(nil), tail[:n]...)
			for i := n; i < len(tail); i++ {
				out = append(out, byte(rng.Intn(256)))
			}
			return out
		}
	}
}

// Crash at random points while several goroutines append, reopen, and
// check: every acknowledged batch is there and intact, offsets are
// contiguous, and appends continue where the log ends. Each iteration
// crashes and recovers three times.
func TestCrashRandom(t *testing.T) {
	iterations := 300
	if testing.Short() {
		iterations = 50
	}
	for it := 0; it < iterations; it++ {
		seed := int64(it)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			crashIteration(t, seed)
		})
	}
}

func crashIteration(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	cfg := Config{
		SegmentBytes:       []int64{700, 3000, 1 << 20}[rng.Intn(3)],
		IndexIntervalBytes: []int{1, 200, 4096}[rng.Intn(3)],
		Flush:              []FlushPolicy{FlushAlways, FlushInterval}[rng.Intn(2)],
		FlushInterval:      time.Duration(1+rng.Intn(3)) * time.Millisecond,
		RetentionAge:       -1,
	}
	// A third of the runs also delete: retention by size and DeleteRecords
	// race the appends and the crash.
	deletes := rng.Intn(3) == 0
	if deletes {
		cfg.RetentionBytes = 4000
	}
	// Half the runs under FlushAlways acknowledge through a journal whose
	// small ring wraps every few dozen batches.
	journal := cfg.Flush == FlushAlways && rng.Intn(2) == 0
	crashRounds(t, rng, cfg, deletes, journal, func() int64 { return int64(1 + rng.Intn(60)) }, nil)
}

// crashRounds runs three rounds on one crash-simulating file system: open
// the log and check what survived, append from three writers (and, with
// deletes, run retention and DeleteRecords alongside) until the crashAt-th
// append crashes the file system with random tears; then it opens the log a
// last time, checks every acknowledged batch, and verifies the files.
// afterAppend, when given, sees the log after each acknowledged append.
func crashRounds(t *testing.T, rng *rand.Rand, cfg Config, deletes, journal bool, crashAt func() int64, afterAppend func(*Log)) {
	var rngMu sync.Mutex
	fsys := NewCrashFS()
	acked := map[int64][]byte{} // base offset -> batch as stored
	var ackedMu sync.Mutex
	var ackedEnd int64
	for round := 0; round < 3; round++ {
		l, j := openJournaled(t, fsys, cfg, journal)
		checkRecovered(t, l, acked, ackedEnd)
		crashAt := crashAt()
		var appends atomic.Int64
		var crashed atomic.Bool
		var rebooted *CrashFS
		crash := func() {
			if crashed.CompareAndSwap(false, true) {
				rebooted = fsys.Crash(randomTear(rng, &rngMu))
			}
		}
		var wg sync.WaitGroup
		if deletes {
			rngMu.Lock()
			dseed := rng.Int63()
			rngMu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				dr := rand.New(rand.NewSource(dseed))
				for !crashed.Load() {
					if dr.Intn(2) == 0 {
						l.EnforceRetention()
					} else {
						l.DeleteRecords(l.LogStartOffset() + int64(dr.Intn(10)))
					}
					time.Sleep(time.Duration(dr.Intn(300)) * time.Microsecond)
				}
			}()
		}
		for w := 0; w < 3; w++ {
			rngMu.Lock()
			wseed := rng.Int63()
			rngMu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				wr := rand.New(rand.NewSource(wseed))
				var written [][]byte // this writer's batches not yet synced
				for !crashed.Load() {
					b := makeBatch(wr, 1+wr.Intn(4), time.Now().UnixMilli(), wr.Intn(300))
					info, err := l.Append(b)
					if err != nil {
						return
					}
					if cfg.Flush == FlushAlways {
						ackedMu.Lock()
						acked[info.BaseOffset] = b
						ackedEnd = max(ackedEnd, info.LastOffset+1)
						if afterAppend != nil {
							afterAppend(l)
						}
						ackedMu.Unlock()
					} else if written = append(written, b); wr.Intn(8) == 0 {
						// Under interval, Sync acknowledges what was written.
						hw := l.HighWatermark()
						if l.Sync() == nil {
							ackedMu.Lock()
							ackedEnd = max(ackedEnd, hw)
							for _, w := range written {
								h, _ := parseBatchHeader(w)
								acked[h.BaseOffset] = w
							}
							ackedMu.Unlock()
							written = written[:0]
						}
					}
					if appends.Add(1) == crashAt {
						crash()
					}
				}
			}()
		}
		wg.Wait()
		crash()
		l.Close() // fails on crashed handles; must still release everything
		if j != nil {
			j.Close()
		}
		fsys = rebooted
	}
	l, j := openJournaled(t, fsys, cfg, journal)
	defer l.Close()
	if j != nil {
		defer j.Close()
	}
	checkRecovered(t, l, acked, ackedEnd)
	t.Logf("%v deletes=%v: %d acknowledged batches, log start %d, high watermark %d, %d segments", cfg.Flush, deletes, len(acked), l.LogStartOffset(), l.HighWatermark(), l.Segments())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFS(fsys, "/d/t-0"); err != nil {
		t.Fatalf("verify after recovery: %v", err)
	}
}

// openJournaled opens the log /d/t-0, with journal behind the journal
// /d/journal of a 16 KiB ring (j is then not nil).
func openJournaled(t *testing.T, fsys *CrashFS, cfg Config, journal bool) (*Log, *Journal) {
	t.Helper()
	opts := Options{FS: fsys}
	var j *Journal
	if journal {
		var err error
		if j, err = OpenJournal("/d/journal", 16<<10, Options{FS: fsys}); err != nil {
			t.Fatalf("open journal: %v", err)
		}
		j.solo = true
		opts.Journal, opts.JournalKey = j, JournalKey{1}
	}
	l, err := Open("/d/t-0", cfg, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if j != nil {
		if err := j.Start(); err != nil {
			t.Fatalf("start journal: %v", err)
		}
	}
	return l, j
}

func checkRecovered(t *testing.T, l *Log, acked map[int64][]byte, ackedEnd int64) {
	t.Helper()
	if hw := l.HighWatermark(); hw < ackedEnd {
		t.Fatalf("high watermark %d below acknowledged end %d", hw, ackedEnd)
	}
	start := l.LogStartOffset()
	got := readAll(t, l, start, 1+rand.Intn(5000))
	next := start
	for base := range got {
		next = min(next, base) // the batch holding the log start offset
	}
	for next < l.HighWatermark() {
		b, ok := got[next]
		if !ok {
			t.Fatalf("offsets not contiguous: nothing at %d", next)
		}
		h, _ := parseBatchHeader(b)
		next = h.nextOffset()
	}
	for off, want := range acked {
		h, _ := parseBatchHeader(want)
		if h.lastOffset() < start {
			continue // deleted on purpose
		}
		if !sameBatch(got[off], want) {
			t.Fatalf("acknowledged batch at %d lost or changed", off)
		}
	}
	// The log continues where it ends.
	info, err := l.Append(makeBatch(nil, 1, 1, 1))
	if err != nil || info.BaseOffset != next {
		t.Fatalf("append after recovery: offset %d (%v), want %d", info.BaseOffset, err, next)
	}
	if got, err := parseBatchHeader(mustRead(t, l, info.BaseOffset)); err != nil || got.BaseOffset != info.BaseOffset {
		t.Fatalf("read back after recovery: %v", err)
	}
}

func mustRead(t *testing.T, l *Log, off int64) []byte {
	t.Helper()
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	b, err := l.Read(off, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Cut the last batch at every byte: recovery keeps exactly the batches
// before it (or all of them when nothing is missing), truncates, counts.
func TestTornTailEveryByte(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	var prefix [][]byte
	for i := 0; i < 12; i++ {
		prefix = append(prefix, testBatch(rng, i, int64(i)))
	}
	last := makeBatch(rng, 3, 100, 60)
	cfg := Config{Flush: FlushInterval, FlushInterval: time.Hour, IndexIntervalBytes: 256, SegmentBytes: 2000}
	for cut := 0; cut <= len(last); cut++ {
		fsys := NewCrashFS()
		l := openT(t, fsys, "/d/t-0", cfg)
		var end int64
		for _, b := range prefix {
			end = mustAppend(t, l, append([]byte(nil), b...)).LastOffset + 1
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Write(append([]byte(nil), last...)); err != nil {
			t.Fatal(err)
		}
		fsys = fsys.Crash(func(name string, tail []byte) []byte {
			if filepath.Ext(name) == logSuffix {
				return tail[:cut]
			}
			return tail
		})
		l.Close()
		m, _ := NewMetrics(nil)
		l = openT(t, fsys, "/d/t-0", cfg, func(o *Options) { o.Metrics = m })
		want, truncs := end, 0.0
		switch {
		case cut == len(last):
			want += 3
		case cut > 0:
			truncs = 1
		}
		if hw := l.HighWatermark(); hw != want {
			t.Fatalf("cut %d: high watermark %d, want %d", cut, hw, want)
		}
		if got := counterValue(m.RecoveryTruncations); got != truncs {
			t.Fatalf("cut %d: %v truncations counted", cut, got)
		}
		if got := counterValue(m.RecoveryBytesLost); truncs == 1 && got != float64(cut) {
			t.Fatalf("cut %d: %v bytes lost counted", cut, got)
		}
		readAll(t, l, 0, 1<<20)
		if info := mustAppend(t, l, makeBatch(nil, 1, 1, 1)); info.BaseOffset != want {
			t.Fatalf("cut %d: next append at %d, want %d", cut, info.BaseOffset, want)
		}
		l.Close()
		if err := VerifyFS(fsys, "/d/t-0"); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
	}
}

// Flip one bit at every byte of a sealed segment: a consumer reading
// through it must get a CorruptionError, never the damaged bytes, and
// Verify must report it.
func TestBitFlipsDetected(t *testing.T) {
	fsys := NewCrashFS()
	l := openT(t, fsys, "/d/t-0", Config{SegmentBytes: 1500, IndexIntervalBytes: 300})
	defer l.Close()
	rng := rand.New(rand.NewSource(10))
	buildLog(t, l, rng, 30, func(i int) int64 { return int64(i) })
	if l.Segments() < 3 {
		t.Fatal("want sealed segments")
	}
	l.mu.RLock()
	seg, next := l.segs[1], l.segs[2].base
	l.mu.RUnlock()
	orig, _ := fsys.Bytes(seg.path)
	for pos := range orig {
		bits := []int{rng.Intn(8)}
		if pos < batchHeaderSize {
			bits = []int{0, 1, 2, 3, 4, 5, 6, 7}
		}
		for _, bit := range bits {
			damaged := append([]byte(nil), orig...)
			damaged[pos] ^= 1 << bit
			fsys.SetBytes(seg.path, damaged)
			// As after a restart (the disk changed while the broker
			// was down): nothing verified, every read checks the CRC.
			// Bytes changed under a running log are the scrub's
			// (TestScrubFindsFlipAfterVerify).
			seg.verified.Store(0)
			detected := false
			for off := seg.base; off < next; {
				data, err := l.Read(off, 1+rng.Intn(2000), nil)
				if err != nil {
					if !isCorruptionErr(err) {
						t.Fatalf("byte %d bit %d: %v", pos, bit, err)
					}
					detected = true
					break
				}
				for len(data) > 0 {
					h, _ := parseBatchHeader(data)
					if int64(len(data)) < h.Size || h.Size < batchHeaderSize {
						t.Fatalf("byte %d bit %d: short batch returned", pos, bit)
					}
					if indexIn(orig, data[:h.Size]) == len(orig) {
						t.Fatalf("byte %d bit %d: damaged batch returned as data", pos, bit)
					}
					off, data = h.nextOffset(), data[h.Size:]
				}
			}
			if !detected {
				t.Fatalf("byte %d bit %d: flip not detected", pos, bit)
			}
			if pos%97 == 0 {
				if err := VerifyFS(fsys, "/d/t-0"); err == nil {
					t.Fatalf("byte %d: Verify missed the flip", pos)
				}
			}
		}
	}
	fsys.SetBytes(seg.path, orig)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
}

// indexIn returns where b starts in orig, or len(orig) when it does not
// occur there (batches of other segments are checked by their CRC).
func indexIn(orig, b []byte) int {
	for i := 0; i+len(b) <= len(orig); i++ {
		if string(orig[i:i+len(b)]) == string(b) {
			return i
		}
	}
	return len(orig)
}

// Opening a log costs O(segments): 1,000 sealed segments open in well
// under a second on the real file system.
func TestOpenThousandSegments(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	cfg := Config{SegmentBytes: 150}
	l := openT(t, noSyncFS{}, dir, cfg)
	for i := 0; i < 1000; i++ {
		mustAppend(t, l, makeBatch(nil, 1, int64(i), 40))
	}
	if n := l.Segments(); n < 1000 {
		t.Fatalf("%d segments", n)
	}
	l.Close()
	start := time.Now()
	l = openT(t, nil, dir, cfg)
	took := time.Since(start)
	defer l.Close()
	t.Logf("opened %d segments in %v", l.Segments(), took)
	if took > time.Second {
		t.Fatalf("open took %v", took)
	}
	if off, _, ok, err := l.OffsetForTime(500); err != nil || !ok || off != 500 {
		t.Fatalf("time look-up: %d %v %v", off, ok, err)
	}
	readAll(t, l, 990, 1<<20)
}

// noSyncFS builds big test logs quickly; durability is not under test.
type noSyncFS struct{ OSFS }

type noSyncFile struct{ File }

func (noSyncFile) Sync() error { return nil }

func (f noSyncFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	file, err := f.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return noSyncFile{file}, nil
}

func (noSyncFS) SyncDir(string) error { return nil }

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
