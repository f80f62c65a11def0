package log

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Issue 14: fetches of verified batches are sent from the segment files
// (ReadSpans, sendfile); the rest is read and checked as by Read.

// spanLog writes batches of mixed sizes (a few bytes to 40 KiB, so index
// entries fall both on every batch and every few batches) into a log on
// the OS file system with small segments, and returns it with the batches'
// headers.
func spanLog(t *testing.T, dir string) (*Log, []batchHeader) {
	t.Helper()
	l, err := Open(dir, Config{Flush: FlushInterval, SegmentBytes: 256 << 10, IndexIntervalBytes: 4096}, Options{FileCache: NewFileCache(4)})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(14))
	var hs []batchHeader
	for i := 0; l.Size() < 1<<20; i++ {
		size := 20 + rng.Intn(300)
		if i%5 == 0 {
			size = 2000 + rng.Intn(40<<10)
		}
		info := mustAppend(t, l, makeBatch(rng, 1+i%3, int64(i), size))
		h, _ := l.headerAt(t, info.BaseOffset)
		hs = append(hs, h)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	return l, hs
}

// headerAt reads the header of the batch at offset through Read.
func (l *Log) headerAt(t *testing.T, offset int64) (batchHeader, []byte) {
	t.Helper()
	b, err := l.Read(offset, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseBatchHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	return h, b
}

// spanBytes is what a ReadSpans answer sends: its spans, read from their
// files with sendfile into a pipe as the listener does to a socket, then
// its tail.
func spanBytes(t *testing.T, r Spans) []byte {
	t.Helper()
	var out []byte
	for _, s := range r.Spans {
		p := make([]int, 2)
		if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 1<<20); err != nil && s.Len > 64<<10 {
			t.Fatalf("pipe size: %v", err)
		}
		off := s.Pos
		for off < s.Pos+s.Len {
			n, err := unix.Sendfile(p[1], int(s.File.Fd()), &off, int(s.Pos+s.Len-off))
			if err != nil || n == 0 {
				t.Fatalf("sendfile at %d of [%d, %d): %d, %v", off, s.Pos, s.Pos+s.Len, n, err)
			}
		}
		buf := make([]byte, s.Len)
		for got := 0; got < len(buf); {
			n, err := unix.Read(p[0], buf[got:])
			if err != nil || n == 0 {
				t.Fatal(err)
			}
			got += n
		}
		unix.Close(p[0])
		unix.Close(p[1])
		out = append(out, buf...)
	}
	return append(out, r.Tail...)
}

// TestReadSpansAsRead: ReadSpans answers the bytes Read does for every
// start and budget, from files where the batches are verified and through
// the checked buffer where not (after a restart, and past a verified
// prefix).
func TestReadSpansAsRead(t *testing.T) {
	dir := t.TempDir()
	l, hs := spanLog(t, dir)
	check := func(what string, wantSpans, wantTail bool) {
		t.Helper()
		var spans, tails int
		for i, h := range hs {
			if i%7 != 0 && i != len(hs)-1 {
				continue
			}
			for _, maxBytes := range []int{1, 5000, 64 << 10, 300 << 10} {
				off := h.BaseOffset + int64(i%2)*h.lastOffsetDelta()
				r, err := l.ReadSpans(off, maxBytes, nil)
				if err != nil {
					t.Fatalf("%s: ReadSpans(%d, %d): %v", what, off, maxBytes, err)
				}
				got := spanBytes(t, r)
				spans += len(r.Spans)
				if len(r.Tail) > 0 {
					tails++
				}
				r.Release()
				want, err := l.Read(off, maxBytes, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s: ReadSpans(%d, %d) answered %d bytes, Read %d", what, off, maxBytes, len(got), len(want))
				}
			}
		}
		if (spans > 0) != wantSpans || (tails > 0) != wantTail {
			t.Fatalf("%s: %d spans, %d tails", what, spans, tails)
		}
	}
	check("written by this process", true, false)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, Config{Flush: FlushInterval, SegmentBytes: 256 << 10}, Options{FileCache: NewFileCache(4)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// After a restart nothing is verified: every answer is read and
	// checked. Read only the first half, so that the log has a
	// verified prefix after it.
	half := hs[len(hs)/2].BaseOffset
	for off := int64(0); off < half; {
		r, err := l.ReadSpans(off, 64<<10, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Spans) > 0 {
			t.Fatalf("span of unverified bytes at %d", off)
		}
		off = nextOffsetAfter(r.Tail)
		r.Release()
	}
	check("half verified", true, true)
	if open := l.opts.FileCache.Stats().Open; open > 4 {
		t.Errorf("%d files open after every span was released, cache of 4", open)
	}
}

// lastOffsetDelta is the offset of the batch's last record past its base.
func (h batchHeader) lastOffsetDelta() int64 { return h.lastOffset() - h.BaseOffset }

// TestSpanOutlivesRetention: a span taken before retention deletes its
// segment (as a fetch answer queued for a slow client) still sends the
// bytes it named, whole, from the removed file; the file goes once the span
// is released.
func TestSpanOutlivesRetention(t *testing.T) {
	dir := t.TempDir()
	l, _ := spanLog(t, dir)
	defer l.Close()
	r, err := l.ReadSpans(0, 200<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Spans) == 0 || len(r.Tail) > 0 {
		t.Fatalf("%d spans, %d tail bytes: want spans only", len(r.Spans), len(r.Tail))
	}
	want, err := l.Read(0, 200<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := segmentPath(dir, 0)
	infos, err := l.DeleteSegmentsBefore(l.HighWatermark())
	if err != nil || len(infos) == 0 {
		t.Fatalf("retention deleted %d segments: %v", len(infos), err)
	}
	if _, err := os.Stat(first); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("segment %s still there after retention: %v", first, err)
	}
	// The cache may not close a file a span holds, however many are
	// opened meanwhile.
	for off := l.LogStartOffset(); off < l.HighWatermark(); {
		b, err := l.Read(off, 32<<10, nil)
		if err != nil {
			t.Fatal(err)
		}
		off = nextOffsetAfter(b)
	}
	if got := spanBytes(t, r); !bytes.Equal(got, want) {
		t.Fatalf("span of a deleted segment sent %d bytes, want the %d it named", len(got), len(want))
	}
	r.Release()
	if left, _ := filepath.Glob(filepath.Join(dir, "*"+deletedSuffix)); len(left) > 0 {
		t.Fatalf("deleted segment files kept after the last span went: %v", left)
	}
}

// segmentPath is the .log file of the segment with base in dir.
func segmentPath(dir string, base int64) string {
	p, _, _ := segmentPaths(dir, base)
	return p
}

// TestReadSpansNeverServesDamage: a batch flipped on disk before a
// restart is found by the checked read (no span covers unverified bytes);
// damage the scrub marks in a verified segment ends its spans before it.
func TestReadSpansNeverServesDamage(t *testing.T) {
	dir := t.TempDir()
	l, hs := spanLog(t, dir)
	victim := hs[len(hs)/3]
	seg := l.segFor(victim.BaseOffset)
	pos := l.posOf(t, seg, victim.BaseOffset)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	f.ReadAt(b, pos+batchHeaderSize+3)
	b[0] ^= 0x40
	f.WriteAt(b, pos+batchHeaderSize+3)
	f.Close()

	l, err = Open(dir, Config{Flush: FlushInterval, SegmentBytes: 256 << 10}, Options{FileCache: NewFileCache(4)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	readTo := func() (int64, error) {
		off := int64(0)
		for off < l.HighWatermark() {
			r, err := l.ReadSpans(off, 64<<10, nil)
			if err != nil {
				r.Release()
				return off, err
			}
			got := spanBytes(t, r)
			r.Release()
			if next := nextOffsetAfter(got); next > victim.BaseOffset && off <= victim.BaseOffset {
				t.Fatalf("answer from %d to %d includes the damaged batch %d", off, next, victim.BaseOffset)
			}
			off = nextOffsetAfter(got)
		}
		return off, nil
	}
	for round := range 3 {
		off, err := readTo()
		if !isCorruptionErr(err) || off != victim.BaseOffset {
			t.Fatalf("round %d: stopped at %d with %v, want damage at %d", round, off, err, victim.BaseOffset)
		}
	}
	// Verified, then damaged (as the scrub marks it): no span passes it.
	s := segmentOf(l, segFor(l, victim.BaseOffset).base)
	s.advanceVerified(0, s.size)
	s.markDamaged(pos)
	if s.verified.Load() > pos {
		t.Fatalf("verified to %d past damage at %d", s.verified.Load(), pos)
	}
	if off, err := readTo(); !isCorruptionErr(err) || off != victim.BaseOffset {
		t.Fatalf("after the scrub's mark: stopped at %d with %v", off, err)
	}
}

// segFor is the segment holding offset.
func (l *Log) segFor(offset int64) *segment { return segFor(l, offset) }

func segFor(l *Log, offset int64) *segment {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var found *segment
	for _, s := range l.segs {
		if s.base <= offset {
			found = s
		}
	}
	return found
}

// posOf is the position of the batch with base offset in s.
func (l *Log) posOf(t *testing.T, s *segment, offset int64) int64 {
	t.Helper()
	pos, _, err := s.findBatch(newHeaderReader(s.log), offset, s.size)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// TestReadSpansResume: a consumer reading the log in order starts most
// fetches where the previous one stopped (segment.resumeFrom), and gets the
// bytes Read does; once the scrub marks that batch damaged, a fetch from
// it no longer sends it from the file but reads and checks it again.
func TestReadSpansResume(t *testing.T) {
	l, hs := spanLog(t, t.TempDir())
	defer l.Close()
	var fetches, resumed int
	for off := int64(0); off < l.HighWatermark(); fetches++ {
		s := l.segFor(off)
		if _, _, ok := s.resumeFrom(off, s.size); ok {
			resumed++
		}
		r, err := l.ReadSpans(off, 20<<10, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := spanBytes(t, r)
		r.Release()
		want, err := l.Read(off, 20<<10, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("ReadSpans(%d) answered %d bytes, Read %d", off, len(got), len(want))
		}
		off = nextOffsetAfter(got)
	}
	if resumed < fetches/2 {
		t.Fatalf("%d of %d fetches resumed where the previous one stopped", resumed, fetches)
	}

	// A fetch that stops before the victim, then the scrub's mark on it.
	i := len(hs) / 2
	prev, victim := hs[i-1], hs[i]
	if _, err := l.ReadSpans(prev.BaseOffset, int(prev.Size)+1, nil); err != nil {
		t.Fatal(err)
	}
	s := l.segFor(victim.BaseOffset)
	if _, _, ok := s.resumeFrom(victim.BaseOffset, s.size); !ok {
		t.Fatalf("no resume point at %d after a fetch stopped before it", victim.BaseOffset)
	}
	s.markDamaged(l.posOf(t, s, victim.BaseOffset))
	if _, _, ok := s.resumeFrom(victim.BaseOffset, s.size); ok {
		t.Fatalf("resume point at %d kept after the scrub marked it damaged", victim.BaseOffset)
	}
	r, err := l.ReadSpans(victim.BaseOffset, 64<<10, nil)
	if err != nil || len(r.Spans) > 0 || len(r.Tail) == 0 {
		t.Fatalf("fetch of a batch marked damaged: %d spans, %d checked bytes, %v", len(r.Spans), len(r.Tail), err)
	}
	r.Release()
}
