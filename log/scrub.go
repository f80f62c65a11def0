package log

import (
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Verified ranges and the scrub.
//
// Every batch's CRC is checked before its bytes are served, but not
// necessarily on every read: each segment remembers, in memory only, how
// far from its start this process has checked every batch (verified). A
// batch enters that range when the produce path writes it (CheckBatch
// checked the CRC of those very bytes) or when a read or the scrub checks
// it. Reads of the range walk the batch headers (framing, offsets, epochs)
// but skip the CRC, so fan-out to many consumers costs one CRC per byte
// per process instead of one per consumer. The range is contiguous from
// the segment start; a read that starts past its end checks every batch
// and does not extend it. A segment opened by Open (after a restart) starts
// with none verified: its first reads, or the scrub, check it.
//
// The scrub (Options.Scrub) walks every segment of the log, oldest first,
// at a rate shared by all logs, checking every CRC again, the verified
// range included: the disk may rot after a check. A failure is logged,
// counted (Metrics.ScrubDamage) and marks the segment damaged at that
// batch: the verified range is cut back to it and can never pass it
// again, so every read from there on checks the CRC and answers a
// *CorruptionError, as a read that found the damage itself does. The bad
// bytes are never served once the damage is known.
//
// The trade-off, honestly: between the change of a byte on disk and the
// scrub's next pass over it, a read of a verified range serves what the
// page cache holds. A bit that rots on the medium leaves the cached page
// good (the good bytes are served, and the scrub, reading through the same
// cache, finds the rot only once the page is evicted and read again); a
// byte changed through the file system (a stray write, a test's flip)
// reaches the page cache at once and is served unchecked until the scrub
// reaches it, at most one pass later. A pass takes the log's bytes over the
// scrub rate: 100 GB at 8 MB/s is about 3.5 hours.

// DefaultScrubBytesPerSecond is the scrub rate a broker uses unless told:
// slow enough to go unnoticed beside a night's fetches.
const DefaultScrubBytesPerSecond = 8 << 20

// scrubChunk is how much the scrub reads at a time.
const scrubChunk = 1 << 20

// Scrubber paces the scrub of every log that shares it: together they read
// at most BytesPerSecond (averaged over a chunk), and each log rests Rest
// between passes.
type Scrubber struct {
	rate float64 // bytes per second
	rest time.Duration

	mu   sync.Mutex
	next time.Time // when the bucket is empty again

	// bufs holds chunk buffers between reads: a log waiting for its
	// turn holds none, so a thousand logs do not hold a chunk each.
	bufs sync.Pool
}

// buf returns a buffer of n bytes; put gives it back.
func (s *Scrubber) buf(n int) []byte {
	if b, ok := s.bufs.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n, max(n, scrubChunk))
}

func (s *Scrubber) put(b []byte) {
	if cap(b) <= scrubChunk {
		s.bufs.Put(&b)
	}
}

// NewScrubber returns a Scrubber reading bytesPerSecond in all (<= 0 means
// DefaultScrubBytesPerSecond) and resting rest between the passes over one
// log (<= 0 means a minute).
func NewScrubber(bytesPerSecond int64, rest time.Duration) *Scrubber {
	if bytesPerSecond <= 0 {
		bytesPerSecond = DefaultScrubBytesPerSecond
	}
	if rest <= 0 {
		rest = time.Minute
	}
	return &Scrubber{rate: float64(bytesPerSecond), rest: rest}
}

// reserve books n bytes and returns when they may be read.
func (s *Scrubber) reserve(n int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	at := s.next
	if at.Before(now) {
		at = now
	}
	s.next = at.Add(time.Duration(float64(n) / s.rate * float64(time.Second)))
	return at
}

// advanceVerified extends the verified range of s to end after the
// batches in [from, end) were checked; it does nothing when from is past
// the range (it must stay contiguous) and never passes known damage.
func (s *segment) advanceVerified(from, end int64) {
	for {
		cur := s.verified.Load()
		if from > cur || end <= cur {
			return
		}
		if d := s.damaged.Load(); d > 0 && end > d-1 {
			end = d - 1
			if end <= cur {
				return
			}
		}
		if s.verified.CompareAndSwap(cur, end) {
			return
		}
	}
}

// markDamaged records damage found at pos: the verified range is cut back
// to it and stays below it. It reports whether this damage is news.
func (s *segment) markDamaged(pos int64) bool {
	news := false
	for {
		d := s.damaged.Load()
		if d > 0 && d-1 <= pos {
			break
		}
		if s.damaged.CompareAndSwap(d, pos+1) {
			news = true
			break
		}
	}
	for {
		cur := s.verified.Load()
		if cur <= pos || s.verified.CompareAndSwap(cur, pos) {
			return news
		}
	}
}

// scrubLoop runs the scrub passes until the log closes.
func (l *Log) scrubLoop() {
	defer l.wg.Done()
	for {
		if !l.scrubPass() {
			return
		}
		select {
		case <-l.stop:
			return
		case <-time.After(l.opts.Scrub.rest):
		}
	}
}

// scrubPass checks every batch of every segment once, oldest first, below
// the high watermark. It returns false when the log closed.
func (l *Log) scrubPass() bool {
	l.mu.RLock()
	segs := append([]*segment(nil), l.segs...)
	l.mu.RUnlock()
	for _, s := range segs {
		pos, expect := int64(0), s.base
		for {
			// Booked before the read, so that logs opened together do
			// not all read at once, and only what is there, so that a
			// small log does not book a whole chunk.
			want := l.scrubWant(s, pos)
			if want == 0 {
				break
			}
			select {
			case <-l.stop:
				return false
			case <-time.After(time.Until(l.opts.Scrub.reserve(int(want)))):
			}
			var done bool
			var err error
			var n int64
			n, pos, expect, done, err = l.scrubChunk(s, pos, expect)
			if n > want {
				l.opts.Scrub.reserve(int(n - want)) // a batch larger than a chunk: the next read waits for it
			}
			if m := l.opts.Metrics; n > 0 && m != nil && m.ScrubBytes != nil {
				m.ScrubBytes.Add(float64(n))
			}
			if oe := (*OpenError)(nil); errors.As(err, &oe) {
				break // out of descriptors: no damage, try again next pass
			}
			if err != nil {
				if s.markDamaged(pos) {
					l.lg.Error("scrub found damage", zap.Error(s.corruption(pos, err)))
					if m := l.opts.Metrics; m != nil && m.ScrubDamage != nil {
						m.ScrubDamage.Inc()
					}
				}
				break
			}
			if done {
				break
			}
		}
	}
	return true
}

// scrubChunk checks the batches of s from pos (offset expect) up to
// scrubChunk bytes, or the one batch there if larger, and returns the
// bytes it read and where it stopped; done when s is gone or read to its
// visible end. err is damage at the returned position, or a read that
// failed there.
func (l *Log) scrubChunk(s *segment, pos, expect int64) (read, _, _ int64, done bool, err error) {
	l.mu.RLock()
	limit := int64(0)
	if !l.closed && l.holdsLocked(s) {
		limit = l.visibleLocked(s)
	}
	if pos < limit {
		s.acquire()
	}
	l.mu.RUnlock()
	if pos >= limit {
		return 0, pos, expect, true, nil
	}
	defer s.release()
	n := min(limit-pos, scrubChunk)
	if n >= batchHeaderSize {
		// A batch larger than the chunk is read whole.
		var hb [batchHeaderSize]byte
		if err := readFull(s.log, hb[:], pos); err != nil {
			return 0, pos, expect, false, err
		}
		if h, err := parseBatchHeader(hb[:]); err == nil && h.Size > n {
			n = min(h.Size, limit-pos)
		}
	}
	b := l.opts.Scrub.buf(int(n))
	defer l.opts.Scrub.put(b)
	if err := readFull(s.log, b, pos); err != nil {
		return n, pos, expect, false, err
	}
	good, next, err := checkChunk(b, expect, l.cfg.LeaderEpoch, pos+n == limit, 0)
	if good > 0 {
		s.advanceVerified(pos, pos+int64(good))
	}
	if err == nil && good == 0 {
		err = errBatchLength // no whole batch in what the header said it was
	}
	return n, pos + int64(good), next, err == nil && pos+int64(good) >= limit, err
}

// scrubWant is how much the scrub's next read of s from pos takes: the
// bytes left below the high watermark, at most scrubChunk; 0 when s is
// read to its end or no longer in the log.
func (l *Log) scrubWant(s *segment, pos int64) int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed || !l.holdsLocked(s) {
		return 0
	}
	return min(max(l.visibleLocked(s)-pos, 0), scrubChunk)
}

// holdsLocked says whether s is still one of the log's segments.
func (l *Log) holdsLocked(s *segment) bool {
	for _, x := range l.segs {
		if x == s {
			return true
		}
	}
	return false
}
