package log

import (
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// warmCfg: segments of 32 MiB, large batches (so zeros are not written
// ahead, and the pages are warmed instead).
var warmCfg = Config{SegmentBytes: 32 << 20}

// residentPages says how many of the pages of [from, to) of the file at
// path the page cache holds, and how many there are.
func residentPages(t *testing.T, path string, from, to int64) (in, all int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := int64(os.Getpagesize())
	from &^= page - 1
	m, err := unix.Mmap(int(f.Fd()), from, int(to-from), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+int(page)-1)/int(page))
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	for _, v := range vec {
		if v&1 != 0 {
			in++
		}
	}
	return in, len(vec)
}

// A partition written in large batches has the pages ahead of its writer
// in the page cache once it pauses, from a hole that takes no disk space;
// batches written there read back whole; Verify and VerifyLive accept the
// hole as preallocated space; Close cuts it; and a copy of the files taken
// while the hole was there (what a crash leaves) opens with no batch lost
// and nothing counted torn.
func TestWarmAheadOfWriter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	m, _ := NewMetrics(nil)
	l := openT(t, nil, dir, warmCfg, func(o *Options) { o.Metrics = m })
	l.warmGap = warmQuiet + 50*time.Millisecond // bursts 2 s apart, sooner
	rng := rand.New(rand.NewSource(13))
	acked := map[int64][]byte{}
	write := func(n int) {
		for i := range n {
			b := makeBatch(rng, 4, int64(i), 128<<10) // 512 KiB
			acked[mustAppend(t, l, b).BaseOffset] = b
		}
	}
	for range warmBursts {
		write(4)
		waitPrealloc(t, l)
		if l.Warmed() != 0 {
			t.Fatalf("%d bytes warmed after %d pauses: only partitions written in %d bursts are", l.Warmed(), l.gaps, warmBursts+1)
		}
		time.Sleep(l.warmGap)
	}
	write(4)
	waitPrealloc(t, l)
	path := l.cur.path
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	size := l.Size()
	if counterValue(m.WarmedBytes) != float64(l.Warmed()) {
		t.Fatalf("ztfbroker_log_warmed_bytes_total %v, warmed %d", counterValue(m.WarmedBytes), l.Warmed())
	}
	if l.Warmed() == 0 || st.Size() <= size || st.Size()%preallocAlign != 0 {
		t.Fatalf("file %d bytes, log %d, warmed %d: want a hole ahead, to a %d boundary", st.Size(), size, l.Warmed(), preallocAlign)
	}
	if l.Preallocated() != 0 {
		t.Fatalf("%d zero bytes written ahead of a partition of 512 KiB batches", l.Preallocated())
	}
	if onDisk := st.Sys().(*syscall.Stat_t).Blocks * 512; onDisk > size+(1<<20) {
		t.Fatalf("%d bytes on disk for %d of batches: the hole ahead takes space", onDisk, size)
	}
	if in, all := residentPages(t, path, size, st.Size()); in != all {
		t.Fatalf("%d of the %d pages ahead of the writer are in the page cache", in, all)
	}
	if err := Verify(dir); err != nil {
		t.Fatalf("verify with a hole ahead: %v", err)
	}
	if inFlight, err := VerifyLive(dir); err != nil || inFlight != nil {
		t.Fatalf("verify live with a hole ahead: %v, in flight %+v", err, inFlight)
	}

	// What a crash leaves: the files as they are now.
	crashed := filepath.Join(t.TempDir(), "t-0")
	copyDir(t, dir, crashed)

	write(6)
	readsBack(t, l, acked)
	size = l.Size()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != size {
		t.Fatalf("after Close the file is %d bytes (%v), want its batches' %d", st.Size(), err, size)
	}

	rm, _ := NewMetrics(nil)
	c := openT(t, nil, crashed, warmCfg, func(o *Options) { o.Metrics = rm })
	defer c.Close()
	if n := counterValue(rm.RecoveryTruncations); n != 0 {
		t.Fatalf("%v truncations after a crash with a hole ahead: the hole taken for a torn tail", n)
	}
	if got := readAll(t, c, 0, 1<<20); len(got) != 12 {
		t.Fatalf("read %d batches after the crash, 12 were acknowledged", len(got))
	}
}

// Warming stops at a roll, which leaves the sealed segment at its last
// batch, and never runs past segment.bytes.
func TestWarmRollTrims(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	l := openT(t, nil, dir, Config{SegmentBytes: 4 << 20})
	defer l.Close()
	l.warmGap = warmQuiet + 50*time.Millisecond
	rng := rand.New(rand.NewSource(14))
	for i := range 40 {
		if i == 4 || i == 6 {
			time.Sleep(l.warmGap) // bursts
		}
		mustAppend(t, l, makeBatch(rng, 2, int64(i), 128<<10))
	}
	waitPrealloc(t, l)
	if l.Warmed() == 0 {
		t.Fatal("nothing warmed")
	}
	l.mu.RLock()
	segs := append([]*segment(nil), l.segs...)
	l.mu.RUnlock()
	if len(segs) < 3 {
		t.Fatalf("%d segments: want rolls", len(segs))
	}
	for _, s := range segs {
		st, err := os.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 4<<20 {
			t.Fatalf("segment %d is %d bytes, past segment.bytes", s.base, st.Size())
		}
		if s != segs[len(segs)-1] && st.Size() != s.size {
			t.Fatalf("sealed segment %d is %d bytes, its batches %d", s.base, st.Size(), s.size)
		}
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	names, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range names {
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		dst.Close()
	}
}
