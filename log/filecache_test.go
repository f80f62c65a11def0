package log

import (
	"errors"
	"io/fs"
	"math/rand"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fdCount counts this process's open descriptors (-1 without /proc).
func fdCount() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// segmentsLog writes n one-batch segments (segment.bytes 1 rolls at every
// batch) and returns the log and the batches by base offset.
func segmentsLog(t *testing.T, dir string, n int, cache *FileCache, fsys FS) (*Log, map[int64][]byte) {
	l, want, _ := segmentsLogBases(t, dir, n, cache, fsys)
	return l, want
}

// segmentsLogBases is segmentsLog that also returns the base offsets.
func segmentsLogBases(t *testing.T, dir string, n int, cache *FileCache, fsys FS) (*Log, map[int64][]byte, []int64) {
	t.Helper()
	cfg := Config{SegmentBytes: 1, Flush: FlushInterval, FlushInterval: time.Hour}
	l := openT(t, fsys, dir, cfg, func(o *Options) { o.FileCache = cache })
	rng := rand.New(rand.NewSource(1))
	want := map[int64][]byte{}
	var bases []int64
	for i := 0; i < n; i++ {
		b := testBatch(rng, i, int64(1000+i))
		info := mustAppend(t, l, b)
		want[info.BaseOffset] = b
		bases = append(bases, info.BaseOffset)
	}
	if got := l.Segments(); got != n {
		t.Fatalf("%d segments, want %d", got, n)
	}
	return l, want, bases
}

// TestFileCacheBoundsOpenFiles: with 300 segments and a cache of 8, the
// process's descriptors stay within the cache's capacity (plus the active
// segment and the reads in flight) while writing, after reopening, and
// while 8 goroutines read every segment at once. Before the cache every
// segment held its 3 files open: 900 descriptors.
func TestFileCacheBoundsOpenFiles(t *testing.T) {
	const segments, capacity, readers = 300, 8, 8
	dir := t.TempDir()
	base := fdCount()
	if base < 0 {
		t.Skip("no /proc/self/fd")
	}
	// The cache, the active segment's 3 files, one pinned file per reader,
	// and a few for the runtime and ReadDir itself.
	bound := capacity + 3 + readers + 4

	l, want, bases := segmentsLogBases(t, dir, segments, NewFileCache(capacity), nil)
	if n := fdCount() - base; n > bound {
		t.Errorf("after writing %d segments: %d descriptors open, want <= %d", segments, n, bound)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	cache := NewFileCache(capacity)
	l = openT(t, nil, dir, Config{SegmentBytes: 1, Flush: FlushInterval}, func(o *Options) { o.FileCache = cache })
	defer l.Close()
	afterOpen := fdCount() - base
	t.Logf("descriptors: %d after reopening %d segments (cache of %d)", afterOpen, segments, capacity)
	if afterOpen > capacity+3+4 {
		t.Errorf("after reopening: %d descriptors open, want <= %d", afterOpen, capacity+3+4)
	}

	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			if n := int64(fdCount() - base); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for k := 0; k < segments; k++ {
				off := bases[(k+r*segments/readers)%segments]
				data, err := l.Read(off, 1, nil)
				if err != nil {
					errs <- err
					return
				}
				if !sameBatch(data, want[off]) {
					errs <- errors.New("read returned other bytes")
					return
				}
			}
		}(r)
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := cache.Stats()
	t.Logf("descriptors: peak %d while %d readers read every segment; cache %+v", peak.Load(), readers, st)
	if p := peak.Load(); p > int64(bound) {
		t.Errorf("peak of %d descriptors while reading, want <= %d", p, bound)
	}
	if st.Open > capacity || st.Evictions == 0 {
		t.Errorf("cache stats %+v: want <= %d open and evictions", st, capacity)
	}
}

// TestFileCacheEvictWhileReading: a cache of one file makes every read
// evict another reader's file; no read may see a closed file or wrong
// bytes (run with -race).
func TestFileCacheEvictWhileReading(t *testing.T) {
	cache := NewFileCache(1)
	l, want, bases := segmentsLogBases(t, t.TempDir(), 20, cache, nil)
	defer l.Close()
	firstAt := map[int64]int64{} // timestamp -> first batch with a max timestamp >= it
	for ts := int64(1000); ts < int64(1000+len(bases)); ts++ {
		for _, b := range bases {
			if h, _ := parseBatchHeader(want[b]); h.MaxTimestamp >= ts {
				firstAt[ts] = b
				break
			}
		}
	}
	var wg sync.WaitGroup
	for r := 0; r < 16; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(r)))
			for k := 0; k < 300; k++ {
				off := bases[rng.Intn(len(bases))]
				data, err := l.Read(off, 1<<20, nil)
				if err != nil {
					t.Errorf("read %d: %v", off, err)
					return
				}
				if !sameBatch(data[:len(want[off])], want[off]) {
					t.Errorf("read %d: other bytes", off)
					return
				}
				ts := int64(1000 + rng.Intn(len(bases)))
				if got, _, ok, err := l.OffsetForTime(ts); err != nil || !ok || got != firstAt[ts] {
					t.Errorf("offset for time %d: %d, %v, %v; want %d", ts, got, ok, err, firstAt[ts])
					return
				}
			}
		}(r)
	}
	wg.Wait()
	if st := cache.Stats(); st.Open > 1 {
		t.Errorf("%d files open after the reads, want <= 1", st.Open)
	}
}

// TestFileCacheReadOfDeletedSegment: a read that pinned a segment before
// retention removed it still reads it, though its files were closed and
// renamed to .deleted, and the files go when the read is done.
func TestFileCacheReadOfDeletedSegment(t *testing.T) {
	dir := t.TempDir()
	l, want := segmentsLog(t, dir, 5, NewFileCache(1), nil)
	defer l.Close()
	views, err := l.pin(0, 1)
	if err != nil || len(views) != 1 {
		t.Fatalf("pin: %v, %d views", err, len(views))
	}
	if _, err := l.DeleteRecords(3); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Read(4, 1, nil); err != nil { // evicts the pinned segment's files
		t.Fatal(err)
	}
	buf := make([]byte, len(want[0]))
	if err := readFull(views[0].s.log, buf, 0); err != nil || !sameBatch(buf, want[0]) {
		t.Fatalf("read of a deleted, pinned segment: %v", err)
	}
	releaseViews(views)
	if _, err := os.Stat(views[0].s.path + deletedSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("deleted segment still there after its last read: %v", err)
	}
}

// emfileFS fails read-only opens (the lazy ones of sealed segments) with
// EMFILE while full is set.
type emfileFS struct {
	OSFS
	full atomic.Bool
}

func (f *emfileFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if flag == os.O_RDONLY && f.full.Load() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EMFILE}
	}
	return f.OSFS.OpenFile(name, flag, perm)
}

// TestFileCacheOpenErrorIsNotSticky: running out of descriptors while
// opening a sealed segment fails that read, is not reported as damage, and
// leaves the log writable; the read works once descriptors are back.
func TestFileCacheOpenErrorIsNotSticky(t *testing.T) {
	fsys := &emfileFS{}
	l, want := segmentsLog(t, t.TempDir(), 6, NewFileCache(1), fsys)
	defer l.Close()
	fsys.full.Store(true)
	_, err := l.Read(0, 1<<20, nil)
	var oe *OpenError
	if !errors.Is(err, syscall.EMFILE) || !errors.As(err, &oe) || isCorruptionErr(err) {
		t.Fatalf("read with no descriptors left: %v, want an *OpenError for EMFILE, not corruption", err)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("log read-only after a failed open: %v", err)
	}
	mustAppend(t, l, makeBatch(nil, 1, 5000, 10))
	fsys.full.Store(false)
	data, err := l.Read(0, 1, nil)
	if err != nil || !sameBatch(data, want[0]) {
		t.Fatalf("read after descriptors came back: %v", err)
	}
}
