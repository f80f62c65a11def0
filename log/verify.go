package log

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Verify checks every batch of every segment in dir: framing, CRC32C,
// contiguous offsets within and across segments, and that both indexes
// agree with the batches. It returns every problem found, joined.
func Verify(dir string) error { return VerifyFS(OSFS{}, dir) }

// VerifyFS is Verify on any FS. It only reads: it opens every file
// read-only, creates and repairs nothing, and closes what it opens.
func VerifyFS(fsys FS, dir string) error {
	_, err := verifyFS(fsys, dir, false)
	return err
}

// InFlight is the end of a live log's active segment that VerifyLive found
// still being written: a batch whose header is whole and names the next
// offset, or is cut by the end of the file, and whose bytes run past it.
type InFlight struct {
	Segment  string // the active segment file
	Position int64  // where the partial batch starts
	Bytes    int64  // bytes of it in the file when read
}

// VerifyLive is Verify on the folder of a log that a running broker may be
// appending to, consistent up to the last complete batch: a partial batch
// at the end of the active segment (written between two reads, since the
// log is read with no lock) is returned as in flight, not damage, once a
// short wait shows it still running past the file's end, and the active
// segment's index entries past the last complete batch are not checked.
// Segments retention removed meanwhile are skipped. A sealed segment is
// checked as by Verify: it never changes.
func VerifyLive(dir string) (*InFlight, error) { return VerifyLiveFS(OSFS{}, dir) }

// VerifyLiveFS is VerifyLive on any FS.
func VerifyLiveFS(fsys FS, dir string) (*InFlight, error) { return verifyFS(fsys, dir, true) }

// liveWait is how long VerifyLive waits for a partial batch to be
// completed before it calls it in flight; a write completes in far less.
const liveWait = 50 * time.Millisecond

func verifyFS(fsys FS, dir string, live bool) (*InFlight, error) {
	// Retention and the cleaner rename and replace files under a running
	// log: a problem found while the sealed segments changed is looked at
	// again.
	for tries := 0; ; tries++ {
		var before map[string]int64
		if live {
			before = sealedSizes(fsys, dir)
		}
		inFlight, err := verifyOnce(fsys, dir, live)
		after := sealedSizes(fsys, dir)
		if err == nil || !live || tries == 10 || (maps.Equal(before, after) && after["rolling"] == 0) {
			return inFlight, err
		}
		time.Sleep(liveWait)
	}
}

// sealedSizes maps the .log files of dir but the last, the active one, to
// their sizes (-1 when gone); a pending swap is an entry of its own, and so
// is an active segment whose indexes are not there yet ("rolling").
func sealedSizes(fsys FS, dir string) map[string]int64 {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	var logs []string
	for _, name := range names {
		if _, ok := parseSegmentName(name); ok {
			logs = append(logs, name)
		}
		if strings.HasSuffix(name, swapSuffix) {
			out[name] = -2
		}
	}
	if len(logs) > 0 {
		// A roll creates the new active segment's indexes after its log.
		stem := strings.TrimSuffix(logs[len(logs)-1], logSuffix)
		if !slices.Contains(names, stem+indexSuffix) || !slices.Contains(names, stem+timeIndexSuffix) {
			out["rolling"] = -3
		}
	}
	for _, name := range logs[:max(len(logs)-1, 0)] {
		n, err := fileSize(fsys, filepath.Join(dir, name))
		if err != nil {
			n = -1
		}
		out[name] = n
	}
	return out
}

// verifyOnce is one verifyFS over the folder as listed.
func verifyOnce(fsys FS, dir string, live bool) (*InFlight, error) {
	names, err := fsys.ReadDir(dir)
	// A cleaned segment being swapped in renames several files (compact.go):
	// a running log's swap ends in milliseconds, so look again.
	for tries := 0; err == nil && live && swapPending(names) != "" && tries < 40; tries++ {
		time.Sleep(liveWait)
		names, err = fsys.ReadDir(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if name := swapPending(names); name != "" && !live {
		return nil, fmt.Errorf("verify: %s: a clean of a compacted log was cut short in its swap, which opening the log "+
			"finishes (start the broker, or use --live)", filepath.Join(dir, name))
	}
	var bases []int64
	have := map[string]bool{}
	for _, name := range names {
		have[name] = true
		if base, ok := parseSegmentName(name); ok {
			bases = append(bases, base)
		}
	}
	errs, gone := missingSegments(dir, names, bases, have)
	var inFlight *InFlight
	const maxEpoch = 1<<31 - 1 // the epoch bound is the open log's business
	for i, base := range bases {
		s, err := openSegmentFiles(fsys, dir, base, true)
		if live && errors.Is(err, fs.ErrNotExist) {
			continue // retention removed it since the listing
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sealed := i < len(bases)-1
		var segErrs []error
		segErrs, inFlight = verifySegment(s, sealed, bases, i, maxEpoch, live && !sealed, gone)
		errs = append(errs, segErrs...)
		s.release()
	}
	return inFlight, errors.Join(errs...)
}

// swapPending names a `.log.swap` file of dir, a committed swap not yet
// finished, or returns "".
func swapPending(names []string) string {
	for _, name := range names {
		if strings.HasSuffix(name, logSuffix+swapSuffix) {
			return name
		}
	}
	return ""
}

// missingSegments reports each segment whose .log is missing while its
// .index or .timeindex remains above the first segment (below it, they
// are what a crash in the middle of retention leaves, which Open removes),
// and returns their bases.
func missingSegments(dir string, names []string, bases []int64, have map[string]bool) ([]error, map[int64]bool) {
	var errs []error
	gone := map[int64]bool{}
	for _, name := range names {
		stem, suffix, _ := strings.Cut(name, ".")
		if suffix != indexSuffix[1:] && suffix != timeIndexSuffix[1:] {
			continue
		}
		base, ok := parseSegmentName(stem + logSuffix)
		if !ok || have[stem+logSuffix] || gone[base] || (len(bases) > 0 && base < bases[0]) {
			continue
		}
		gone[base] = true
		to := int64(-1)
		if k := sort.Search(len(bases), func(k int) bool { return bases[k] > base }); k < len(bases) {
			to = bases[k] - 1
		}
		logPath, _, _ := segmentPaths(dir, base)
		errs = append(errs, missingOffsets(logPath, -1, base, to, "segment file missing, its indexes remain"))
	}
	return errs, gone
}

// verifySegment checks one segment opened read-only; it writes nothing, so
// a missing index is reported, not recreated. live is for the active
// segment of a running log (VerifyLive); gone holds the bases of segments
// missingSegments reported.
func verifySegment(s *segment, sealed bool, bases []int64, i int, maxEpoch int32, live bool, gone map[int64]bool) ([]error, *InFlight) {
	var errs []error
	_, idxAbsent := s.idx.f.(absentFile)
	_, tidxAbsent := s.tidx.f.(absentFile)
	if idxAbsent {
		errs = append(errs, fmt.Errorf("%s: missing", s.idx.path))
	}
	if tidxAbsent {
		errs = append(errs, fmt.Errorf("%s: missing", s.tidx.path))
	}
	var idx []offsetEntry
	var tidx []timeEntry
	for j := 0; j < s.idx.len(); j++ {
		b, err := s.idx.entry(j)
		if err != nil {
			return append(errs, err), nil
		}
		idx = append(idx, decodeOffsetEntry(b))
	}
	for j := 0; j < s.tidx.len(); j++ {
		b, err := s.tidx.entry(j)
		if err != nil {
			return append(errs, err), nil
		}
		tidx = append(tidx, decodeTimeEntry(b))
	}
	// Every index entry must name a batch boundary, with the running max
	// timestamp at that batch.
	atPos := map[int64]int{}
	for j, e := range idx {
		atPos[int64(e.Pos)] = j
	}
	maxTs, maxTsOffset := int64(-1), int64(-1)
	matched := 0
	check := func(h batchHeader, pos int64) error {
		if maxTsOffset < 0 || h.MaxTimestamp > maxTs {
			maxTs, maxTsOffset = h.MaxTimestamp, h.lastOffset()
		}
		j, ok := atPos[pos]
		if !ok {
			return nil
		}
		matched++
		if s.base+int64(idx[j].Rel) != h.BaseOffset {
			errs = append(errs, fmt.Errorf("%s: offset index entry %d names offset %d, batch at %d has %d", s.idx.path, j, s.base+int64(idx[j].Rel), pos, h.BaseOffset))
		}
		if j < len(tidx) && (tidx[j].Timestamp != maxTs || s.base+int64(tidx[j].Rel) != h.lastOffset()) {
			errs = append(errs, fmt.Errorf("%s: time index entry %d disagrees with the batch at %d", s.tidx.path, j, pos))
		}
		return nil
	}
	res := scanBatches(s.log, 0, s.size, s.base, maxEpoch, true, check)
	var inFlight *InFlight
	if live {
		inFlight = liveTail(s, &res, maxEpoch, check)
	} else if !sealed {
		endPreallocated(s, &res, s.size)
	}
	switch {
	case sealed && s.size == 0:
		errs = append(errs, missingOffsets(s.path, 0, s.base, bases[i+1]-1, "sealed segment empty"))
	case sealed && res.err != nil && isCorruption(res.err) && cutByEnd(s, res.end):
		errs = append(errs, missingOffsets(s.path, res.end, res.next, bases[i+1]-1, "sealed segment cut short inside a batch"))
	case res.err != nil:
		errs = append(errs, s.corruption(res.end, res.err))
	}
	want := len(idx)
	if live {
		// Entries past the last complete batch name batches in flight.
		want = 0
		for _, e := range idx {
			if int64(e.Pos) < res.end {
				want++
			}
		}
	}
	if matched != want {
		errs = append(errs, fmt.Errorf("%s: %d of %d entries do not name a batch", s.idx.path, want-matched, want))
	}
	if sealed {
		next := bases[i+1]
		switch {
		case res.err != nil || s.size == 0 || gone[res.next]:
			// Reported above.
		case res.next < next:
			missing, _, _ := segmentPaths(filepath.Dir(s.path), res.next)
			why := fmt.Sprintf("segment file missing, or %s cut short: it ends at offset %d", s.path, res.next-1)
			errs = append(errs, missingOffsets(missing, -1, res.next, next-1, why))
		case res.next > next:
			errs = append(errs, s.corruption(res.end, fmt.Errorf("%w: segment ends at offset %d, past the next segment's base %d", errBadOffset, res.next, next)))
		}
		want := len(idx) + 1
		if tidxAbsent || idxAbsent {
			// Reported above; the seal entry has nothing to be checked against.
		} else if len(tidx) != want {
			errs = append(errs, fmt.Errorf("%s: %d entries, want %d", s.tidx.path, len(tidx), want))
		} else if seal := tidx[want-1]; seal.Timestamp != maxTs || s.base+int64(seal.Rel) != maxTsOffset {
			errs = append(errs, fmt.Errorf("%s: seal entry (%d, %d), want (%d, %d)", s.tidx.path, seal.Timestamp, s.base+int64(seal.Rel), maxTs, maxTsOffset))
		}
	}
	return errs, inFlight
}

// liveTail goes on scanning a live active segment that stopped at a bad
// frame, as its writer completes the batch, and returns the frame as in
// flight if, after liveWait, it is still a whole header naming the next
// offset (or a header cut by the end of the file) whose batch runs past the
// end. Anything else stays in res.err: damage.
func liveTail(s *segment, res *scanResult, maxEpoch int32, check func(batchHeader, int64) error) *InFlight {
	limit := s.size
	for range 3 {
		if endPreallocated(s, res, limit); res.err == nil {
			return nil
		}
		time.Sleep(liveWait)
		size, err := s.log.Size()
		if err != nil || size < res.end {
			break
		}
		// Rescan even when the size stayed: the writer may have
		// completed a batch inside preallocated space.
		next := scanBatches(s.log, res.end, size, res.next, maxEpoch, true, check)
		next.batches += res.batches
		*res, limit = next, size
	}
	if endPreallocated(s, res, limit); res.err == nil {
		return nil
	}
	if zeroHeader(s.log, res.end) {
		// A writer that keeps appending into preallocated space keeps
		// putting batches after the zeros each rescan found, so the tail
		// is never all zeros at once: a frame that is still zeros where
		// the next batch goes is where the writer has not reached.
		res.err = nil
		return nil
	}
	if size, err := s.log.Size(); err == nil {
		// A frame read while its writer was copying it in (a header with
		// its length but not yet its magic, say) that now reads as a
		// whole batch is where the writer was, not damage: a reader
		// without a lock sees a write in the middle.
		if now := scanBatches(s.log, res.end, size, res.next, maxEpoch, true, nil); now.batches > 0 {
			res.err = nil
			return nil
		}
	}
	h, err := newHeaderReader(s.log).header(res.end, limit)
	partial := errors.Is(err, errShortBatch) || (err == nil && h.BaseOffset == res.next && res.end+h.Size > limit)
	if !partial {
		return nil
	}
	res.err = nil
	return &InFlight{Segment: s.path, Position: res.end, Bytes: limit - res.end}
}

// zeroHeader says whether a whole batch header at pos reads as zeros.
func zeroHeader(f File, pos int64) bool {
	var b [batchHeaderSize]byte
	if n, _ := f.ReadAt(b[:], pos); n < len(b) {
		return false
	}
	return b == [batchHeaderSize]byte{}
}

// endPreallocated accepts the end of a scan of the active segment at a
// tail of preallocated zeros (prealloc.go) as the end of its batches.
func endPreallocated(s *segment, res *scanResult, size int64) {
	if res.err == nil || !isCorruption(res.err) {
		return
	}
	if prealloc, _, err := zeroTail(s.log, res.end, size); err == nil && prealloc {
		res.err = nil
	}
}
