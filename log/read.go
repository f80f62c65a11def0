package log

import "sort"

// view is a pinned segment with the end of its bytes visible to readers.
type view struct {
	s     *segment
	limit int64
}

// viewsLocked pins the segment holding offset and the ones after it that
// a read of maxBytes may reach. The caller holds mu and releases them.
func (l *Log) viewsLocked(offset int64, maxBytes int) []view {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > offset }) - 1
	if i < 0 {
		i = 0
	}
	var views []view
	var total int64
	for ; i < len(l.segs); i++ {
		s := l.segs[i]
		v := view{s: s, limit: l.visibleLocked(s)}
		if v.limit == 0 || (len(views) > 0 && total >= int64(maxBytes)) {
			break
		}
		s.acquire()
		views = append(views, v)
		total += v.limit
	}
	return views
}

// visibleLocked is where the bytes of s stop being below the high watermark.
func (l *Log) visibleLocked(s *segment) int64 {
	switch {
	case s.base >= l.hw:
		return 0
	case s == l.hwSeg:
		return l.hwPos
	}
	return s.size
}

func releaseViews(views []view) {
	for _, v := range views {
		v.s.release()
	}
}

// pin checks offset against the log start offset and high watermark and
// pins the segments a read needs; none when offset is the high watermark.
func (l *Log) pin(offset int64, maxBytes int) ([]view, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	if offset < l.logStart || offset > l.hw {
		return nil, ErrOffsetOutOfRange
	}
	if offset == l.hw {
		return nil, nil
	}
	return l.viewsLocked(offset, maxBytes), nil
}

// findFirst returns the position and header of the batch of v holding
// offset, which pin found between the log start offset and the high
// watermark: a segment that does not hold it has lost it (a gap), which is
// damage, never "out of range" (a consumer would skip ahead).
func (l *Log) findFirst(v view, r *headerReader, offset int64) (int64, batchHeader, error) {
	if err := l.checkIndexes(v.s); err != nil {
		return 0, batchHeader{}, err
	}
	pos, h, err := v.s.findBatch(r, offset, v.limit)
	if err == ErrOffsetOutOfRange {
		err = missingOffsets(v.s.path, pos, offset, offset, "not in the segment that should hold it")
	}
	return pos, h, err
}

// Ranges returns the batches starting with the whole batch that contains
// offset, below the high watermark, up to maxBytes (at least one batch).
// It checks the framing and offsets of the batches it walks, not their
// CRCs (that needs the bytes: use Read for checked data).
func (l *Log) Ranges(offset int64, maxBytes int) ([]Range, error) {
	views, err := l.pin(offset, maxBytes)
	if err != nil || len(views) == 0 {
		return nil, err
	}
	defer releaseViews(views)
	var out []Range
	budget := int64(maxBytes)
	for i, v := range views {
		r := newHeaderReader(v.s.log)
		pos, expect := int64(0), v.s.base
		if i == 0 {
			p, h, err := l.findFirst(v, r, offset)
			if err != nil {
				return nil, err
			}
			pos, expect = p, h.BaseOffset
		}
		rg := Range{Segment: v.s.path, Pos: pos, BaseOffset: expect}
		for pos < v.limit {
			h, err := r.header(pos, v.limit)
			if err == nil && h.BaseOffset != expect {
				err = errBadOffset
			}
			if err == nil && pos+h.Size > v.limit {
				err = errBatchLength
			}
			if err != nil {
				if len(out) == 0 && rg.Len == 0 {
					return nil, v.s.corruption(pos, err)
				}
				budget = 0
				break
			}
			if h.Size > budget && (len(out) > 0 || rg.Len > 0) {
				budget = 0
				break
			}
			rg.Len += h.Size
			budget -= h.Size
			pos += h.Size
			expect = h.nextOffset()
		}
		if rg.Len > 0 {
			out = append(out, rg)
		}
		if budget <= 0 {
			break
		}
	}
	return out, nil
}

// Read is Ranges followed by reading the bytes into dst (appended), checking
// every batch's CRC; damage is a *CorruptionError and is never returned as
// data. Good batches before a damaged one are returned without error; the
// damaged batch is reported when a read starts at it.
func (l *Log) Read(offset int64, maxBytes int, dst []byte) ([]byte, error) {
	views, err := l.pin(offset, maxBytes)
	if err != nil || len(views) == 0 {
		return dst, err
	}
	defer releaseViews(views)
	pos, h, err := l.findFirst(views[0], newHeaderReader(views[0].s.log), offset)
	if err != nil {
		return dst, err
	}
	return l.readViews(views, pos, h.BaseOffset, max(int64(maxBytes), h.Size), dst)
}

// readViews reads and checks the batches of views from pos in the first
// one (holding offset expect on), up to budget bytes, into dst (appended).
func (l *Log) readViews(views []view, pos, expect, budget int64, dst []byte) ([]byte, error) {
	orig := len(dst)
	for i, v := range views {
		if i > 0 {
			pos, expect = 0, v.s.base
		}
		end := min(v.limit, pos+budget)
		if end <= pos {
			break
		}
		start := len(dst)
		dst = grow(dst, int(end-pos))
		chunk := dst[start:]
		if err := readFull(v.s.log, chunk, pos); err != nil {
			return dst[:orig], v.s.corruption(pos, err)
		}
		// Bytes this process already checked skip the CRC (the verified
		// ranges, scrub.go); framing and offsets are checked anyway.
		skip := int64(0)
		if !l.alwaysCRC {
			skip = min(max(v.s.verified.Load()-pos, 0), end-pos)
		}
		good, _, err := checkChunk(chunk, expect, l.cfg.LeaderEpoch, end == v.limit, int(skip))
		if good > 0 {
			v.s.advanceVerified(pos, pos+int64(good))
		}
		dst = dst[:start+good]
		budget -= int64(good)
		if err != nil {
			if len(dst) == orig {
				return dst, v.s.corruption(pos+int64(good), err)
			}
			return dst, nil
		}
		if pos+int64(good) < v.limit || budget <= 0 {
			break
		}
	}
	return dst, nil
}

// checkChunk checks the whole batches at the start of b, which were read
// from offset expect on. A batch cut by the end of b is damage only when
// b ends at the end of the visible data (atLimit); otherwise it is left
// for the next read. Batches wholly inside the first verified bytes of b
// skip the CRC: their framing, offsets and epochs are still checked. It
// returns the length of the good batches and the offset after them.
func checkChunk(b []byte, expect int64, maxEpoch int32, atLimit bool, verified int) (good int, next int64, err error) {
	for good < len(b) {
		rest := b[good:]
		if len(rest) < batchHeaderSize {
			if atLimit {
				return good, expect, errShortBatch
			}
			return good, expect, nil
		}
		h, err := parseBatchHeader(rest)
		if err != nil {
			return good, expect, err
		}
		if h.Size > int64(len(rest)) {
			if atLimit {
				return good, expect, errBatchLength
			}
			return good, expect, nil
		}
		if int64(good)+h.Size <= int64(verified) {
			err = checkFraming(h, expect, maxEpoch)
		} else {
			err = checkParsedBatch(rest[:h.Size], h, expect, maxEpoch)
		}
		if err != nil {
			return good, expect, err
		}
		good += int(h.Size)
		expect = h.nextOffset()
	}
	return good, expect, nil
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// findTime returns the first batch of s below limit whose max timestamp
// is >= ts, starting after the last time-index entry below ts.
func (s *segment) findTime(ts, limit int64) (int64, batchHeader, bool, error) {
	r := newHeaderReader(s.log)
	pos, expect := int64(0), s.base
	if e, ok, err := s.tidx.lookupTimeBelow(ts); err != nil {
		return 0, batchHeader{}, false, err
	} else if ok {
		p, h, err := s.findBatch(r, s.base+int64(e.Rel)+1, limit)
		if err == ErrOffsetOutOfRange {
			return 0, batchHeader{}, false, nil
		}
		if err != nil {
			return 0, batchHeader{}, false, err
		}
		pos, expect = p, h.BaseOffset
	}
	for pos < limit {
		h, err := r.header(pos, limit)
		if err == nil && h.BaseOffset != expect {
			err = errBadOffset
		}
		if err != nil {
			return 0, h, false, s.corruption(pos, err)
		}
		if h.MaxTimestamp >= ts {
			return pos, h, true, nil
		}
		pos += h.Size
		expect = h.nextOffset()
	}
	return 0, batchHeader{}, false, nil
}

// OffsetForTime returns the base offset and max timestamp of the first batch
// whose max timestamp is >= ts; ok is false when there is none. The offset
// is never below the log start offset.
func (l *Log) OffsetForTime(ts int64) (offset, maxTimestamp int64, ok bool, err error) {
	from := int64(-1) // search segments with base > from
	for {
		l.mu.RLock()
		if l.closed {
			l.mu.RUnlock()
			return 0, 0, false, ErrClosed
		}
		var v view
		for _, s := range l.segs {
			if s.base > from && s.maxTs >= ts {
				if lim := l.visibleLocked(s); lim > 0 {
					v = view{s: s, limit: lim}
					s.acquire()
				}
				break
			}
		}
		logStart := l.logStart
		l.mu.RUnlock()
		if v.s == nil {
			return 0, 0, false, nil
		}
		err := l.checkIndexes(v.s)
		var h batchHeader
		var found bool
		if err == nil {
			_, h, found, err = v.s.findTime(ts, v.limit)
		}
		v.s.release()
		if err != nil {
			return 0, 0, false, err
		}
		if found && h.lastOffset() >= logStart {
			return max(h.BaseOffset, logStart), h.MaxTimestamp, true, nil
		}
		from = v.s.base
	}
}

// MaxTimestamp returns the largest timestamp in the log and the last offset
// of the batch carrying it (-1, -1 when empty).
func (l *Log) MaxTimestamp() (ts, offset int64) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	ts, offset = -1, -1
	for _, s := range l.segs {
		if s.maxTsOffset >= 0 && s.maxTsOffset < l.hw && s.maxTsOffset >= l.logStart && (offset < 0 || s.maxTs > ts) {
			ts, offset = s.maxTs, s.maxTsOffset
		}
	}
	return ts, offset
}
