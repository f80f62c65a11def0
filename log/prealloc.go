package log

import (
	"fmt"
	"io"

	"go.uber.org/zap"
)

// Preallocation (issue 14). An fdatasync after an append must journal the
// file's new size and extents: 1.2-3.3 ms on an ext4 disk, where one after
// overwriting blocks already written and synced costs 0.3-0.5 ms. So the
// active segment's file is kept written with zeros, and fsynced, ahead of
// the writer: its appends then overwrite, and the metadata commit is paid
// once per extension (a few MiB) instead of once per append.
//
// fallocate alone would not do: its unwritten extents still need a
// metadata change on first write. The zeros must be written.
//
// The file size is then no longer the end of the log: segment.size is the
// logical end (the bytes of batches), segment.fileEnd the physical one.
// Roll and Close cut the file back to its logical end, so a sealed segment
// and a cleanly closed one never hold zeros; after a crash, recovery ends
// the log at the first batch header of zeros when everything after it is
// zeros too and the file ends on a preallocAlign boundary, and cuts the
// zeros quietly: they are preallocated space, not a torn batch.

const (
	// preallocAlign is the boundary a preallocated file ends on; a file of
	// another size never holds preallocated zeros, so a zero tail there is
	// what a crash left of a batch. Part of the on-disk format.
	preallocAlign = 4096
	// preallocChunk is how many zeros one hold of writeMu writes, so that
	// an extension delays a concurrent append by well under a millisecond.
	preallocChunk = 256 << 10
	// preallocWarmup: a partition preallocates once it has written
	// PreallocateBytes/preallocWarmup into its active segment (or into the
	// one before, counted at roll), so that small partitions, of which a
	// survey may hold hundreds, take no space ahead.
	preallocWarmup = 16
)

// preallocWantLocked says how far the active segment s should be extended:
// from its physical end to "to", when it is warm (written enough) and less
// than half its allowance is left ahead of the writer. The allowance grows
// with what the partition writes: min(PreallocateBytes, bytes written into
// this segment and the one before). The caller holds writeMu or mu.
func (l *Log) preallocWantLocked(s *segment) (to int64, ok bool) {
	most := l.cfg.PreallocateBytes
	if most <= 0 || s.noPrealloc {
		return 0, false
	}
	warm := min(s.size+l.preallocCarry, most)
	if warm < most/preallocWarmup || s.fileEnd-s.size >= warm/2 {
		return 0, false
	}
	to = min(s.size+warm, l.cfg.SegmentBytes) &^ (preallocAlign - 1)
	return to, to > s.fileEnd
}

// preallocate extends the active segment with zeros, a chunk per hold of
// writeMu (the writer writes at segment.size, at most at fileEnd, and the
// zeros go at fileEnd, so they never cover a batch), then makes them
// durable: written back first without the journal, then fdatasynced, so
// that a concurrent append's fdatasync waits for the size commit only. A
// write that fails (a full disk) is undone and preallocation stops for the
// segment; a failed fsync is sticky, as any fsync of a segment is.
func (l *Log) preallocate() {
	defer l.wg.Done()
	defer func() {
		l.mu.Lock()
		l.extending = false
		l.mu.Unlock()
	}()
	var (
		s        *segment
		from, to int64
		zeros    []byte
	)
	for {
		l.writeMu.Lock()
		l.mu.RLock()
		cur, stop := l.cur, l.closed || l.werr != nil
		l.mu.RUnlock()
		if stop || (s != nil && cur != s) {
			// Closed, failed or rolled: roll and Close cut the zeros.
			l.writeMu.Unlock()
			if s != nil {
				s.release()
			}
			return
		}
		if s == nil {
			var ok bool
			if to, ok = l.preallocWantLocked(cur); !ok {
				l.writeMu.Unlock()
				return
			}
			s, from = cur, cur.fileEnd
			s.acquire()
			zeros = make([]byte, min(preallocChunk, to-from))
		}
		at := s.fileEnd
		if at >= to {
			l.writeMu.Unlock()
			break
		}
		n := min(to-at, int64(len(zeros)))
		if _, err := s.log.WriteAt(zeros[:n], at); err != nil {
			// Cut what was written: the space is wanted elsewhere, and
			// the next write of a batch fails on its own if it must.
			terr := s.log.Truncate(at)
			l.mu.Lock()
			s.noPrealloc = true
			l.mu.Unlock()
			l.writeMu.Unlock()
			s.release()
			if terr != nil {
				l.fail(fmt.Errorf("preallocate segment %d: %w; undo: %w", s.base, err, terr))
				return
			}
			l.lg.Warn("preallocation stopped for this segment", zap.Int64("segment", s.base), zap.Error(err))
			return
		}
		l.mu.Lock()
		s.fileEnd = at + n
		l.mu.Unlock()
		l.writeMu.Unlock()
	}
	defer s.release()
	writeBack(s.log, from, to-from)
	if err := s.log.Sync(); err != nil {
		l.fail(fmt.Errorf("sync preallocated segment %d: %w", s.base, err))
	}
}

// trimPreallocLocked cuts the zeros after the logical end of s off its
// file (roll, Close); the caller fsyncs. The caller holds writeMu.
func (l *Log) trimPreallocLocked(s *segment) error {
	l.mu.RLock()
	size, end := s.size, s.fileEnd
	l.mu.RUnlock()
	if end <= size {
		return nil
	}
	if err := s.log.Truncate(size); err != nil {
		return fmt.Errorf("trim preallocated segment %d: %w", s.base, err)
	}
	l.mu.Lock()
	s.fileEnd = size
	l.mu.Unlock()
	return nil
}

// Preallocated is the number of zero bytes written ahead of the writer in
// the active segment: disk space taken and not yet holding data.
func (l *Log) Preallocated() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.cur == nil {
		return 0
	}
	return l.cur.fileEnd - l.cur.size
}

// writeBack starts and waits for the write-back of [off, off+n) of f
// where the file system can do that without a metadata commit
// (sync_file_range on Linux); elsewhere it does nothing. Best effort: the
// fsync that follows is the one that counts.
func writeBack(f File, off, n int64) {
	if x, ok := f.(*segFile); ok {
		g, err := x.pin()
		if err != nil {
			return
		}
		defer x.unpin()
		f = g
	}
	if o, ok := f.(osFile); ok {
		syncRange(o.File, off, n)
	}
}

// zeroTail says whether [pos, size) of the active segment f is
// preallocated space: all zeros, in a file that ends on a preallocAlign
// boundary. A zero tail of another length is what a crash left of a batch
// (a size committed before its data). end is where the non-zero bytes of
// the tail end (pos when there are none).
func zeroTail(f File, pos, size int64) (prealloc bool, end int64, err error) {
	buf := make([]byte, min(1<<20, max(size-pos, 0)))
	end = pos
	for at := pos; at < size; {
		n := min(int64(len(buf)), size-at)
		k, err := f.ReadAt(buf[:n], at)
		if int64(k) < n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return false, 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				end = at + i + 1
				break
			}
		}
		at += n
	}
	return end == pos && size > pos && size%preallocAlign == 0, end, nil
}

// startPreallocLocked starts an extension of the active segment when one
// is due and none is running. The caller holds writeMu and mu.
func (l *Log) startPreallocLocked() {
	if l.extending || l.closed || l.werr != nil {
		return
	}
	if _, ok := l.preallocWantLocked(l.cur); !ok {
		return
	}
	l.extending = true
	l.wg.Add(1)
	go l.preallocate()
}
