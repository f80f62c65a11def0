package log

import (
	"errors"
	"math/rand"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Issue 11: damaged segment files. An index that disagrees with its
// segment is rebuilt when first used; a sealed segment missing or cut short
// fails Open with a *CorruptionError naming it and the offsets lost; the
// first segments retention removed are not a gap.

const damageDir = "/p/t-0"

var damageCfg = Config{SegmentBytes: 3000, IndexIntervalBytes: 300}

// damagedLog writes a closed log of several segments with timestamps
// 1000 + 10*i and returns its batches and segment bases.
func damagedLog(t *testing.T) (*CrashFS, []batchHeader, []int64) {
	t.Helper()
	fsys := NewCrashFS()
	l := openT(t, fsys, damageDir, damageCfg)
	hs := buildLog(t, l, rand.New(rand.NewSource(11)), 120, func(i int) int64 { return 1000 + 10*int64(i) })
	l.mu.RLock()
	var bases []int64
	for _, s := range l.segs {
		bases = append(bases, s.base)
	}
	l.mu.RUnlock()
	if len(bases) < 5 {
		t.Fatalf("%d segments, want at least 5", len(bases))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return fsys, hs, bases
}

func segPath(base int64, suffix string) string {
	return path.Join(damageDir, segmentName(base)+suffix)
}

// observed returns a logger that records warnings and errors.
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.WarnLevel)
	return zap.New(core), logs
}

func logsNaming(logs *observer.ObservedLogs, s string) bool {
	for _, e := range logs.All() {
		if strings.Contains(e.Message, s) {
			return true
		}
		for _, f := range e.Context {
			if err, ok := f.Interface.(error); ok && strings.Contains(err.Error(), s) {
				return true
			}
			if strings.Contains(f.String, s) {
				return true
			}
		}
	}
	return false
}

// firstAtOrAfter is what ListOffsets by timestamp must answer: the first
// batch whose max timestamp is >= ts.
func firstAtOrAfter(hs []batchHeader, ts int64) (int64, bool) {
	for _, h := range hs {
		if h.MaxTimestamp >= ts {
			return h.BaseOffset, true
		}
	}
	return 0, false
}

func checkTimeLookups(t *testing.T, l *Log, hs []batchHeader) {
	t.Helper()
	for ts := int64(990); ts <= hs[len(hs)-1].MaxTimestamp+1; ts += 3 {
		want, wantOK := firstAtOrAfter(hs, ts)
		got, _, ok, err := l.OffsetForTime(ts)
		if err != nil || ok != wantOK || got != want {
			t.Fatalf("offset for time %d: %d %v %v, want %d %v", ts, got, ok, err, want, wantOK)
		}
	}
}

// Zeroed bytes in a sealed segment's .timeindex (as a lost page reads
// back) made ListOffsets skip records: the index is now checked against
// its segment when first used, and rebuilt.
func TestZeroedTimeIndexRebuilt(t *testing.T) {
	for _, c := range []struct {
		name string
		zero func(n int) (from, to int) // entry range of n entries to zero
	}{
		{"middle entries", func(n int) (int, int) { return n / 3, n - 2 }},
		{"one entry", func(n int) (int, int) { return n / 2, n/2 + 1 }},
		{"seal entry", func(n int) (int, int) { return n - 1, n }},
		{"all", func(n int) (int, int) { return 0, n }},
	} {
		t.Run(c.name, func(t *testing.T) {
			fsys, hs, bases := damagedLog(t)
			tidx := segPath(bases[2], timeIndexSuffix)
			b, _ := fsys.Bytes(tidx)
			n := len(b) / timeEntrySize
			if n < 4 {
				t.Fatalf("%d time index entries, want more", n)
			}
			from, to := c.zero(n)
			clear(b[from*timeEntrySize : to*timeEntrySize])
			fsys.SetBytes(tidx, b)

			lg, logs := observed()
			l := openT(t, fsys, damageDir, damageCfg, func(o *Options) { o.Logger = lg })
			defer l.Close()
			checkTimeLookups(t, l, hs)
			if !logsNaming(logs, tidx) {
				t.Fatalf("no warning names %s: %v", tidx, logs.All())
			}
			if got := readAll(t, l, 0, 1<<20); len(got) != len(hs) {
				t.Fatalf("read %d batches, want %d", len(got), len(hs))
			}
			l.Close()
			if err := VerifyFS(fsys, damageDir); err != nil {
				t.Fatalf("verify after the rebuild: %v", err)
			}
		})
	}
}

// A zeroed offset index costs no record either: it is rebuilt.
func TestZeroedOffsetIndexRebuilt(t *testing.T) {
	fsys, hs, bases := damagedLog(t)
	idx := segPath(bases[1], indexSuffix)
	b, _ := fsys.Bytes(idx)
	clear(b[len(b)/2:])
	fsys.SetBytes(idx, b)
	lg, logs := observed()
	l := openT(t, fsys, damageDir, damageCfg, func(o *Options) { o.Logger = lg })
	defer l.Close()
	if got := readAll(t, l, 0, 1<<20); len(got) != len(hs) {
		t.Fatalf("read %d batches, want %d", len(got), len(hs))
	}
	checkTimeLookups(t, l, hs)
	if !logsNaming(logs, idx) {
		t.Fatalf("no warning names %s: %v", idx, logs.All())
	}
}

// Many readers reaching a damaged index at once: one rebuilds it, none
// sees a wrong answer (run with -race).
func TestIndexCheckConcurrentReaders(t *testing.T) {
	fsys, hs, bases := damagedLog(t)
	for _, base := range bases[:len(bases)-1] {
		tidx := segPath(base, timeIndexSuffix)
		b, _ := fsys.Bytes(tidx)
		clear(b[timeEntrySize:])
		fsys.SetBytes(tidx, b)
	}
	l := openT(t, fsys, damageDir, damageCfg)
	defer l.Close()
	var wg sync.WaitGroup
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(r)))
			for k := 0; k < 100; k++ {
				ts := 990 + rng.Int63n(hs[len(hs)-1].MaxTimestamp-980)
				want, wantOK := firstAtOrAfter(hs, ts)
				got, _, ok, err := l.OffsetForTime(ts)
				if err != nil || ok != wantOK || got != want {
					t.Errorf("offset for time %d: %d %v %v, want %d", ts, got, ok, err, want)
					return
				}
				h := hs[rng.Intn(len(hs))]
				if data, err := l.Read(h.BaseOffset, 1, nil); err != nil || int64(len(data)) != h.Size {
					t.Errorf("read %d: %d bytes, %v", h.BaseOffset, len(data), err)
					return
				}
			}
		}(r)
	}
	wg.Wait()
}

// corruptionAt asserts err is a *CorruptionError whose message names each
// of words.
func corruptionAt(t *testing.T, err error, words ...string) *CorruptionError {
	t.Helper()
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("open: %v, want a *CorruptionError", err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("open: %q does not name %q", err, w)
		}
	}
	return ce
}

func openErr(fsys FS, lg *zap.Logger) error {
	l, err := Open(damageDir, damageCfg, Options{FS: fsys, Logger: lg})
	if err == nil {
		l.Close()
	}
	return err
}

// A sealed .log deleted from the middle of the log (its indexes left, or
// not) is a gap: Open fails with a *CorruptionError naming the missing
// segment and the offsets lost, and logs it; it used to open and let
// consumers skip the gap.
func TestMissingSealedSegment(t *testing.T) {
	for _, c := range []struct {
		name     string
		suffixes []string
	}{
		{"log only", []string{logSuffix}},
		{"all three files", []string{logSuffix, indexSuffix, timeIndexSuffix}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fsys, _, bases := damagedLog(t)
			gone := bases[2]
			for _, s := range c.suffixes {
				if err := fsys.Remove(segPath(gone, s)); err != nil {
					t.Fatal(err)
				}
			}
			lg, logs := observed()
			err := openErr(fsys, lg)
			missing := segPath(gone, logSuffix)
			lost := strconv.FormatInt(gone, 10) + " to " + strconv.FormatInt(bases[3]-1, 10)
			corruptionAt(t, err, missing, lost)
			if !errors.Is(err, errMissingOffsets) {
				t.Fatalf("open: %v, want errMissingOffsets", err)
			}
			if !logsNaming(logs, missing) {
				t.Fatalf("no error line names %s: %v", missing, logs.All())
			}
			// Read-only verify reports the same, and Open wrote nothing.
			if err := VerifyFS(fsys, damageDir); err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), lost) {
				t.Fatalf("verify: %v, want it to name %s and offsets %s", err, missing, lost)
			}
			if _, ok := fsys.Bytes(segPath(gone, logSuffix)); ok {
				t.Fatal("open recreated the missing segment")
			}
		})
	}
}

// The active segment's .log deleted, its indexes left: the log must not
// take the newest sealed segment for the active one and go on writing
// below offsets it already gave out.
func TestMissingActiveSegment(t *testing.T) {
	fsys, _, bases := damagedLog(t)
	last := bases[len(bases)-1]
	if err := fsys.Remove(segPath(last, logSuffix)); err != nil {
		t.Fatal(err)
	}
	corruptionAt(t, openErr(fsys, nil), segPath(last, logSuffix))
}

// A sealed .log truncated to zero used to stall consumers at its offset;
// one cut short (at a batch boundary or inside a batch) lost offsets. Both
// fail Open with a *CorruptionError naming the segment and the offsets.
func TestTruncatedSealedSegment(t *testing.T) {
	for _, c := range []struct {
		name string
		cut  func(b []byte, hs []batchHeader, base int64) int
	}{
		{"to zero", func([]byte, []batchHeader, int64) int { return 0 }},
		{"inside a batch", func(b []byte, _ []batchHeader, _ int64) int { return len(b) - 7 }},
		{"at a batch boundary", func(b []byte, hs []batchHeader, base int64) int {
			var end int64
			for _, h := range hs {
				if h.BaseOffset >= base {
					if end+h.Size >= int64(len(b)) {
						return int(end)
					}
					end += h.Size
				}
			}
			return int(end)
		}},
		{"before the last index entry", func(b []byte, _ []batchHeader, _ int64) int { return len(b) / 3 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			fsys, hs, bases := damagedLog(t)
			seg := segPath(bases[1], logSuffix)
			b, _ := fsys.Bytes(seg)
			fsys.SetBytes(seg, b[:c.cut(b, hs, bases[1])])
			lg, logs := observed()
			err := openErr(fsys, lg)
			corruptionAt(t, err, seg, "to "+strconv.FormatInt(bases[2]-1, 10))
			if !errors.Is(err, errMissingOffsets) {
				t.Fatalf("open: %v, want errMissingOffsets", err)
			}
			if !logsNaming(logs, seg) {
				t.Fatalf("no error line names %s: %v", seg, logs.All())
			}
			if err := VerifyFS(fsys, damageDir); err == nil || !strings.Contains(err.Error(), seg) {
				t.Fatalf("verify: %v, want it to name %s", err, seg)
			}
		})
	}
}

// Segments removed by retention or DeleteRecords are not a gap, nor are
// the indexes a crash in the middle of the removal left behind.
func TestRetentionRemovedSegmentsNoGap(t *testing.T) {
	fsys, hs, bases := damagedLog(t)
	l := openT(t, fsys, damageDir, damageCfg)
	if _, err := l.DeleteRecords(bases[2] + 1); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// A crash after retention renamed the next segment's .log only.
	if err := fsys.Rename(segPath(bases[2], logSuffix), segPath(bases[2], logSuffix)+deletedSuffix); err != nil {
		t.Fatal(err)
	}
	lg, logs := observed()
	l = openT(t, fsys, damageDir, damageCfg, func(o *Options) { o.Logger = lg })
	defer l.Close()
	if got := l.LogStartOffset(); got != bases[3] {
		t.Fatalf("log start %d, want %d", got, bases[3])
	}
	var rest []batchHeader
	for _, h := range hs {
		if h.BaseOffset >= bases[3] {
			rest = append(rest, h)
		}
	}
	if got := readAll(t, l, bases[3], 1<<20); len(got) != len(rest) {
		t.Fatalf("read %d batches, want %d", len(got), len(rest))
	}
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
		t.Fatalf("errors logged: %v", logs.All())
	}
}

// A read that reaches offsets no segment holds gets a *CorruptionError,
// never the next segment's data nor "out of range" (which a consumer
// answers by skipping ahead).
func TestReadInGapIsCorruption(t *testing.T) {
	fsys, _, bases := damagedLog(t)
	l := openT(t, fsys, damageDir, damageCfg)
	defer l.Close()
	// Take segment 2 out of the list as if its file had gone unnoticed.
	l.mu.Lock()
	gone := l.segs[2]
	l.segs = append(l.segs[:2:2], l.segs[3:]...)
	l.mu.Unlock()
	defer gone.release()
	for off := bases[2]; off < bases[3]; off += 7 {
		if _, err := l.Read(off, 1<<20, nil); !isCorruptionErr(err) {
			t.Fatalf("read %d in the gap: %v, want a *CorruptionError", off, err)
		}
		if _, err := l.Ranges(off, 1<<20); !isCorruptionErr(err) {
			t.Fatalf("ranges %d in the gap: %v, want a *CorruptionError", off, err)
		}
	}
}

// Verify reports an index that disagrees with its segment, and writes
// nothing.
func TestVerifyReportsZeroedTimeIndex(t *testing.T) {
	fsys, _, bases := damagedLog(t)
	tidx := segPath(bases[1], timeIndexSuffix)
	b, _ := fsys.Bytes(tidx)
	clear(b[2*timeEntrySize : 4*timeEntrySize])
	fsys.SetBytes(tidx, b)
	err := VerifyFS(fsys, damageDir)
	if err == nil || !strings.Contains(err.Error(), tidx) {
		t.Fatalf("verify: %v, want it to name %s", err, tidx)
	}
	if after, _ := fsys.Bytes(tidx); string(after) != string(b) {
		t.Fatal("verify changed the index")
	}
}
