package log

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/durable"
)

// logStartFile holds the log start offset set by DeleteRecords when it
// falls inside a segment: offset int64 | crc32c uint32 of the offset.
const logStartFile = "log-start-offset"

// recover opens every segment: sealed ones by their index tails (O(1)
// each, no file left open), the active one from the clean-shutdown marker
// or, after a crash, by scanning after its last good index entry.
func (l *Log) recover() error {
	if err := l.finishSwaps(); err != nil {
		return err
	}
	names, err := l.fs.ReadDir(l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		err = makeDirDurable(l.fs, l.dir)
	}
	if err != nil {
		return fmt.Errorf("open log dir: %w", err)
	}
	var bases []int64
	have := map[string]bool{}
	for _, name := range names {
		have[name] = true
		if base, ok := parseSegmentName(name); ok {
			bases = append(bases, base)
		}
	}
	// Indexes without their .log below the first segment are what a crash
	// in the middle of retention leaves; above it, a .log went missing.
	if err := l.checkOrphans(names, bases, have); err != nil {
		return err
	}
	// dirty: names were created or removed here, so the folder needs a
	// sync before the log takes a write.
	dirty := false
	for _, name := range names {
		stem, _, _ := strings.Cut(name, ".")
		orphan := (strings.HasSuffix(name, indexSuffix) || strings.HasSuffix(name, timeIndexSuffix)) && !have[stem+logSuffix]
		if strings.HasSuffix(name, deletedSuffix) || strings.HasSuffix(name, tmpSuffix) || orphan {
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil {
				return fmt.Errorf("remove leftover %s: %w", name, err)
			}
			dirty = true
		}
	}
	logStart, err := readLogStart(l.fs, l.dir)
	if err != nil {
		return err
	}
	clean, cleanOK, err := readCleanShutdown(l.fs, l.dir)
	if err != nil {
		l.lg.Warn("ignoring clean-shutdown marker; recovering the tail as after a crash", zap.Error(err))
	}
	for i, base := range bases {
		_, idxPath, tidxPath := segmentPaths(l.dir, base)
		if !have[filepath.Base(idxPath)] || !have[filepath.Base(tidxPath)] {
			dirty = true // openSegmentFiles creates the missing index
		}
		s, err := l.openSegment(base, i < len(bases)-1)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
		if i < len(bases)-1 {
			err = l.loadSealed(s, bases[i+1])
		} else {
			err = l.openActive(s, clean, cleanOK)
		}
		if err != nil {
			return err
		}
	}
	if len(l.segs) == 0 {
		s, err := createSegment(l.fs, l.opts.FileCache, l.dir, logStart, l.cfg.IndexIntervalBytes)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
		l.written = logStart
		dirty = true
	}
	if dirty {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("sync dir: %w", err)
		}
	}
	l.logStart = min(max(logStart, l.segs[0].base), l.written)
	// The marker vouches only for files as Close left them: it must be
	// gone for good before the first write.
	if have[cleanShutdownFile] {
		return removeCleanShutdown(l.fs, l.dir)
	}
	return nil
}

// makeDirDurable creates dir and any missing parents, syncing the folder
// above each one it creates: a new folder's name is durable only once its
// parent is synced, and a crash would otherwise take it with every segment
// synced inside.
func makeDirDurable(fsys FS, dir string) error {
	var missing []string // deepest first
	for d := filepath.Clean(dir); d != filepath.Dir(d); d = filepath.Dir(d) {
		_, err := fsys.ReadDir(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range missing {
		if err := fsys.SyncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("sync dir: %w", err)
		}
	}
	return nil
}

// checkOrphans fails Open when a segment's .log is missing while its
// .index or .timeindex remains above the first segment (or with no segment
// at all: retention never removes the active one). Below the first
// segment they are retention's leftovers, removed by recover.
func (l *Log) checkOrphans(names []string, bases []int64, have map[string]bool) error {
	gone := int64(-1)
	for _, name := range names {
		stem, suffix, _ := strings.Cut(name, ".")
		if suffix != indexSuffix[1:] && suffix != timeIndexSuffix[1:] {
			continue
		}
		base, ok := parseSegmentName(stem + logSuffix)
		if !ok || have[stem+logSuffix] || (len(bases) > 0 && base < bases[0]) {
			continue
		}
		if gone < 0 || base < gone {
			gone = base
		}
	}
	if gone < 0 {
		return nil
	}
	to := int64(-1)
	for _, b := range bases {
		if b > gone {
			to = b - 1
			break
		}
	}
	logPath, _, _ := segmentPaths(l.dir, gone)
	return l.damaged(missingOffsets(logPath, -1, gone, to, "segment file missing, its indexes remain"))
}

// damaged logs the offsets a damaged partition lost and returns ce, which
// fails Open: the broker takes the partition offline rather than serve
// around the hole.
func (l *Log) damaged(ce *CorruptionError) error {
	l.lg.Error("partition damaged: offsets missing", zap.String("segment", ce.Segment),
		zap.Int64("position", ce.Offset), zap.Error(ce))
	return ce
}

// loadSealed checks a sealed segment whose successor starts at next
// against it (checkSealedTail: the ends of its files only) and takes its
// max timestamp from the seal entry. Indexes that disagree are rebuilt
// from the batches; offsets the segment should hold and does not (empty,
// cut short, or a segment missing after it) fail Open with a
// *CorruptionError, before any file is written. The rest of the indexes is
// checked when first used (Log.checkIndexes).
func (l *Log) loadSealed(s *segment, next int64) error {
	if s.size == 0 {
		return l.damaged(missingOffsets(s.path, 0, s.base, next-1, "sealed segment empty"))
	}
	end, err := checkSealedTail(s, next)
	rebuilt := false
	switch {
	case errors.Is(err, errIndex):
		l.lg.Warn("rebuilding segment indexes", zap.String("segment", s.path), zap.Error(err))
		sc, err := l.scanIndexes(s)
		if err != nil {
			return err
		}
		switch {
		case sc.res.err != nil && cutByEnd(s, sc.res.end):
			return l.damaged(missingOffsets(s.path, sc.res.end, sc.res.next, next-1, "sealed segment cut short inside a batch"))
		case sc.res.err != nil:
			end = next // damage inside: its end cannot be known; reads report it
		default:
			end = sc.res.next
		}
		if end == next {
			if err := l.writeIndexes(s, sc); err != nil {
				return err
			}
			rebuilt = true
		}
	case err != nil:
		return fmt.Errorf("open segment %d: %w", s.base, err)
	}
	if end != next {
		if end > next {
			return l.damaged(&CorruptionError{Segment: s.path, Offset: s.size,
				Err: fmt.Errorf("%w: segment ends at offset %d, past the next segment's base %d", errBadOffset, end, next)})
		}
		why := fmt.Sprintf("segment file missing, or %s cut short: it ends at offset %d", s.path, end-1)
		missing, _, _ := segmentPaths(l.dir, end)
		return l.damaged(missingOffsets(missing, -1, end, next-1, why))
	}
	b, err := s.tidx.entry(s.tidx.len() - 1)
	if err != nil {
		return err
	}
	seal := decodeTimeEntry(b)
	s.maxTs, s.maxTsOffset, s.next = seal.Timestamp, s.base+int64(seal.Rel), next
	s.idxUnchecked.Store(!rebuilt)
	return nil
}

// cutByEnd says whether the frame at pos runs past the end of s: the
// segment was cut short there (or its length field is damaged, which
// hides the rest of the segment just as well).
func cutByEnd(s *segment, pos int64) bool {
	if s.size-pos < batchHeaderSize {
		return true
	}
	h, err := newHeaderReader(s.log).header(pos, s.size)
	return (err == nil || errors.Is(err, errBatchLength)) && pos+h.Size > s.size
}

// checkIndexes checks the indexes of a sealed segment found at Open in
// full (checkIndexEntries) before their first use, once, and rebuilds them
// from the segment when they disagree with it: an index read as truth
// where it is wrong makes a time lookup skip records. A failure to read
// them (EMFILE) fails this call only; the next one checks again.
func (l *Log) checkIndexes(s *segment) error {
	if !s.idxUnchecked.Load() {
		return nil
	}
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	if !s.idxUnchecked.Load() {
		return nil
	}
	err := checkIndexEntries(s, s.next)
	if err != nil && !errors.Is(err, errIndex) {
		return err
	}
	if err != nil {
		l.lg.Warn("rebuilding segment indexes", zap.String("segment", s.path), zap.Error(err))
		sc, err := l.scanIndexes(s)
		if err != nil {
			return err
		}
		if err := l.writeIndexes(s, sc); err != nil {
			return err
		}
	}
	s.idxUnchecked.Store(false)
	return nil
}

// scanResult is what a walk over stored batches found.
type scanResult struct {
	end     int64 // position after the last good batch
	next    int64 // offset after the last good batch
	batches int
	err     error // why the walk stopped before the limit (nil at the limit)
}

// scanBatches walks the batches of f from pos to limit, checking CRCs
// when verify is set, and calls fn for each good one. It stops at the
// first bad frame.
func scanBatches(f File, pos, limit, expect int64, maxEpoch int32, verify bool, fn func(h batchHeader, pos int64) error) scanResult {
	r := newHeaderReader(f)
	var buf []byte
	res := scanResult{end: pos, next: expect}
	for res.end < limit {
		h, err := r.header(res.end, limit)
		if err == nil && h.BaseOffset != res.next {
			err = errBadOffset
		}
		if err == nil && res.end+h.Size > limit {
			err = errBatchLength
		}
		if err == nil && verify {
			if int64(cap(buf)) < h.Size {
				buf = make([]byte, h.Size)
			}
			buf = buf[:h.Size]
			if err = readFull(f, buf, res.end); err == nil {
				_, err = checkStoredBatch(buf, res.next, maxEpoch)
			}
		}
		if err == nil && fn != nil {
			err = fn(h, res.end)
		}
		if err != nil {
			res.err = err
			return res
		}
		res.end += h.Size
		res.next = h.nextOffset()
		res.batches++
	}
	return res
}

// recoverActive finds the last index entry whose batch is intact, rescans
// from there with CRC checks, truncates a torn tail and re-adds index
// entries for what it scanned. Only the unsynced tail is read.
func (l *Log) recoverActive(s *segment) error {
	n := min(s.idx.len(), s.tidx.len())
	for k := n - 1; k >= -1; k-- {
		pos, expect, runMax := int64(0), s.base, int64(-1)
		if k >= 0 {
			ob, err := s.idx.entry(k)
			if err != nil {
				return err
			}
			tb, err := s.tidx.entry(k)
			if err != nil {
				return err
			}
			oe, te := decodeOffsetEntry(ob), decodeTimeEntry(tb)
			if int64(oe.Pos) >= s.size || te.Rel < oe.Rel {
				continue
			}
			pos, expect, runMax = int64(oe.Pos), s.base+int64(oe.Rel), te.Timestamp
		}
		// Probe the first batch before touching the indexes.
		if k >= 0 {
			wantLast := s.base + int64(decodeTimeEntryRel(s, k))
			probe := func(h batchHeader, _ int64) error {
				if h.lastOffset() != wantLast {
					return errBadOffset // the time index entry is for another batch
				}
				return errStop
			}
			if res := scanBatches(s.log, pos, min(s.size, pos+maxBatchSize), expect, l.cfg.LeaderEpoch, true, probe); res.err != errStop {
				continue
			}
		}
		if err := s.idx.truncate(max(k, 0)); err != nil {
			return err
		}
		if err := s.tidx.truncate(max(k, 0)); err != nil {
			return err
		}
		s.maxTs, s.maxTsOffset, s.bytesSinceIndex = runMax, -1, l.cfg.IndexIntervalBytes
		res := scanBatches(s.log, pos, s.size, expect, l.cfg.LeaderEpoch, true, func(h batchHeader, at int64) error {
			if h.MaxTimestamp > s.maxTs {
				s.maxTs, s.maxTsOffset = h.MaxTimestamp, h.lastOffset()
			}
			return s.addIndexEntries(h, at, l.cfg.IndexIntervalBytes)
		})
		if res.err != nil && !isCorruption(res.err) {
			return fmt.Errorf("recover segment %d: %w", s.base, res.err)
		}
		if res.end < s.size {
			// Zeros after the last batch, to a preallocAlign boundary,
			// are preallocated space (prealloc.go): cut quietly. Any
			// other byte there is a torn batch, even one followed by
			// zeros, and is counted.
			prealloc, nonZero, err := zeroTail(s.log, res.end, s.size)
			if err != nil {
				return fmt.Errorf("recover segment %d: %w", s.base, err)
			}
			if !prealloc {
				lost := s.size - res.end
				if s.size%preallocAlign == 0 {
					lost = nonZero - res.end // the zeros after may be preallocated
				}
				l.lg.Warn("truncating torn segment tail", zap.String("segment", s.path),
					zap.Int64("position", res.end), zap.Int64("bytes_lost", lost), zap.NamedError("reason", res.err))
				if m := l.opts.Metrics; m != nil {
					m.RecoveryTruncations.Inc()
					m.RecoveryBytesLost.Add(float64(lost))
				}
			}
			if err := s.log.Truncate(res.end); err != nil {
				return fmt.Errorf("truncate segment %d: %w", s.base, err)
			}
			s.size = res.end
			if err := s.syncAll(); err != nil {
				return err
			}
		}
		l.written = res.next
		break
	}
	s.fileEnd = s.size
	if s.size > 0 {
		h, err := newHeaderReader(s.log).header(0, s.size)
		if err != nil {
			return s.corruption(0, err)
		}
		s.firstTs, s.created = h.MaxTimestamp, l.opts.Now()
		if s.maxTsOffset < 0 {
			// The max came from before the scan: find its first batch.
			_, h, ok, err := s.findTime(s.maxTs, s.size)
			if err != nil || !ok {
				return fmt.Errorf("recover segment %d max timestamp: %w", s.base, errors.Join(err, errBadOffset))
			}
			s.maxTsOffset = h.lastOffset()
		}
	}
	return nil
}

var errStop = errors.New("stop")

// decodeTimeEntryRel is the relOffset of time index entry k (read before).
func decodeTimeEntryRel(s *segment, k int) uint32 {
	b, err := s.tidx.entry(k)
	if err != nil {
		return 0
	}
	return decodeTimeEntry(b).Rel
}

// isCorruption says whether a scan stopped on bad bytes rather than on an
// I/O error.
func isCorruption(err error) bool {
	var me *MagicError
	return errors.As(err, &me) || errors.Is(err, errCRC) || errors.Is(err, errShortBatch) ||
		errors.Is(err, errBatchLength) || errors.Is(err, errBadOffset) || errors.Is(err, errBadEpoch) ||
		errors.Is(err, errBadDelta)
}

// indexScan is what a walk over a segment's batches (headers only)
// gives to rebuild its indexes.
type indexScan struct {
	idx, tidx          []byte // the entries, the seal entry included
	maxTs, maxTsOffset int64
	res                scanResult
}

// scanIndexes walks the batches of sealed segment s (headers only: sealed
// data is CRC-checked when read) and builds its indexes with the seal
// entry. A walk that stops on bad bytes is in res.err; an I/O failure is
// returned.
func (l *Log) scanIndexes(s *segment) (indexScan, error) {
	sc := indexScan{maxTs: -1, maxTsOffset: -1}
	since := l.cfg.IndexIntervalBytes
	sc.res = scanBatches(s.log, 0, s.size, s.base, l.cfg.LeaderEpoch, false, func(h batchHeader, at int64) error {
		if sc.maxTsOffset < 0 || h.MaxTimestamp > sc.maxTs {
			sc.maxTs, sc.maxTsOffset = h.MaxTimestamp, h.lastOffset()
		}
		if since >= l.cfg.IndexIntervalBytes {
			sc.idx = append(sc.idx, encodeOffsetEntry(offsetEntry{Rel: uint32(h.BaseOffset - s.base), Pos: uint32(at)})...)
			sc.tidx = append(sc.tidx, encodeTimeEntry(timeEntry{Timestamp: sc.maxTs, Rel: uint32(h.lastOffset() - s.base)})...)
			since = 0
		}
		since += int(h.Size)
		return nil
	})
	if sc.res.err != nil && !isCorruption(sc.res.err) {
		return sc, fmt.Errorf("rebuild indexes of segment %d: %w", s.base, sc.res.err)
	}
	seal := sc.maxTsOffset
	if sc.res.batches == 0 {
		seal = s.base
	}
	sc.tidx = append(sc.tidx, encodeTimeEntry(timeEntry{Timestamp: sc.maxTs, Rel: uint32(seal - s.base)})...)
	return sc, nil
}

// writeIndexes replaces both indexes of sealed segment s with the ones sc
// built, durably, in place: readers keep their *index.
func (l *Log) writeIndexes(s *segment, sc indexScan) error {
	if sc.res.err != nil {
		l.lg.Error("segment damaged; indexes cover the batches before the damage",
			zap.String("segment", s.path), zap.Int64("position", sc.res.end), zap.Error(sc.res.err))
	}
	if err := l.replaceIndex(s.idx, sc.idx); err != nil {
		return err
	}
	return l.replaceIndex(s.tidx, sc.tidx)
}

// replaceIndex writes entries as x's file, durably, and points x at it.
func (l *Log) replaceIndex(x *index, entries []byte) error {
	if err := durable.WriteFile(l.fs, x.path, entries, 0o644); err != nil {
		return fmt.Errorf("rebuild index: %w", err)
	}
	return x.reopen(l.fs, len(entries)/x.entrySize)
}

func readLogStart(fsys FS, dir string) (int64, error) {
	v, err := readInt64sFile(fsys, filepath.Join(dir, logStartFile), 1)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// writeLogStart persists the log start offset atomically: temp file,
// fsync, rename, fsync the directory.
func writeLogStart(fsys FS, dir string, off int64) error {
	return writeInt64sFile(fsys, filepath.Join(dir, logStartFile), off)
}
