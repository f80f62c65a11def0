package log

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"
)

// cleanLog appends 30 batches to one active segment, closes the log cleanly
// and returns the batches' headers and positions.
func cleanLog(t *testing.T, fsys *CrashFS, cfg Config) (hs []batchHeader, pos []int64, idxEntries int) {
	t.Helper()
	l := openT(t, fsys, "/c/t-0", cfg)
	hs = buildLog(t, l, rand.New(rand.NewSource(11)), 30, func(i int) int64 { return int64(i) })
	var at int64
	for _, h := range hs {
		pos = append(pos, at)
		at += h.Size
	}
	if l.Segments() != 1 {
		t.Fatalf("%d segments, want only the active one", l.Segments())
	}
	idxEntries = l.cur.idx.len()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := fsys.Bytes("/c/t-0/" + cleanShutdownFile); !ok {
		t.Fatal("clean close left no clean-shutdown marker")
	}
	return hs, pos, idxEntries
}

// After a clean close, a flipped bit in the active segment is disk damage:
// reopening keeps every batch, a read of the damaged batch is a
// *CorruptionError, the batches before it read fine and Verify reports it.
func TestCleanCloseKeepsDamagedActiveSegment(t *testing.T) {
	for _, interval := range []int{300, 1 << 20} { // the damage before or after the last index entry
		t.Run(fmt.Sprint("index interval ", interval), func(t *testing.T) {
			testCleanCloseKeepsDamage(t, Config{SegmentBytes: 1 << 20, IndexIntervalBytes: interval, Flush: FlushInterval, FlushInterval: time.Hour})
		})
	}
}

func testCleanCloseKeepsDamage(t *testing.T, cfg Config) {
	for _, tc := range []struct {
		name  string
		batch int // damaged batch
		at    func(h batchHeader) int64
	}{
		{"none", -1, nil},
		{"record value", 10, func(h batchHeader) int64 { return h.Size - 3 }},
		{"crc", 12, func(batchHeader) int64 { return batchCRCPos + 1 }},
		{"length", 20, func(batchHeader) int64 { return batchLengthPos + 2 }},
		{"base offset", 5, func(batchHeader) int64 { return batchBaseOffsetPos + 7 }},
		{"first batch", 0, func(batchHeader) int64 { return 40 }},
		{"last byte", 29, func(h batchHeader) int64 { return h.Size - 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := NewCrashFS()
			hs, pos, idxEntries := cleanLog(t, fsys, cfg)
			end := hs[len(hs)-1].nextOffset()
			seg := "/c/t-0/" + segmentName(0) + logSuffix
			if tc.batch >= 0 {
				data, _ := fsys.Bytes(seg)
				data[pos[tc.batch]+tc.at(hs[tc.batch])] ^= 0x04
				fsys.SetBytes(seg, data)
			}
			m, _ := NewMetrics(nil)
			l := openT(t, fsys, "/c/t-0", cfg, func(o *Options) { o.Metrics = m })
			defer l.Close()
			if got := counterValue(m.RecoveryTruncations); got != 0 {
				t.Fatalf("%v truncations after a clean close", got)
			}
			if hw := l.HighWatermark(); hw != end {
				t.Fatalf("high watermark %d, want %d: batches dropped", hw, end)
			}
			if n := l.cur.idx.len(); n != idxEntries {
				t.Fatalf("%d offset index entries after reopen, %d at close", n, idxEntries)
			}
			if tc.batch < 0 {
				if got := readAll(t, l, 0, 1<<20); len(got) != len(hs) {
					t.Fatalf("read %d batches, want %d", len(got), len(hs))
				}
				if err := VerifyFS(fsys, "/c/t-0"); err != nil {
					t.Fatal(err)
				}
			} else {
				bad := hs[tc.batch]
				if _, err := l.Read(bad.BaseOffset, 1<<20, nil); !isCorruptionErr(err) {
					t.Fatalf("read of the damaged batch: %v, want a *CorruptionError", err)
				}
				data, err := l.Read(0, 1<<20, nil)
				switch {
				case tc.batch == 0 && !isCorruptionErr(err):
					t.Fatalf("read of the damaged first batch: %v", err)
				case tc.batch > 0 && (err != nil || int64(len(data)) != pos[tc.batch]):
					t.Fatalf("read from 0: %d bytes (%v), want the %d before the damage", len(data), err, pos[tc.batch])
				}
				if err := VerifyFS(fsys, "/c/t-0"); !isCorruptionErr(err) {
					t.Fatalf("Verify: %v, want a *CorruptionError", err)
				}
			}
			if info := mustAppend(t, l, makeBatch(nil, 1, 100, 10)); info.BaseOffset != end {
				t.Fatalf("append after reopen at %d, want %d", info.BaseOffset, end)
			}
		})
	}
}

// Without the marker (a crash), a torn tail is still truncated; with a
// marker that no longer matches the files, too.
func TestTornTailWithoutCleanShutdown(t *testing.T) {
	cfg := Config{SegmentBytes: 1 << 20, IndexIntervalBytes: 300, Flush: FlushInterval, FlushInterval: time.Hour}
	for _, tc := range []struct {
		name string
		tear func(t *testing.T, fsys *CrashFS) *CrashFS
	}{
		{"crash", func(t *testing.T, fsys *CrashFS) *CrashFS {
			l := openT(t, fsys, "/c/t-0", cfg)
			if _, err := l.Write(makeBatch(nil, 3, 100, 60)); err != nil {
				t.Fatal(err)
			}
			next := fsys.Crash(func(name string, tail []byte) []byte {
				if filepath.Ext(name) == logSuffix {
					return tail[:len(tail)/2]
				}
				return tail
			})
			l.Close()
			return next
		}},
		{"cut after clean close", func(t *testing.T, fsys *CrashFS) *CrashFS {
			l := openT(t, fsys, "/c/t-0", cfg)
			b := makeBatch(nil, 3, 100, 60)
			mustAppend(t, l, b)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			seg := "/c/t-0/" + segmentName(0) + logSuffix
			data, _ := fsys.Bytes(seg)
			fsys.SetBytes(seg, data[:len(data)-5])
			return fsys
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := NewCrashFS()
			hs, _, _ := cleanLog(t, fsys, cfg)
			end := hs[len(hs)-1].nextOffset()
			fsys = tc.tear(t, fsys)
			m, _ := NewMetrics(nil)
			l := openT(t, fsys, "/c/t-0", cfg, func(o *Options) { o.Metrics = m })
			defer l.Close()
			if got := counterValue(m.RecoveryTruncations); got != 1 {
				t.Fatalf("%v truncations, want 1", got)
			}
			if hw := l.HighWatermark(); hw != end {
				t.Fatalf("high watermark %d, want %d", hw, end)
			}
			if got := readAll(t, l, 0, 1<<20); len(got) != len(hs) {
				t.Fatalf("read %d batches, want %d", len(got), len(hs))
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := VerifyFS(fsys, "/c/t-0"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Open removes the marker durably before the log takes a write, so a
// crash right after opening and writing is recovered as a crash.
func TestCleanShutdownRemovedBeforeFirstWrite(t *testing.T) {
	cfg := Config{SegmentBytes: 1 << 20, IndexIntervalBytes: 300, Flush: FlushInterval, FlushInterval: time.Hour}
	fsys := NewCrashFS()
	hs, _, _ := cleanLog(t, fsys, cfg)
	end := hs[len(hs)-1].nextOffset()
	marker := "/c/t-0/" + cleanShutdownFile

	l := openT(t, fsys, "/c/t-0", cfg)
	if _, err := l.Write(makeBatch(nil, 3, 100, 60)); err != nil {
		t.Fatal(err)
	}
	fsys = fsys.Crash(func(name string, tail []byte) []byte {
		if filepath.Ext(name) == logSuffix {
			return tail[:len(tail)-1]
		}
		return tail
	})
	l.Close()
	if _, ok := fsys.Bytes(marker); ok {
		t.Fatal("the clean-shutdown marker came back after a crash")
	}
	m, _ := NewMetrics(nil)
	l = openT(t, fsys, "/c/t-0", cfg, func(o *Options) { o.Metrics = m })
	defer l.Close()
	if got := counterValue(m.RecoveryTruncations); got != 1 {
		t.Fatalf("%v truncations, want 1", got)
	}
	if hw := l.HighWatermark(); hw != end {
		t.Fatalf("high watermark %d, want %d", hw, end)
	}
}

// A marker that does not check out is not trusted.
func TestDamagedCleanShutdownIgnored(t *testing.T) {
	cfg := Config{SegmentBytes: 1 << 20, IndexIntervalBytes: 300, Flush: FlushInterval, FlushInterval: time.Hour}
	fsys := NewCrashFS()
	hs, _, _ := cleanLog(t, fsys, cfg)
	marker := "/c/t-0/" + cleanShutdownFile
	b, _ := fsys.Bytes(marker)
	b[20] ^= 1
	fsys.SetBytes(marker, b)
	l := openT(t, fsys, "/c/t-0", cfg)
	defer l.Close()
	if hw, want := l.HighWatermark(), hs[len(hs)-1].nextOffset(); hw != want {
		t.Fatalf("high watermark %d, want %d", hw, want)
	}
	if _, ok := fsys.Bytes(marker); ok {
		t.Fatal("damaged marker left in place")
	}
}
