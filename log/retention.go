package log

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// EnforceRetention deletes sealed segments past retention by age or size and
// rolls the active segment by age; it returns the number deleted. Like
// Kafka, it deletes a prefix of the log: the oldest segments first, stopping
// at the first one that is kept. A segment's age is the clock minus its
// largest batch max timestamp; a segment whose batches carry no timestamp
// (-1) counts as expired.
func (l *Log) EnforceRetention() (deleted int, err error) {
	byAge, bySize, err := l.Retain()
	return len(byAge) + len(bySize), err
}

// SegmentInfo is what retention across logs needs to know of one segment.
type SegmentInfo struct {
	Base int64
	// Bytes is the size of its files on disk: the log (with the zeros
	// preallocated after an active segment's end) and both indexes.
	Bytes int64
	// MaxTimestamp is the largest batch max timestamp, -1 before any batch.
	MaxTimestamp int64
	// Active: the segment still takes writes; retention never deletes it.
	Active bool
}

// info describes s; the caller holds Log.mu (size and fileEnd change under it).
func (s *segment) info() SegmentInfo {
	return SegmentInfo{Base: s.base, MaxTimestamp: s.maxTs,
		Bytes: max(s.size, s.fileEnd) + int64(s.idx.len()*offsetEntrySize+s.tidx.len()*timeEntrySize)}
}

// SegmentInfos lists the log's segments oldest first; the last is the
// active one. Nil once the log is closed.
func (l *Log) SegmentInfos() []SegmentInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil
	}
	out := make([]SegmentInfo, len(l.segs))
	for i, s := range l.segs {
		out[i] = s.info()
		out[i].Active = s == l.cur
	}
	return out
}

// Retain is EnforceRetention saying what it deleted and why: by
// retention.ms (byAge, which wins when both apply) or retention.bytes.
func (l *Log) Retain() (byAge, bySize []SegmentInfo, err error) {
	l.retMu.Lock()
	defer l.retMu.Unlock()
	l.writeMu.Lock()
	l.mu.RLock()
	closed, werr := l.closed, l.werr
	l.mu.RUnlock()
	if closed {
		l.writeMu.Unlock()
		return nil, nil, ErrClosed
	}
	if werr == nil && l.segmentAged(l.cur) {
		err = l.rollLocked()
	}
	l.writeMu.Unlock()
	if err != nil {
		return nil, nil, err
	}

	now := l.opts.Now()
	l.mu.Lock()
	var total int64
	for _, s := range l.segs {
		total += s.size
	}
	var doomed []*segment
	for _, s := range l.segs[:len(l.segs)-1] {
		if !l.cfg.Cleanup.Deletes() {
			break // compact only: the cleaner keeps the log's size
		}
		aged := l.cfg.RetentionAge >= 0 && now.Sub(time.UnixMilli(s.maxTs)) > l.cfg.RetentionAge
		big := l.cfg.RetentionBytes >= 0 && total-s.size >= l.cfg.RetentionBytes
		if !aged && !big {
			break
		}
		if aged {
			byAge = append(byAge, s.info())
		} else {
			bySize = append(bySize, s.info())
		}
		doomed = append(doomed, s)
		total -= s.size
	}
	l.dropLocked(len(doomed))
	l.mu.Unlock()
	return byAge, bySize, l.deleteSegments(doomed)
}

// SealIdle seals the active segment when it holds batches and its newest
// batch timestamp is below before (Unix ms), so that retention over many
// logs may delete an idle partition's last segment (a past night's topic
// keeps its active segment until segment.ms otherwise). It returns the base
// offset of the new active segment, or -1 when the segment was not idle
// (or the log is read-only) and nothing was sealed.
func (l *Log) SealIdle(before int64) (int64, error) {
	l.retMu.Lock()
	defer l.retMu.Unlock()
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.RLock()
	closed, werr := l.closed, l.werr
	idle := l.cur.size > 0 && l.cur.maxTs < before
	l.mu.RUnlock()
	if closed {
		return -1, ErrClosed
	}
	if werr != nil || !idle {
		return -1, nil
	}
	if err := l.rollLocked(); err != nil {
		return -1, err
	}
	return l.cur.base, nil
}

// DeleteSegmentsBefore deletes the sealed segments that end at or before
// the base offset end (the base of a later segment), oldest first, and
// never the active one: retention over many logs (the broker's
// log.retention.total.bytes) picks the segments, the log deletes them. It
// returns what it deleted.
func (l *Log) DeleteSegmentsBefore(end int64) ([]SegmentInfo, error) {
	l.retMu.Lock()
	defer l.retMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	n := 0
	for n < len(l.segs)-1 && l.segs[n+1].base <= end && l.segs[n] != l.cur {
		n++
	}
	doomed := append([]*segment(nil), l.segs[:n]...)
	infos := make([]SegmentInfo, n)
	for i, s := range doomed {
		infos[i] = s.info()
	}
	l.dropLocked(n)
	l.mu.Unlock()
	return infos, l.deleteSegments(doomed)
}

// DeleteRecords advances the log start offset to before (clamped to the high
// watermark) and deletes segments wholly below it.
func (l *Log) DeleteRecords(before int64) (logStart int64, err error) {
	l.retMu.Lock()
	defer l.retMu.Unlock()
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return 0, ErrClosed
	}
	before = min(before, l.hw)
	cur := l.logStart
	l.mu.RUnlock()
	if before <= cur {
		return cur, nil
	}
	// Persist first: after a crash the log must not go back below it.
	if err := writeLogStart(l.fs, l.dir, before); err != nil {
		return cur, l.fail(fmt.Errorf("persist log start offset: %w", err))
	}
	l.mu.Lock()
	l.logStart = max(l.logStart, before)
	n := 0
	for n < len(l.segs)-1 && l.segs[n+1].base <= l.logStart {
		n++
	}
	doomed := append([]*segment(nil), l.segs[:n]...)
	l.dropLocked(n)
	logStart = l.logStart
	l.mu.Unlock()
	return logStart, l.deleteSegments(doomed)
}

// dropLocked removes the first n segments from the list and moves the log
// start offset to the new first segment.
func (l *Log) dropLocked(n int) {
	if n == 0 {
		return
	}
	l.segs = append(l.segs[:0:0], l.segs[n:]...)
	l.logStart = max(l.logStart, l.segs[0].base)
}

// deleteSegments renames the files of segments already out of the list to
// .deleted (so that a crash midway leaves nothing that looks live) and
// drops the list's reference; the last reader removes the files.
func (l *Log) deleteSegments(doomed []*segment) error {
	var firstErr error
	for _, s := range doomed {
		for _, p := range []string{s.path, s.idx.path, s.tidx.path} {
			if err := l.fs.Rename(p, p+deletedSuffix); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("delete segment %d: %w", s.base, err)
			}
		}
		s.doomed.Store(true)
		l.lg.Info("deleted segment", zap.String("segment", s.path), zap.Int64("size", s.size))
		s.release()
	}
	if len(doomed) > 0 {
		l.mu.RLock()
		first := l.segs[0].base
		l.mu.RUnlock()
		l.pruneSnapshotsBelow(first)
		if err := l.fs.SyncDir(l.dir); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("sync dir: %w", err)
		}
	}
	return firstErr
}
