package log

import (
	"errors"
	"fmt"
)

// Verify checks every batch of every segment in dir: framing, CRC32C,
// contiguous offsets within and across segments, and that both indexes
// agree with the batches. It returns every problem found, joined.
func Verify(dir string) error { return VerifyFS(OSFS{}, dir) }

// VerifyFS is Verify on any FS. It only reads: it opens every file
// read-only, creates and repairs nothing, and closes what it opens.
func VerifyFS(fsys FS, dir string) error {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	var bases []int64
	for _, name := range names {
		if base, ok := parseSegmentName(name); ok {
			bases = append(bases, base)
		}
	}
	var errs []error
	const maxEpoch = 1<<31 - 1 // the epoch bound is the open log's business
	for i, base := range bases {
		s, err := openSegmentFiles(fsys, dir, base, true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sealed := i < len(bases)-1
		errs = append(errs, verifySegment(s, sealed, bases, i, maxEpoch)...)
		s.release()
	}
	return errors.Join(errs...)
}

// verifySegment checks one segment opened read-only; it writes nothing, so
// a missing index is reported, not recreated.
func verifySegment(s *segment, sealed bool, bases []int64, i int, maxEpoch int32) []error {
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
			return append(errs, err)
		}
		idx = append(idx, decodeOffsetEntry(b))
	}
	for j := 0; j < s.tidx.len(); j++ {
		b, err := s.tidx.entry(j)
		if err != nil {
			return append(errs, err)
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
	res := scanBatches(s.log, 0, s.size, s.base, maxEpoch, true, func(h batchHeader, pos int64) error {
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
	})
	if res.err != nil {
		errs = append(errs, s.corruption(res.end, res.err))
	}
	if matched != len(idx) {
		errs = append(errs, fmt.Errorf("%s: %d of %d entries do not name a batch", s.idx.path, len(idx)-matched, len(idx)))
	}
	if sealed {
		if res.err == nil && res.next != bases[i+1] {
			errs = append(errs, s.corruption(res.end, fmt.Errorf("segment ends at offset %d, next segment starts at %d", res.next, bases[i+1])))
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
	return errs
}
