package log

import (
	"fmt"
	"io"
	"time"

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
	// preallocChunk is how many zeros are written, and written back, at a
	// time: an append's fdatasync during an extension waits for one chunk
	// of zeros at most.
	preallocChunk = 256 << 10
	// preallocMaxSyncBytes: a partition whose fsyncs make this many
	// bytes durable on average (large batches, or many producers sharing
	// each fsync) does not preallocate: the metadata commit is a small
	// part of such an fsync, and the zeros would double the bytes the
	// disk writes. Measured on ext4 (BenchmarkDurableAppend): a gain at
	// 16 and 64 KiB per fsync, none at 256 KiB (and longer tails).
	preallocMaxSyncBytes = 128 << 10
	// preallocWarmup: a partition preallocates once it has written
	// PreallocateBytes/preallocWarmup in the last one or two
	// preallocRateWindow (512 KiB by default: about 36 KB/s sustained),
	// so that slow partitions, of which a survey may hold hundreds, take
	// no space ahead however long their segments live; a busy one takes
	// what it writes in that time, up to PreallocateBytes.
	preallocWarmup     = 16
	preallocRateWindow = 10 * time.Second
)

// preallocWantLocked says how far the active segment s should be extended:
// from its physical end to "to", when it is warm (written enough) and less
// than half its allowance is left ahead of the writer. The allowance
// follows the partition's write rate: min(PreallocateBytes, bytes written
// in the last 10-20 s). Only while its fsyncs are small
// (preallocMaxSyncBytes). The caller holds mu.
func (l *Log) preallocWantLocked(s *segment) (to int64, ok bool) {
	most := l.cfg.PreallocateBytes
	if most <= 0 || s.noPrealloc || l.syncBytes >= preallocMaxSyncBytes {
		return 0, false
	}
	warm := min(l.ratePrev+l.rateCur, most)
	if warm < most/preallocWarmup || s.fileEnd-s.size >= warm/2 {
		return 0, false
	}
	to = min(s.size+warm, l.cfg.SegmentBytes) &^ (preallocAlign - 1)
	return to, to > s.fileEnd
}

// preallocate writes zeros over [from, to) of the active segment s, the
// range startPreallocLocked reserved: the writer stays below from until
// done is closed (if it gets there first, it stops the extension at the
// end of its chunk and waits for that only), so the zeros never cover a
// batch and no lock is held while they are written. Each chunk is written
// back at once (sync_file_range), so that an append's fdatasync meanwhile
// waits for one chunk at most, and one fdatasync at the end commits the
// new size and extents. A write that fails (a full disk) is undone and
// preallocation stops for the segment; a failed fsync is sticky, as any
// fsync of a segment is. Close stops it between chunks.
func (l *Log) preallocate(s *segment, from, to int64, done chan struct{}) {
	defer l.wg.Done()
	defer s.release()
	end, err := writeZeros(s.log, from, to, func() bool {
		l.mu.RLock()
		defer l.mu.RUnlock()
		return l.closed || s.fillStop
	})
	var serr error
	l.mu.Lock()
	if err != nil {
		// Cut what was written: the space is wanted elsewhere, and the
		// next write of a batch fails on its own if it must. The
		// writer is below from.
		if terr := s.log.Truncate(from); terr != nil {
			serr = fmt.Errorf("%w; undo: %w", err, terr)
		}
		s.noPrealloc = true
		end = from
		s.holeEnd = min(s.holeEnd, from)
	}
	s.fileEnd = max(s.fileEnd, end)
	s.fill, s.fillStop = nil, false
	closed := l.closed
	l.mu.Unlock()
	close(done)
	if serr == nil && err == nil && end > from && !closed {
		// The writer may write into the zeros already: this fsync
		// makes them durable with whatever it wrote; Close waits for it.
		serr = s.log.Sync()
	}
	switch {
	case serr != nil:
		l.fail(fmt.Errorf("preallocate segment %d: %w", s.base, serr))
	case err != nil:
		l.lg.Warn("preallocation stopped for this segment", zap.Int64("segment", s.base), zap.Error(err))
	}
}

// waitPreallocLocked stops a running extension of s at the end of its
// chunk and waits for it: the writer needs the reserved range, or the file
// is about to be cut or replaced. The caller holds writeMu (so no other
// extension starts).
func (l *Log) waitPreallocLocked(s *segment) {
	l.mu.Lock()
	done := s.fill
	if done != nil {
		s.fillStop = true
		if s.warmAbort != nil {
			close(s.warmAbort) // a warm may be waiting for a quiet moment
			s.warmAbort = nil
		}
	}
	l.mu.Unlock()
	if done != nil {
		<-done
	}
}

// writeZeros writes zeros over [from, to) of f, a chunk at a time, each
// written back before the next (where the file system can: syncRange),
// and returns where it got to: to, or less when stop said so first.
func writeZeros(f File, from, to int64, stop func() bool) (int64, error) {
	if x, ok := f.(*segFile); ok {
		g, err := x.pin()
		if err != nil {
			return from, err
		}
		defer x.unpin()
		f = g
	}
	o, _ := f.(osFile)
	zeros := make([]byte, min(preallocChunk, to-from))
	at := from
	for at < to {
		if stop() {
			return at, nil
		}
		n := min(to-at, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:n], at); err != nil {
			return at, err
		}
		if o.File != nil {
			syncRange(o.File, at, n)
		}
		at += n
	}
	return at, nil
}

// trimPreallocLocked cuts the zeros after the logical end of s off its
// file (roll, Close), once a running extension is done; the caller
// fsyncs. The caller holds writeMu.
func (l *Log) trimPreallocLocked(s *segment) error {
	l.waitPreallocLocked(s)
	l.mu.RLock()
	size, end := s.size, max(s.fileEnd, s.holeEnd)
	l.mu.RUnlock()
	if end <= size {
		return nil
	}
	if err := s.log.Truncate(size); err != nil {
		return fmt.Errorf("trim preallocated segment %d: %w", s.base, err)
	}
	l.mu.Lock()
	s.fileEnd, s.holeEnd = size, size
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
// is due and none is running, reserving [fileEnd, to) for its zeros. The
// caller holds writeMu and mu.
func (l *Log) startPreallocLocked() {
	s := l.cur
	if s.fill != nil || l.closed || l.werr != nil || l.cfg.Flush != FlushAlways || l.journaling {
		return
	}
	to, ok := l.preallocWantLocked(s)
	if !ok {
		return
	}
	// With nothing ahead (the first extension of a segment, or a writer
	// that outran the last one) the zeros start a chunk past the end, so
	// that the writer appends meanwhile instead of waiting for them (up
	// to a quarter of the extension): the gap is a hole, which reads as
	// zeros too.
	from := s.fileEnd
	if room := min(preallocChunk, (to-s.size)/4); from-s.size < room {
		from = (s.size + room + preallocAlign - 1) &^ (preallocAlign - 1)
	}
	if from >= to {
		return
	}
	s.fill, s.fillFrom = make(chan struct{}), from
	s.acquire()
	l.wg.Add(1)
	go l.preallocate(s, from, to, s.fill)
}

// noteWrittenLocked counts n bytes just written into the write rate that
// sizes preallocation. The caller holds mu.
func (l *Log) noteWrittenLocked(n int64) {
	if now := l.opts.Now(); now.Sub(l.rateStart) >= preallocRateWindow {
		l.ratePrev = l.rateCur
		if now.Sub(l.rateStart) >= 2*preallocRateWindow {
			l.ratePrev = 0
		}
		l.rateCur, l.rateStart = 0, now
	}
	l.rateCur += n
}
