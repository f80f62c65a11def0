package log

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// preallocCfg preallocates 64 KiB ahead once 4 KiB are written.
var preallocCfg = Config{SegmentBytes: 1 << 20, PreallocateBytes: 64 << 10, IndexIntervalBytes: 512}

// waitPrealloc waits until no extension of l is running.
func waitPrealloc(t testing.TB, l *Log) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		l.mu.RLock()
		busy := l.cur.fill != nil
		l.mu.RUnlock()
		if !busy {
			return
		}
	}
	t.Fatal("preallocation still running after 5s")
}

// fileSizeOf is the size of a file of fsys now.
func fileSizeOf(t testing.TB, fsys *CrashFS, name string) int64 {
	t.Helper()
	b, ok := fsys.Bytes(name)
	if !ok {
		t.Fatalf("%s: missing", name)
	}
	return int64(len(b))
}

// appendAcked appends n test batches and returns them by base offset.
func appendAcked(t testing.TB, l *Log, rng *rand.Rand, n int, acked map[int64][]byte) {
	t.Helper()
	for i := 0; i < n; i++ {
		b := testBatch(rng, i, int64(i))
		acked[mustAppend(t, l, b).BaseOffset] = b
	}
}

// The active segment's file runs ahead of its batches in zeros, to a
// preallocAlign boundary; reads, Size and the offsets see only batches;
// Close cuts the zeros so that the clean-shutdown marker's sizes hold and
// the next Open trusts it.
func TestPreallocateAhead(t *testing.T) {
	fsys := NewCrashFS()
	l := openT(t, fsys, "/d/t-0", preallocCfg)
	rng := rand.New(rand.NewSource(1))
	acked := map[int64][]byte{}
	appendAcked(t, l, rng, 10, acked)
	waitPrealloc(t, l)
	if l.Preallocated() != 0 && l.Size() < preallocCfg.PreallocateBytes/preallocWarmup {
		t.Fatalf("preallocated %d bytes after writing only %d", l.Preallocated(), l.Size())
	}
	appendAcked(t, l, rng, 200, acked)
	waitPrealloc(t, l)
	path := l.cur.path
	size, file := l.Size(), fileSizeOf(t, fsys, path)
	if l.Preallocated() == 0 || file != size+l.Preallocated() || file%preallocAlign != 0 {
		t.Fatalf("file %d bytes, log %d, preallocated %d: want zeros ahead to a %d boundary", file, size, l.Preallocated(), preallocAlign)
	}
	if file-size > preallocCfg.PreallocateBytes {
		t.Fatalf("%d bytes ahead, more than PreallocateBytes", file-size)
	}
	readsBack(t, l, acked)
	if err := VerifyFS(fsys, "/d/t-0"); err != nil {
		t.Fatalf("verify with preallocated zeros: %v", err)
	}
	if inFlight, err := VerifyLiveFS(fsys, "/d/t-0"); err != nil || inFlight != nil {
		t.Fatalf("verify live with preallocated zeros: %v, in flight %+v", err, inFlight)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fileSizeOf(t, fsys, path); got != size {
		t.Fatalf("after Close the file is %d bytes, want its batches' %d", got, size)
	}
	m, _ := NewMetrics(nil)
	l = openT(t, fsys, "/d/t-0", preallocCfg, func(o *Options) { o.Metrics = m })
	defer l.Close()
	if counterValue(m.RecoveryTruncations) != 0 || l.Size() != size {
		t.Fatalf("reopen: size %d (want %d), %v truncations", l.Size(), size, counterValue(m.RecoveryTruncations))
	}
}

// A small or slow partition takes no space ahead: it preallocates only
// once it writes PreallocateBytes/preallocWarmup within 10-20 s.
func TestPreallocateNotForSmallPartitions(t *testing.T) {
	fsys := NewCrashFS()
	l := openT(t, fsys, "/d/t-0", Config{}) // the default, 8 MiB ahead once 512 KiB are written
	defer l.Close()
	rng := rand.New(rand.NewSource(2))
	appendAcked(t, l, rng, 100, map[int64][]byte{})
	waitPrealloc(t, l)
	if p := l.Preallocated(); p != 0 {
		t.Fatalf("%d bytes preallocated for a %d-byte log", p, l.Size())
	}
	// Slow: a long-lived segment fills, but never at the rate that
	// preallocates.
	clock := newClock()
	slow := openT(t, NewCrashFS(), "/d/t-0", preallocCfg, func(o *Options) { o.Now = clock.Now })
	defer slow.Close()
	for i := 0; i < 300; i++ {
		clock.Add(30 * time.Second)
		mustAppend(t, slow, testBatch(rng, i, clock.Now().UnixMilli()))
	}
	waitPrealloc(t, slow)
	if p := slow.Preallocated(); p != 0 || slow.Size() < preallocCfg.PreallocateBytes/preallocWarmup {
		t.Fatalf("slow partition of %d bytes: %d bytes preallocated", slow.Size(), p)
	}
	off := openT(t, NewCrashFS(), "/d/t-0", Config{PreallocateBytes: -1})
	defer off.Close()
	appendAcked(t, off, rng, 100, map[int64][]byte{})
	if p := off.Preallocated(); p != 0 {
		t.Fatalf("%d bytes preallocated with preallocation off", p)
	}
}

// Roll cuts the preallocated zeros off the segment it seals: a sealed
// segment ends at its last batch. A busy partition preallocates the new
// segment from its first batch on.
func TestPreallocateRollTrims(t *testing.T) {
	fsys := NewCrashFS()
	cfg := Config{SegmentBytes: 20000, PreallocateBytes: 16 << 10, IndexIntervalBytes: 512}
	l := openT(t, fsys, "/d/t-0", cfg)
	defer l.Close()
	rng := rand.New(rand.NewSource(3))
	acked := map[int64][]byte{}
	for l.Segments() < 5 {
		appendAcked(t, l, rng, 10, acked)
		waitPrealloc(t, l)
	}
	l.mu.RLock()
	segs := append([]*segment(nil), l.segs...)
	l.mu.RUnlock()
	for _, s := range segs[:len(segs)-1] {
		if got := fileSizeOf(t, fsys, s.path); got != s.size {
			t.Fatalf("sealed %s: file %d bytes, batches %d", s.path, got, s.size)
		}
	}
	if err := VerifyFS(fsys, "/d/t-0"); err != nil {
		t.Fatal(err)
	}
	if l.Preallocated() == 0 {
		t.Fatalf("busy partition: nothing preallocated in the new segment (%d bytes written)", l.cur.size)
	}
}

// A crash with preallocated zeros after the last batch: recovery ends the
// log at the first zero header, cuts the zeros quietly (no truncation
// counted: nothing was torn) and keeps every acknowledged batch; unsynced
// batches written into the zeros are lost as a crash loses them.
func TestPreallocateCrashRecoversQuietly(t *testing.T) {
	for _, flush := range []FlushPolicy{FlushAlways} {
		t.Run(flush.String(), func(t *testing.T) {
			fsys := NewCrashFS()
			cfg := preallocCfg
			cfg.Flush, cfg.FlushInterval = flush, time.Hour
			l := openT(t, fsys, "/d/t-0", cfg)
			rng := rand.New(rand.NewSource(4))
			acked := map[int64][]byte{}
			appendAcked(t, l, rng, 100, acked)
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			waitPrealloc(t, l)
			if l.Preallocated() == 0 {
				t.Fatal("nothing preallocated")
			}
			ackedEnd := l.HighWatermark()
			for i := 0; i < 5; i++ { // written, never synced
				if _, err := l.Write(testBatch(rng, i, 1)); err != nil {
					t.Fatal(err)
				}
			}
			rebooted := fsys.Crash(nil)
			l.Close()
			if err := VerifyFS(rebooted, "/d/t-0"); err != nil {
				t.Fatalf("verify after the crash: %v", err)
			}
			m, _ := NewMetrics(nil)
			l = openT(t, rebooted, "/d/t-0", cfg, func(o *Options) { o.Metrics = m })
			defer l.Close()
			if n := counterValue(m.RecoveryTruncations); n != 0 {
				t.Fatalf("preallocated zeros counted as %v torn tails", n)
			}
			if got := fileSizeOf(t, rebooted, l.cur.path); got != l.Size() {
				t.Fatalf("after recovery the file is %d bytes, its batches %d", got, l.Size())
			}
			checkRecovered(t, l, acked, ackedEnd)
		})
	}
}

// A torn batch in preallocated space is still a torn batch: followed by
// zeros, or with its header lost and later bytes kept, it is cut, logged
// and counted, and no zero is ever served.
func TestPreallocateTornBatchBeforeZeros(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	last := makeBatch(rng, 3, 100, 300)
	for _, tc := range []struct {
		name string
		tear func(b []byte) []byte // what the crash left of last, in place
	}{
		{"prefix", func(b []byte) []byte { return append([]byte(nil), b[:len(b)/2]...) }},
		{"header only", func(b []byte) []byte { return append([]byte(nil), b[:batchHeaderSize]...) }},
		{"header lost", func(b []byte) []byte {
			out := append([]byte(nil), b...)
			clear(out[:batchHeaderSize])
			return out
		}},
		{"one byte flipped", func(b []byte) []byte {
			out := append([]byte(nil), b...)
			out[len(out)-1] ^= 1
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := NewCrashFS()
			cfg := preallocCfg
			l := openT(t, fsys, "/d/t-0", cfg)
			acked := map[int64][]byte{}
			appendAcked(t, l, rand.New(rand.NewSource(6)), 100, acked)
			waitPrealloc(t, l)
			ackedEnd, pos, path := l.HighWatermark(), l.Size(), l.cur.path
			if l.Preallocated() < int64(len(last)) {
				t.Fatalf("only %d bytes preallocated", l.Preallocated())
			}
			if _, err := l.Write(append([]byte(nil), last...)); err != nil {
				t.Fatal(err)
			}
			stored, _ := fsys.Bytes(path)
			torn := tc.tear(stored[pos : pos+int64(len(last))])
			fsys = fsys.Crash(nil)
			l.Close()
			b, _ := fsys.Bytes(path)
			if int64(len(b)) < pos+int64(len(last)) {
				t.Fatalf("crash left %d bytes, want the preallocated zeros", len(b))
			}
			// The flusher may have synced the whole batch before the
			// crash: put back only what the tear left, over zeros.
			clear(b[pos : pos+int64(len(last))])
			copy(b[pos:], torn)
			fsys.SetBytes(path, b)
			nonZero := int64(bytes.LastIndexFunc(torn, func(r rune) bool { return r != 0 }) + 1)
			if err := VerifyFS(fsys, "/d/t-0"); !isCorruptionErr(err) {
				t.Fatalf("verify: %v, want the torn batch reported", err)
			}
			m, _ := NewMetrics(nil)
			l = openT(t, fsys, "/d/t-0", cfg, func(o *Options) { o.Metrics = m })
			defer l.Close()
			if n := counterValue(m.RecoveryTruncations); n != 1 {
				t.Fatalf("%v truncations counted, want 1", n)
			}
			if lost := counterValue(m.RecoveryBytesLost); lost < float64(nonZero) || lost > float64(len(last)) {
				t.Fatalf("%v bytes lost counted, want %d..%d", lost, nonZero, len(last))
			}
			if l.Size() != pos {
				t.Fatalf("log ends at byte %d, want %d", l.Size(), pos)
			}
			checkRecovered(t, l, acked, ackedEnd)
		})
	}
}

// A zero tail that does not end on a preallocAlign boundary was never
// preallocated: it is what a crash left of a batch (a size committed before
// its data), and is counted as before.
func TestUnalignedZeroTailIsTorn(t *testing.T) {
	fsys := NewCrashFS()
	cfg := Config{PreallocateBytes: -1}
	l := openT(t, fsys, "/d/t-0", cfg)
	appendAcked(t, l, rand.New(rand.NewSource(7)), 10, map[int64][]byte{})
	path, size := l.cur.path, l.Size()
	l.Close()
	b, _ := fsys.Bytes(path)
	fsys.SetBytes(path, append(b, make([]byte, 100)...))
	removeCleanShutdown(fsys, "/d/t-0")
	m, _ := NewMetrics(nil)
	l = openT(t, fsys, "/d/t-0", cfg, func(o *Options) { o.Metrics = m })
	defer l.Close()
	if counterValue(m.RecoveryTruncations) != 1 || counterValue(m.RecoveryBytesLost) != 100 || l.Size() != size {
		t.Fatalf("truncations %v, bytes lost %v, size %d (want 1, 100, %d)",
			counterValue(m.RecoveryTruncations), counterValue(m.RecoveryBytesLost), l.Size(), size)
	}
}

// Kill -9 a real process appending under FlushAlways with preallocation
// on: every acknowledged batch is found, no zero is served as data, the
// zeros are cut without a torn-tail count, and Verify passes.
func TestKillPreallocating(t *testing.T) {
	if dir := os.Getenv("ZTFLOG_KILL_PREALLOC_CHILD"); dir != "" {
		killChild(dir, Config{SegmentBytes: 1 << 20, PreallocateBytes: 256 << 10, Flush: FlushAlways})
		return
	}
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := filepath.Join(t.TempDir(), "t-0")
	acked := killAfterAcks(t, "TestKillPreallocating", "ZTFLOG_KILL_PREALLOC_CHILD", dir, 2000)
	// The active segment ends in preallocated zeros.
	names, _ := OSFS{}.ReadDir(dir)
	var active string
	for _, name := range names {
		if _, ok := parseSegmentName(name); ok {
			active = filepath.Join(dir, name)
		}
	}
	b, err := os.ReadFile(active)
	if err != nil {
		t.Fatal(err)
	}
	zeros := len(b) - (bytes.LastIndexFunc(b, func(r rune) bool { return r != 0 }) + 1)
	if zeros < 1024 || len(b)%preallocAlign != 0 {
		t.Fatalf("active segment of %d bytes ends in %d zeros: not preallocated", len(b), zeros)
	}
	m, _ := NewMetrics(nil)
	cfg := Config{SegmentBytes: 1 << 20, PreallocateBytes: 256 << 10}
	l := openT(t, nil, dir, cfg, func(o *Options) { o.Metrics = m })
	defer l.Close()
	got := readAll(t, l, 0, 1<<16)
	for base, size := range acked {
		if int64(len(got[base])) != size {
			t.Fatalf("acknowledged batch at %d: %d bytes after kill, want %d", base, len(got[base]), size)
		}
	}
	for base, batch := range got {
		if _, err := checkStoredBatch(batch, base, 0); err != nil {
			t.Fatalf("batch at %d served after kill: %v", base, err)
		}
	}
	// A kill leaves the page cache and a batch is one pwrite: nothing is
	// torn, and the zeros are preallocated space.
	if n, lost := counterValue(m.RecoveryTruncations), counterValue(m.RecoveryBytesLost); n != 0 {
		t.Fatalf("%v truncations, %v bytes counted lost: preallocated zeros taken for a torn tail", n, lost)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dir); err != nil {
		t.Fatal(err)
	}
}

// zeroWriteFS wraps an FS so that a write of zeros only (what preallocation
// writes; a batch never is) fails with err, or is slowed by delay.
type zeroWriteFS struct {
	FS
	err   error
	delay time.Duration
}

type zeroWriteFile struct {
	File
	fs *zeroWriteFS
}

func (z *zeroWriteFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := z.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return zeroWriteFile{f, z}, nil
}

func (f zeroWriteFile) WriteAt(p []byte, off int64) (int, error) {
	if len(p) > 0 && !slices.ContainsFunc(p, func(b byte) bool { return b != 0 }) {
		time.Sleep(f.fs.delay)
		if f.fs.err != nil {
			return 0, f.fs.err
		}
	}
	return f.File.WriteAt(p, off)
}

// A full disk stops preallocation for the segment and nothing else: the
// zeros written are cut, appends go on, Close leaves the file at its end.
func TestPreallocateFullDisk(t *testing.T) {
	crash := NewCrashFS()
	fsys := &zeroWriteFS{FS: crash, err: syscall.ENOSPC}
	l := openT(t, fsys, "/d/t-0", preallocCfg)
	acked := map[int64][]byte{}
	rng := rand.New(rand.NewSource(8))
	appendAcked(t, l, rng, 100, acked)
	waitPrealloc(t, l)
	l.mu.RLock()
	stopped := l.cur.noPrealloc
	l.mu.RUnlock()
	if !stopped || l.Err() != nil {
		t.Fatalf("after ENOSPC on zeros: preallocation stopped %v, log error %v", stopped, l.Err())
	}
	appendAcked(t, l, rng, 100, acked)
	path, size := l.cur.path, l.Size()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fileSizeOf(t, crash, path); got != size {
		t.Fatalf("file %d bytes after Close, batches %d", got, size)
	}
	l = openT(t, crash, "/d/t-0", preallocCfg)
	defer l.Close()
	checkRecovered(t, l, acked, l.HighWatermark())
}

// A writer that reaches the range being zero-filled stops the extension at
// the end of its chunk and writes on; nothing is lost or overwritten.
func TestPreallocateWriterCatchesUp(t *testing.T) {
	crash := NewCrashFS()
	fsys := &zeroWriteFS{FS: crash, delay: 20 * time.Millisecond}
	cfg := preallocCfg
	cfg.PreallocateBytes = 1 << 20 // 64 KiB warm-up, chunks of 256 KiB
	l := openT(t, fsys, "/d/t-0", cfg)
	acked := map[int64][]byte{}
	rng := rand.New(rand.NewSource(9))
	appendAcked(t, l, rng, 2000, acked)
	if err := VerifyFS(crash, "/d/t-0"); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, l, 0, 1<<20)
	for off, b := range acked {
		if !bytes.Equal(got[off], b) {
			t.Fatalf("batch at %d differs", off)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, crash, "/d/t-0", cfg)
	defer l.Close()
	checkRecovered(t, l, acked, l.HighWatermark())
}

// VerifyLive on a log appending into preallocated zeros: the zeros are
// not damage, and a batch written meanwhile is found whole on a rescan.
func TestVerifyLivePreallocating(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	l := openT(t, nil, dir, preallocCfg)
	defer l.Close()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewSource(10))
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := l.Append(testBatch(rng, i, int64(i))); err != nil {
				done <- err
				return
			}
		}
	}()
	for i := 0; i < 10; i++ {
		time.Sleep(20 * time.Millisecond)
		if _, err := VerifyLive(dir); err != nil {
			close(stop)
			<-done
			t.Fatalf("verify live, round %d: %v", i, err)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l.Preallocated() == 0 {
		t.Fatalf("nothing preallocated after %d bytes", l.Size())
	}
}

// Crash at random points while three writers append with preallocation
// on (and, in a third of the runs, retention and DeleteRecords race them),
// with random tears of what was appended past the synced end: every
// acknowledged batch is there, offsets are contiguous, the log goes on,
// and Verify passes. Each seed crashes and recovers three times.
func TestPreallocateCrashRandom(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 15
	}
	for seed := int64(0); seed < int64(seeds); seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			preallocCrashIteration(t, seed)
		})
	}
}

func preallocCrashIteration(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	cfg := Config{
		SegmentBytes:       []int64{16 << 10, 64 << 10, 1 << 20}[rng.Intn(3)],
		PreallocateBytes:   []int64{8 << 10, 32 << 10, 256 << 10}[rng.Intn(3)],
		IndexIntervalBytes: []int{200, 4096}[rng.Intn(2)],
		RetentionAge:       -1,
	}
	deletes := rng.Intn(3) == 0
	if deletes {
		cfg.RetentionBytes = 40 << 10
	}
	preallocated := false
	crashRounds(t, rng, cfg, deletes, false, func() int64 { return int64(50 + rng.Intn(400)) }, func(l *Log) {
		preallocated = preallocated || l.Preallocated() > 0
	})
	if !preallocated {
		t.Logf("seed %d: nothing was preallocated", seed)
	}
}
