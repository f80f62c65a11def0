package log

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"go.uber.org/zap"
)

// Warming (issue 13). A write into a page the page cache does not hold yet
// costs the kernel a fresh page, and on a virtual machine whose host takes
// back the guest's free memory (virtio-balloon free page reporting, as on
// the machine this was measured on) a fresh page costs a fault in the host
// as well: writing 280 MB, one 10,000-alert exposure, into a new file took
// 0.9-1.1 s of CPU, and 0.04 s once its pages were in the cache.
//
// So a partition whose appends are large (where zeros are not written
// ahead, prealloc.go) has its active segment's file extended by a hole
// ahead of the writer, and the hole read back once, between bursts: the
// read puts zero pages in the cache, which the next appends overwrite. The
// fresh pages are paid for in the idle time between exposures, not while
// an exposure waits for its acknowledgements. The hole takes no disk
// space, and reads as the zeros prealloc.go already writes, so crash
// recovery and Verify treat it as preallocated space: the file ends on a
// preallocAlign boundary, roll and Close cut it.

const (
	// warmMaxBytes is how far ahead of the writer a partition's pages
	// are warmed at most: the bytes it wrote in the last 10-20 s
	// (preallocRateWindow), up to this. 128 MiB holds most of what one
	// partition of a 4-partition night takes of a 10,000-alert exposure.
	warmMaxBytes = 128 << 20
	// warmMinBytes: a partition that writes less in 10-20 s is not
	// warmed (nor are its pages worth the bother).
	warmMinBytes = 1 << 20
	// warmChunk is read at a time; warmQuiet is how long the writer must
	// have been still before a chunk is read: warming waits for the end
	// of a burst (an exposure's alerts come a few ms apart to each
	// partition, exposures 30-40 s apart) instead of taking CPU from it.
	// A partition written without such pauses is not warmed: its writer
	// pays for its fresh pages, as without warming.
	warmChunk = 1 << 20
	warmQuiet = 250 * time.Millisecond
	// warmBurstGap and warmBursts: a partition is warmed once its writer
	// has come back after a pause of warmBurstGap warmBursts times. A
	// survey's exposures come 30-40 s apart; a producer streaming under
	// load may stall for a few hundred ms (a slow fsync, a p99 of a second
	// under Kafka's own tools), and its last window, warmed when it
	// stops, would cost CPU for nothing (vs-kafka.sh saw 2 s per GB
	// consumed next).
	warmBurstGap = 2 * time.Second
	warmBursts   = 2
)

// warmWantLocked says whether the active segment s should be warmed:
// when the partition is written in bursts (warmBursts times written again
// after a pause of warmBurstGap: a survey's exposures, not one producer
// streaming until it stops, whose last window would be warmed for
// nothing), zeros are not being
// written ahead of it, it is written fast enough, nothing warms it yet,
// and less than half of its window is warm ahead of the writer. On true it
// reserves s (s.fill) for a warm. The caller holds writeMu and mu.
func (l *Log) warmWantLocked(s *segment) bool {
	if l.gaps < warmBursts || s.fill != nil || l.closed || l.werr != nil || l.cfg.PreallocateBytes < 0 || s.noPrealloc {
		return false
	}
	if l.cfg.Flush == FlushAlways && l.syncBytes < preallocMaxSyncBytes && l.cfg.PreallocateBytes > 0 {
		return false // zeros are written ahead instead, which warms as well
	}
	to, ok := l.warmTargetLocked(s)
	if !ok || max(s.fileEnd, s.holeEnd)-s.size >= (to-s.size)/2 {
		return false
	}
	// The writer never waits for a warm: reading does not change what it
	// writes. fill only lets roll and Close stop it.
	s.fill, s.fillFrom = make(chan struct{}), math.MaxInt64
	s.warmAbort = make(chan struct{})
	return true
}

// warmTargetLocked is how far ahead of the writer s should be warm: the
// bytes the partition wrote in the last 10-20 s, up to warmMaxBytes and
// segment.bytes, on a preallocAlign boundary. The caller holds mu.
func (l *Log) warmTargetLocked(s *segment) (to int64, ok bool) {
	window := min(l.ratePrev+l.rateCur, warmMaxBytes)
	to = min(s.size+window, l.cfg.SegmentBytes) &^ (preallocAlign - 1)
	return to, window >= warmMinBytes && to > s.size
}

// warm brings the pages ahead of the writer of s into the page cache, a
// chunk at a time, each once the writer has been still for warmQuiet:
// from where the writer is (it may have moved on meanwhile) to the
// target, extending the file by a hole first. It stops when the target is
// warm, or at once when roll, Close or a failed write stop it (fillStop and
// abort, l.stop).
func (l *Log) warm(s *segment, done, abort chan struct{}) {
	defer l.wg.Done()
	defer s.release()
	err := l.warmAhead(s, abort)
	l.mu.Lock()
	s.fill, s.fillStop, s.warmAbort = nil, false, nil
	s.noPrealloc = s.noPrealloc || err != nil
	l.mu.Unlock()
	close(done)
	if err != nil {
		l.lg.Warn("warming stopped for this segment", zap.Int64("segment", s.base), zap.Error(err))
	}
}

func (l *Log) warmAhead(s *segment, abort chan struct{}) error {
	f := s.log
	if x, ok := f.(*segFile); ok {
		g, err := x.pin()
		if err != nil {
			return err
		}
		defer x.unpin()
		f = g
	}
	var buf []byte
	quiet := time.NewTimer(0)
	defer quiet.Stop()
	var at int64
	for {
		select {
		case <-l.stop:
			return nil
		case <-abort:
			return nil
		case <-quiet.C:
		}
		if still := time.Since(l.born) - time.Duration(l.lastWrite.Load()); still < warmQuiet {
			quiet.Reset(warmQuiet - still)
			continue
		}
		l.mu.RLock()
		stop := l.closed || s.fillStop
		to, ok := l.warmTargetLocked(s)
		at = max(at, s.size)
		hole := s.holeEnd
		l.mu.RUnlock()
		if stop || !ok || at >= to {
			return nil
		}
		if hole < to {
			extended, err := l.extendByHole(s, to)
			if err != nil {
				return err
			}
			if !extended {
				quiet.Reset(warmQuiet) // the writer is busy: later
				continue
			}
		}
		n := min(to-at, warmChunk)
		if buf == nil {
			buf = make([]byte, warmChunk)
		}
		if _, err := f.ReadAt(buf[:n], at); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // cut meanwhile: nothing left to warm
			}
			return fmt.Errorf("read ahead at %d: %w", at, err)
		}
		l.warmed.Add(n)
		if m := l.opts.Metrics; m != nil && m.WarmedBytes != nil {
			m.WarmedBytes.Add(float64(n))
		}
		at += n
		quiet.Reset(0)
	}
}

// extendByHole extends the file of s to "to" when the writer is still
// (writeMu is free: never waited for, as roll and Close wait for the warm
// holding it) and s is still the active segment below "to".
func (l *Log) extendByHole(s *segment, to int64) (bool, error) {
	if !l.writeMu.TryLock() {
		return false, nil
	}
	defer l.writeMu.Unlock()
	l.mu.RLock()
	ok := s == l.cur && !s.fillStop && !l.closed && s.size < to && s.holeEnd < to
	l.mu.RUnlock()
	if !ok {
		return true, nil // nothing to extend; the next step sees why
	}
	if err := s.log.Truncate(to); err != nil {
		return false, fmt.Errorf("extend by a hole to %d: %w", to, err)
	}
	l.mu.Lock()
	s.holeEnd = to
	l.mu.Unlock()
	return true, nil
}

// Warmed is the number of bytes read ahead of the writer so far, to bring
// their pages into the cache.
func (l *Log) Warmed() int64 { return l.warmed.Load() }
