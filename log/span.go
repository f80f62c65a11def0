package log

import (
	"os"
	"sync"
)

// Spans: reads that leave the bytes in the file.
//
// A fetch of verified bytes (scrub.go) needs nothing from them in this
// process: their CRCs were checked when they were written or first read.
// ReadSpans answers those as ranges of the open segment files, which the
// listener sends to the socket with sendfile(2), so the bytes go from the
// page cache to the socket without a copy through user space. Batches past
// the verified range are read, checked and returned in a buffer, as Read
// does; an answer is its spans, then that buffer, in log order.
//
// The ends of a span are found without reading its bytes: the first batch
// where a recent read stopped (resumeFrom, below), else by the offset index
// and its header (as Read), the last whole batch within
// the byte budget by the last offset-index entry at or below the budget's
// end and a walk of the headers after it (a few KiB at most). The headers
// between are not read again: their framing, offsets and CRCs were checked
// when they were verified, and the scrub checks them again.
//
// A span holds its segment and the segment file's descriptor (a FileCache
// pin) until Release: retention may remove the segment and compaction
// replace it meanwhile, and the span still reads the bytes it named, from
// the unlinked file.

// Span is a range of whole verified batches of one segment file.
type Span struct {
	File *os.File
	Pos  int64 // where the range starts in File
	Len  int64
	// Offsets is how many offsets the batches cover: their record count,
	// but for a compacted log, where it counts removed records too.
	Offsets int64
}

// Spans is what ReadSpans found: the batches of Spans, then those of Tail.
type Spans struct {
	Spans []Span
	Tail  []byte
	segs  []*segment
	pins  []*segFile
}

// Release lets the files of the spans go; call it once, when they were
// sent or will not be.
func (r *Spans) Release() {
	for _, x := range r.pins {
		x.unpin()
	}
	for _, s := range r.segs {
		s.release()
	}
	r.pins, r.segs, r.Spans = nil, nil, nil
}

// spanHeaderWindow is how much of a segment a span's header walk reads at
// a time: the batches after an offset-index entry, a few KiB.
const spanHeaderWindow = 8 << 10

// spanWindows holds header windows between ReadSpans calls: one per fetch
// was most of what a fetch allocated.
var spanWindows = sync.Pool{New: func() any { return new([spanHeaderWindow]byte) }}

// ReadSpans is Read whose verified batches stay in their files: it returns
// the batches starting with the whole batch that contains offset, below
// the high watermark, up to maxBytes (at least one batch), as spans of
// verified batches followed by the checked bytes of the rest, appended to
// dst. Damage is never returned as data, as with Read. The caller must
// Release the result, also when err is not nil.
func (l *Log) ReadSpans(offset int64, maxBytes int, dst []byte) (Spans, error) {
	out := Spans{Tail: dst}
	views, err := l.pin(offset, maxBytes)
	if err != nil || len(views) == 0 {
		return out, err
	}
	defer releaseViews(views)
	win := spanWindows.Get().(*[spanHeaderWindow]byte)
	defer spanWindows.Put(win)
	r := &headerReader{f: views[0].s.log, buf: win[:], bufPos: -1}
	pos, h, ok := views[0].s.resumeFrom(offset, views[0].limit)
	if !ok {
		pos, h, err = l.findFirst(views[0], r, offset)
		if err != nil {
			return out, err
		}
	}
	expect := h.BaseOffset
	budget := max(int64(maxBytes), h.Size)
	for i, v := range views {
		if i > 0 {
			pos, expect = 0, v.s.base
			r.f, r.bufPos = v.s.log, -1
		}
		end, next, full := pos, expect, false
		if !l.alwaysCRC {
			end, next, full = l.verifiedEnd(v, r, pos, expect, budget)
		}
		if end > pos {
			if out.hold(v.s, pos, end, next-expect) {
				budget -= end - pos
				pos, expect = end, next
			} else {
				full = false // not an OS file (a test's FS): read it
			}
		}
		if full || budget <= 0 {
			break
		}
		if pos < v.limit {
			// Past the verified range: read and check the rest, as Read.
			tail, err := l.readViews(views[i:], pos, expect, budget, dst)
			if err != nil && len(out.Spans) > 0 {
				err = nil // the damage is reported to the read that starts at it
			}
			out.Tail = tail
			return out, err
		}
	}
	return out, nil
}

// verifiedEnd returns the end of the whole batches of v from pos (holding
// offset expect on) that are verified and fit in budget, the offset after
// them, and whether the budget ends before the verified range does. It
// returns pos when there are none or anything looks wrong (the checked
// read then looks closer).
func (l *Log) verifiedEnd(v view, r *headerReader, pos, expect, budget int64) (end, next int64, full bool) {
	limit := min(v.limit, v.s.verified.Load())
	if pos >= limit {
		return pos, expect, false
	}
	target := min(limit, pos+budget)
	if l.checkIndexes(v.s) != nil {
		return pos, expect, false
	}
	p := pos
	next = expect
	if e, ok, err := v.s.idx.lookupPos(target); err == nil && ok && int64(e.Pos) > pos {
		p, next = int64(e.Pos), v.s.base+int64(e.Rel)
	}
	start := p
	for p < target {
		h, err := r.header(p, v.limit)
		if err != nil || h.BaseOffset != next {
			if p == start && start != pos {
				// A stale index entry: walk from pos instead.
				p, next, start = pos, expect, pos
				continue
			}
			return pos, expect, false
		}
		if p+h.Size > target {
			if p+h.Size <= limit {
				v.s.stopAt(p, h)
			}
			break
		}
		p += h.Size
		next = h.nextOffset()
	}
	if p == target && p < limit {
		// The budget ended on a batch boundary: the next read starts here.
		if h, err := r.header(p, v.limit); err == nil && h.BaseOffset == next && p+h.Size <= limit {
			v.s.stopAt(p, h)
		}
	}
	return p, next, target < limit
}

// lookupPos returns the last entry whose position is at or below pos.
func (x *index) lookupPos(pos int64) (e offsetEntry, ok bool, err error) {
	b, ok, err := x.last(func(b []byte) bool { return int64(decodeOffsetEntry(b).Pos) <= pos })
	if !ok {
		return offsetEntry{}, false, err
	}
	return decodeOffsetEntry(b), true, nil
}

// hold adds the span [pos, end) of s, holding s and its file open until
// Release. It reports false when s is not in an OS file.
func (r *Spans) hold(s *segment, pos, end, offsets int64) bool {
	f := s.log
	x, cached := f.(*segFile)
	if cached {
		var err error
		if f, err = x.pin(); err != nil {
			return false
		}
	}
	of, ok := f.(osFile)
	if !ok {
		if cached {
			x.unpin()
		}
		return false
	}
	if cached {
		r.pins = append(r.pins, x)
	}
	s.acquire()
	r.segs = append(r.segs, s)
	r.Spans = append(r.Spans, Span{File: of.File, Pos: pos, Len: end - pos, Offsets: offsets})
	return true
}

// A consumer's next fetch starts at the batch after the last one its
// previous fetch got, whose header that fetch read to find it did not fit.
// The segment remembers the last resumePoints such batches, and a read
// starting at one skips the offset index and the header read. Only whole
// verified batches are remembered, and only while they stay verified: the
// scrub's damage mark lowers the verified end below them.
const resumePoints = 16

type resumePoint struct {
	pos int64
	h   batchHeader // Size 0: an empty slot
}

// resumeFrom returns the position and header of the batch with base offset
// offset when a recent read stopped at it and it is verified below limit.
func (s *segment) resumeFrom(offset, limit int64) (int64, batchHeader, bool) {
	limit = min(limit, s.verified.Load())
	s.resumeMu.Lock()
	defer s.resumeMu.Unlock()
	for _, p := range s.resume {
		if p.h.Size > 0 && p.h.BaseOffset == offset && p.pos+p.h.Size <= limit {
			return p.pos, p.h, true
		}
	}
	return 0, batchHeader{}, false
}

// stopAt remembers that a read stopped before the verified batch h at pos.
func (s *segment) stopAt(pos int64, h batchHeader) {
	s.resumeMu.Lock()
	defer s.resumeMu.Unlock()
	for _, p := range s.resume {
		if p.h.Size > 0 && p.pos == pos {
			return // consumers reading together stop at the same batches
		}
	}
	s.resume[s.resumeNext] = resumePoint{pos: pos, h: h}
	s.resumeNext = (s.resumeNext + 1) % resumePoints
}
