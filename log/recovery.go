package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
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
			err = l.loadSealed(s, bases[i+1], i == len(bases)-2)
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

// loadSealed takes a sealed segment's max timestamp from its time index's
// seal entry after cheap sanity checks of both indexes (of the sizes and
// the seal entry only, unless newest: the one sealed last); an index that
// fails them is rebuilt from the segment.
func (l *Log) loadSealed(s *segment, next int64, newest bool) error {
	check := checkSealedIndexes
	if !newest {
		check = checkSealEntry
	}
	if err := check(s, next); err != nil {
		l.lg.Warn("rebuilding segment indexes", zap.String("segment", s.path), zap.Error(err))
		if err := l.rebuildIndexes(s, true); err != nil {
			return err
		}
	}
	b, err := s.tidx.entry(s.tidx.len() - 1)
	if err != nil {
		return err
	}
	seal := decodeTimeEntry(b)
	s.maxTs, s.maxTsOffset = seal.Timestamp, s.base+int64(seal.Rel)
	if s.size == 0 {
		s.maxTs, s.maxTsOffset = -1, -1
	}
	return nil
}

func checkSealedIndexes(s *segment, next int64) error {
	idxBytes, tidxBytes, err := s.indexFileBytes()
	if err != nil {
		return err
	}
	span := next - s.base
	switch {
	case s.size == 0 || span <= 0:
		return errors.New("empty sealed segment")
	case idxBytes%offsetEntrySize != 0 || idxBytes == 0:
		return fmt.Errorf("offset index of %d bytes", idxBytes)
	case tidxBytes%timeEntrySize != 0 || tidxBytes == 0:
		return fmt.Errorf("time index of %d bytes", tidxBytes)
	}
	first, err := s.idx.entry(0)
	if err != nil {
		return err
	}
	last, err := s.idx.entry(s.idx.len() - 1)
	if err != nil {
		return err
	}
	f, e := decodeOffsetEntry(first), decodeOffsetEntry(last)
	if f.Rel != 0 || f.Pos != 0 || int64(e.Rel) >= span || int64(e.Pos) >= s.size || e.Rel < f.Rel || e.Pos < f.Pos {
		return errors.New("offset index entries out of range")
	}
	b, err := s.tidx.entry(s.tidx.len() - 1)
	if err != nil {
		return err
	}
	if seal := decodeTimeEntry(b); int64(seal.Rel) >= span {
		return errors.New("time index seal entry out of range")
	}
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
			lost := s.size - res.end
			l.lg.Warn("truncating torn segment tail", zap.String("segment", s.path),
				zap.Int64("position", res.end), zap.Int64("bytes_lost", lost), zap.NamedError("reason", res.err))
			if m := l.opts.Metrics; m != nil {
				m.RecoveryTruncations.Inc()
				m.RecoveryBytesLost.Add(float64(lost))
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

// rebuildIndexes rewrites both indexes of s from its batches (headers
// only: sealed data is CRC-checked when read), through temporary files
// renamed into place. A sealed segment gets its seal entry.
func (l *Log) rebuildIndexes(s *segment, sealed bool) error {
	var idx, tidx []byte
	maxTs, maxTsOffset, since := int64(-1), int64(-1), l.cfg.IndexIntervalBytes
	res := scanBatches(s.log, 0, s.size, s.base, l.cfg.LeaderEpoch, false, func(h batchHeader, at int64) error {
		if maxTsOffset < 0 || h.MaxTimestamp > maxTs {
			maxTs, maxTsOffset = h.MaxTimestamp, h.lastOffset()
		}
		if since >= l.cfg.IndexIntervalBytes {
			idx = append(idx, encodeOffsetEntry(offsetEntry{Rel: uint32(h.BaseOffset - s.base), Pos: uint32(at)})...)
			tidx = append(tidx, encodeTimeEntry(timeEntry{Timestamp: maxTs, Rel: uint32(h.lastOffset() - s.base)})...)
			since = 0
		}
		since += int(h.Size)
		return nil
	})
	if res.err != nil {
		l.lg.Error("segment damaged; indexes cover the batches before the damage",
			zap.String("segment", s.path), zap.Int64("position", res.end), zap.Error(res.err))
	}
	if res.batches == 0 {
		maxTsOffset = s.base
	}
	if sealed {
		tidx = append(tidx, encodeTimeEntry(timeEntry{Timestamp: maxTs, Rel: uint32(maxTsOffset - s.base)})...)
	}
	for _, x := range []**index{&s.idx, &s.tidx} {
		entries := idx
		if *x == s.tidx {
			entries = tidx
		}
		next, err := l.replaceIndex(*x, entries)
		if err != nil {
			return err // *x stays open, for the caller's release
		}
		*x = next
	}
	return nil
}

// replaceIndex writes entries as old's file, durably, and returns the new
// index in place of old, which it closes.
func (l *Log) replaceIndex(old *index, entries []byte) (*index, error) {
	if err := durable.WriteFile(l.fs, old.path, entries, 0o644); err != nil {
		return nil, fmt.Errorf("rebuild index: %w", err)
	}
	return old.reopen(l.fs, len(entries)/old.entrySize)
}

func readLogStart(fsys FS, dir string) (int64, error) {
	f, err := fsys.OpenFile(filepath.Join(dir, logStartFile), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read log start offset: %w", err)
	}
	defer f.Close()
	var b [12]byte
	if err := readFull(f, b[:], 0); err != nil {
		return 0, &CorruptionError{Segment: filepath.Join(dir, logStartFile), Err: err}
	}
	if crc32.Checksum(b[:8], castagnoli) != binary.BigEndian.Uint32(b[8:]) {
		return 0, &CorruptionError{Segment: filepath.Join(dir, logStartFile), Err: errCRC}
	}
	return int64(binary.BigEndian.Uint64(b[:8])), nil
}

// writeLogStart persists the log start offset atomically: temp file,
// fsync, rename, fsync the directory.
func writeLogStart(fsys FS, dir string, off int64) error {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(off))
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	return durable.WriteFile(fsys, filepath.Join(dir, logStartFile), b[:], 0o644)
}
