package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/durable"
)

// swapIn puts the cleaned segment in place of group, crash-safely:
//
//  1. rename its .index and .timeindex .cleaned files to .swap, then its
//     .log.cleaned to .log.swap, and fsync the folder: the commit;
//  2. rename the files of every segment of the group to .deleted (readers
//     still holding them go on reading there) and fsync the folder;
//  3. rename the .swap files to their names, the .log last, and fsync.
//
// Open finishes a swap whose .log.swap it finds (finishSwaps).
func (l *Log) swapIn(group []*segment, base, end int64, sc indexScan, size int64) error {
	logPath, idxPath, tidxPath := segmentPaths(l.dir, base)
	l.retMu.Lock()
	defer l.retMu.Unlock()
	if !l.holdsRunLocked(group) {
		for _, q := range []string{idxPath, tidxPath, logPath} {
			l.fs.Remove(q + cleanedSuffix)
		}
		return errGroupGone
	}
	// Readers holding the old segments must never open a name again: the
	// new segment takes the first one's. Their files stay open, pinned,
	// until each segment's last reader is done.
	if err := pinForSwap(group); err != nil {
		for _, q := range []string{idxPath, tidxPath, logPath} {
			l.fs.Remove(q + cleanedSuffix)
		}
		return fmt.Errorf("clean segment %d: %w", base, err)
	}
	for _, q := range []string{idxPath, tidxPath, logPath} {
		if err := l.fs.Rename(q+cleanedSuffix, q+swapSuffix); err != nil {
			for _, r := range []string{idxPath, tidxPath, logPath} {
				l.fs.Remove(r + cleanedSuffix)
				l.fs.Remove(r + swapSuffix)
			}
			unpinForSwap(group)
			return fmt.Errorf("clean segment %d: %w", base, err)
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return l.fail(fmt.Errorf("clean segment %d: sync dir: %w", base, err))
	}
	// From here on the swap is committed: a failure is left for Open to
	// finish, and the log stops taking writes until then.
	var gone []string
	for _, s := range group {
		for _, q := range []string{s.path, s.idx.path, s.tidx.path} {
			if err := l.fs.Rename(q, q+deletedSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return l.fail(fmt.Errorf("clean segment %d: %w", base, err))
			}
			gone = append(gone, q+deletedSuffix)
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return l.fail(fmt.Errorf("clean segment %d: sync dir: %w", base, err))
	}
	for _, q := range []string{idxPath, tidxPath, logPath} {
		if err := l.fs.Rename(q+swapSuffix, q); err != nil {
			return l.fail(fmt.Errorf("clean segment %d: %w", base, err))
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return l.fail(fmt.Errorf("clean segment %d: sync dir: %w", base, err))
	}
	// The old files are read through their pinned descriptors from now
	// on; a crash before these removals leaves names Open removes.
	for _, q := range gone {
		l.fs.Remove(q)
	}
	s, err := l.openSegment(base, true)
	if err != nil {
		return l.fail(err)
	}
	s.maxTs, s.maxTsOffset, s.next = sc.maxTs, sc.maxTsOffset, end
	s.advanceVerified(0, size) // written and CRC'd by this process
	l.mu.Lock()
	i := 0
	for i < len(l.segs) && l.segs[i] != group[0] {
		i++
	}
	if l.closed || i+len(group) > len(l.segs) {
		l.mu.Unlock()
		s.release()
		return ErrClosed
	}
	segs := append(append(append([]*segment(nil), l.segs[:i]...), s), l.segs[i+len(group):]...)
	l.segs = segs
	l.mu.Unlock()
	for _, old := range group {
		old.release() // the list's reference
	}
	return nil
}

// errGroupGone: the segments a clean rewrote are no longer all in the log
// (retention, DeleteRecords, a reopen, a close), so its work is dropped.
var errGroupGone = errors.New("log: cleaned segments gone meanwhile")

// holdsRunLocked says whether group is still a run of the log's segments and
// the log takes writes; the caller holds retMu, which every change of the
// list but a roll's append holds.
func (l *Log) holdsRunLocked(group []*segment) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed || l.werr != nil {
		return false
	}
	i := slices.Index(l.segs, group[0])
	return i >= 0 && i+len(group) < len(l.segs) && slices.Equal(l.segs[i:i+len(group)], group)
}

// pinForSwap opens and pins the three files of every segment of group
// (swapPins); on failure it leaves none pinned.
func pinForSwap(group []*segment) error {
	for _, s := range group {
		for _, f := range []File{s.log, s.idx.f, s.tidx.f} {
			x, ok := f.(*segFile)
			if !ok {
				continue
			}
			if _, err := x.pin(); err != nil {
				unpinForSwap(group)
				return err
			}
			s.swapPins = append(s.swapPins, x)
		}
	}
	return nil
}

func unpinForSwap(group []*segment) {
	for _, s := range group {
		for _, x := range s.swapPins {
			x.unpin()
		}
		s.swapPins = nil
	}
}

// finishSwaps is the first step of Open: it removes `.cleaned` files (a
// clean that had not committed), completes every swap whose `.log.swap`
// is there (the segments it covers go, the `.swap` files take their
// names) and removes index `.swap` files left without one.
func (l *Log) finishSwaps() error {
	names, err := l.fs.ReadDir(l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open log dir: %w", err)
	}
	dirty := false
	var swaps []int64
	for _, name := range names {
		if strings.HasSuffix(name, cleanedSuffix) {
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil {
				return fmt.Errorf("remove leftover %s: %w", name, err)
			}
			dirty = true
		}
		if base, ok := parseSegmentName(strings.TrimSuffix(name, swapSuffix)); ok && strings.HasSuffix(name, swapSuffix) {
			swaps = append(swaps, base)
		}
	}
	done := map[string]bool{}
	for _, base := range swaps {
		logPath, idxPath, tidxPath := segmentPaths(l.dir, base)
		f, err := l.fs.OpenFile(logPath+swapSuffix, os.O_RDONLY, 0)
		if err != nil {
			return fmt.Errorf("finish clean of segment %d: %w", base, err)
		}
		size, err := f.Size()
		if err != nil {
			f.Close()
			return fmt.Errorf("finish clean of segment %d: %w", base, err)
		}
		res := scanBatches(f, 0, size, base, l.cfg.LeaderEpoch, true, nil)
		f.Close()
		if res.err != nil || res.batches == 0 {
			// Fsynced before its commit: this is the disk's damage.
			return l.damaged(&CorruptionError{Segment: logPath + swapSuffix, Offset: res.end, Err: errors.Join(res.err, errMissingOffsets)})
		}
		for _, name := range names {
			stem, suffix, _ := strings.Cut(name, ".")
			b, ok := parseSegmentName(stem + logSuffix)
			if !ok || b < base || b >= res.next || strings.HasSuffix(name, swapSuffix) {
				continue
			}
			if suffix == logSuffix[1:] || suffix == indexSuffix[1:] || suffix == timeIndexSuffix[1:] {
				if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("finish clean of segment %d: %w", base, err)
				}
			}
		}
		for _, q := range []string{idxPath, tidxPath, logPath} {
			err := l.fs.Rename(q+swapSuffix, q)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("finish clean of segment %d: %w", base, err)
			}
			done[filepath.Base(q)+swapSuffix] = true
		}
		l.lg.Warn("finished a clean interrupted by a crash", zap.String("segment", logPath), zap.Int64("next_offset", res.next))
		dirty = true
	}
	for _, name := range names {
		if strings.HasSuffix(name, swapSuffix) && !done[name] {
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove leftover %s: %w", name, err)
			}
			dirty = true
		}
	}
	if dirty {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("sync dir: %w", err)
		}
	}
	return nil
}

// readInt64sFile reads a small file of n int64s and the CRC32C u32 of
// their bytes (log-start-offset: 1, clean-offset: 2); a missing file reads
// as zeros.
func readInt64sFile(fsys FS, name string, n int) ([]int64, error) {
	out := make([]int64, n)
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Base(name), err)
	}
	defer f.Close()
	b := make([]byte, 8*n+4)
	if err := readFull(f, b, 0); err != nil {
		return nil, &CorruptionError{Segment: name, Err: err}
	}
	if crc32.Checksum(b[:8*n], castagnoli) != binary.BigEndian.Uint32(b[8*n:]) {
		return nil, &CorruptionError{Segment: name, Err: errCRC}
	}
	for i := range out {
		out[i] = int64(binary.BigEndian.Uint64(b[8*i:]))
	}
	return out, nil
}

// writeInt64sFile writes such a file durably: temp file, fsync, rename,
// fsync the folder.
func writeInt64sFile(fsys FS, name string, vals ...int64) error {
	b := make([]byte, 0, 8*len(vals)+4)
	for _, v := range vals {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return durable.WriteFile(fsys, name, b, 0o644)
}
