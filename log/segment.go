package log

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ztfbroker/ztfbroker/durable"
)

// File name suffixes; part of the on-disk format.
const (
	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
	deletedSuffix   = ".deleted"
	tmpSuffix       = durable.TempSuffix // of a file durable.WriteFile is writing
)

func segmentName(base int64) string { return fmt.Sprintf("%020d", base) }

// parseSegmentName returns the base offset of a "<20 digits>.log" name.
func parseSegmentName(name string) (int64, bool) {
	stem, ok := strings.CutSuffix(name, logSuffix)
	if !ok || len(stem) != 20 {
		return 0, false
	}
	base, err := strconv.ParseInt(stem, 10, 64)
	return base, err == nil && base >= 0
}

// segment is one .log file with its two indexes. A sealed segment never
// changes and is read without locks; the active one is appended to by the
// writer that holds Log.writeMu. size, maxTs and maxTsOffset change under
// Log.mu; refs counts the segment list and every reader, so that retention
// can drop a segment while a read is in flight.
//
// In an open Log the three files are segFiles of the log's FileCache: the
// active segment's stay open, a sealed segment's are opened on first read
// and closed by the cache when unused (the cache's pins guard each call, as
// refs guard the segment).
type segment struct {
	base   int64
	path   string // the .log file
	log    File
	idx    *index // offset index
	tidx   *index // time index
	refs   atomic.Int32
	fs     FS
	doomed atomic.Bool // renamed to .deleted; remove when the last ref goes
	// swapPins are the files the cleaner pinned open before it replaced
	// the segment and unlinked them (compact.go): readers still holding
	// the segment read on through them, never by name.
	swapPins []*segFile

	size       int64 // bytes written: the logical end, where the next batch goes
	fileEnd    int64 // the file's end: size plus the zeros preallocated after it
	holeEnd    int64 // the file's end when warming (warm.go) extended it past fileEnd by a hole
	noPrealloc bool  // a preallocation failed (a full disk): no more in this segment
	// fill is closed when the running extension of the file (prealloc.go)
	// is done, nil when none runs; the writer stays below fillFrom until
	// then, and sets fillStop to have it stop early. All change under
	// Log.mu.
	fill        chan struct{}
	fillFrom    int64
	fillStop    bool
	warmAbort   chan struct{} // closed with fillStop set, when the extension is a warm
	maxTs       int64         // largest batch max timestamp, -1 before any batch
	maxTsOffset int64         // last offset of the first batch carrying maxTs
	firstTs     int64         // max timestamp of the first batch, for segment.ms
	created     time.Time     // first write (or open), for segment.ms by the clock

	// The writer's own state for the active segment.
	bytesSinceIndex int
	// sealAdded: the roll appended the seal entry to the time index; a
	// roll retried after a transient error must not append a second one.
	sealAdded bool

	// A sealed segment found at Open: next is the offset after its last
	// batch, and its indexes are checked in full against it when first
	// used (Log.checkIndexes, under idxMu) while idxUnchecked is set.
	next         int64
	idxMu        sync.Mutex
	idxUnchecked atomic.Bool

	// verified: every batch in [0, verified) had its CRC checked by this
	// process (scrub.go); damaged: 1 + the position of damage the scrub
	// found, 0 when none. Both in memory only.
	verified atomic.Int64
	damaged  atomic.Int64

	// resume is where recent ReadSpans stopped (span.go), in a ring.
	resumeMu   sync.Mutex
	resume     [resumePoints]resumePoint
	resumeNext int
}

func segmentPaths(dir string, base int64) (logPath, idxPath, tidxPath string) {
	stem := filepath.Join(dir, segmentName(base))
	return stem + logSuffix, stem + indexSuffix, stem + timeIndexSuffix
}

// createSegment makes an empty segment, the active one, whose files stay
// open until it is sealed; the caller fsyncs the directory.
func createSegment(fsys FS, cache *FileCache, dir string, base int64, indexInterval int) (*segment, error) {
	logPath, idxPath, tidxPath := segmentPaths(dir, base)
	flag := os.O_RDWR | os.O_CREATE | os.O_TRUNC
	var files [3]File
	for i, p := range []string{logPath, idxPath, tidxPath} {
		f, err := fsys.OpenFile(p, flag, 0o644)
		if err != nil {
			for _, g := range files[:i] {
				g.Close()
			}
			return nil, fmt.Errorf("create segment %d: %w", base, err)
		}
		files[i] = f
	}
	s := &segment{
		base: base, path: logPath, log: files[0], fs: fsys,
		idx:   newIndex(files[1], idxPath, offsetEntrySize, 0),
		tidx:  newIndex(files[2], tidxPath, timeEntrySize, 0),
		maxTs: -1, maxTsOffset: -1, firstTs: -1,
		bytesSinceIndex: indexInterval,
	}
	s.refs.Store(1)
	s.hold(cache)
	return s, nil
}

// openSegment opens segment base of the log. The active segment's files
// are opened now and stay open (a missing index is created empty); a
// sealed segment opens nothing: its sizes come from stat and its files
// are opened on first read, through the log's FileCache.
func (l *Log) openSegment(base int64, sealed bool) (*segment, error) {
	if !sealed {
		s, err := openSegmentFiles(l.fs, l.dir, base, false)
		if err != nil {
			return nil, err
		}
		s.hold(l.opts.FileCache)
		return s, nil
	}
	logPath, idxPath, tidxPath := segmentPaths(l.dir, base)
	c := l.opts.FileCache
	s := &segment{base: base, path: logPath, log: lazyFile(c, l.fs, logPath), fs: l.fs, maxTs: -1, maxTsOffset: -1, firstTs: -1}
	var err error
	if s.size, err = fileSize(l.fs, logPath); err != nil {
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
	s.fileEnd = s.size // roll cut its preallocated zeros
	// A missing index reads as empty: the checks at Open then rebuild it.
	idxBytes, err := fileSize(l.fs, idxPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
	tidxBytes, err := fileSize(l.fs, tidxPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
	s.idx = newIndex(lazyFile(c, l.fs, idxPath), idxPath, offsetEntrySize, int(idxBytes)/offsetEntrySize)
	s.tidx = newIndex(lazyFile(c, l.fs, tidxPath), tidxPath, timeEntrySize, int(tidxBytes)/timeEntrySize)
	s.refs.Store(1)
	return s, nil
}

// hold puts the just opened files of the active segment under cache,
// which leaves them open until seal.
func (s *segment) hold(cache *FileCache) {
	if cache == nil {
		return
	}
	s.log = heldFile(cache, s.fs, s.path, s.log)
	s.idx.f = heldFile(cache, s.fs, s.idx.path, s.idx.f)
	s.tidx.f = heldFile(cache, s.fs, s.tidx.path, s.tidx.f)
}

// seal hands the files of a segment just sealed to the cache, which closes
// them when unused; they are opened read-only when read again.
func (s *segment) seal() {
	for _, f := range []File{s.log, s.idx.f, s.tidx.f} {
		if x, ok := f.(*segFile); ok {
			x.seal()
		}
	}
}

// openSegmentFiles opens an existing segment's files, creating missing
// index files empty (they are then rebuilt; the caller syncs the folder).
// readOnly opens every file read-only and creates nothing: a missing index
// reads as empty (absentFile).
func openSegmentFiles(fsys FS, dir string, base int64, readOnly bool) (*segment, error) {
	logPath, idxPath, tidxPath := segmentPaths(dir, base)
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	lf, err := fsys.OpenFile(logPath, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
	s := &segment{base: base, path: logPath, log: lf, fs: fsys, maxTs: -1, maxTsOffset: -1, firstTs: -1}
	s.refs.Store(1)
	// The file's size, until recovery finds the logical end: past it an
	// active segment may hold preallocated zeros (prealloc.go).
	if s.size, err = lf.Size(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
	s.fileEnd = s.size
	open := func(p string, entrySize int) (*index, error) {
		f, err := fsys.OpenFile(p, flag, 0)
		if errors.Is(err, fs.ErrNotExist) {
			if readOnly {
				return newIndex(absentFile{}, p, entrySize, 0), nil
			}
			f, err = fsys.OpenFile(p, flag|os.O_CREATE, 0o644)
		}
		if err != nil {
			return nil, err
		}
		n, err := f.Size()
		if err != nil {
			f.Close()
			return nil, err
		}
		return newIndex(f, p, entrySize, int(n)/entrySize), nil
	}
	if s.idx, err = open(idxPath, offsetEntrySize); err != nil {
		lf.Close()
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
	if s.tidx, err = open(tidxPath, timeEntrySize); err != nil {
		lf.Close()
		s.idx.close()
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
	return s, nil
}

// absentFile stands for an index file missing from a segment opened
// read-only: empty, and never written.
type absentFile struct{}

func (absentFile) ReadAt([]byte, int64) (int, error)  { return 0, io.EOF }
func (absentFile) WriteAt([]byte, int64) (int, error) { return 0, os.ErrPermission }
func (absentFile) Sync() error                        { return nil }
func (absentFile) Truncate(int64) error               { return os.ErrPermission }
func (absentFile) Size() (int64, error)               { return 0, nil }
func (absentFile) Close() error                       { return nil }

// indexFileBytes returns the on-disk sizes of the two index files.
func (s *segment) indexFileBytes() (idx, tidx int64, err error) {
	if idx, err = s.idx.f.Size(); err != nil {
		return 0, 0, err
	}
	tidx, err = s.tidx.f.Size()
	return idx, tidx, err
}

// errIndex is the reason an index disagrees with its segment.
var errIndex = errors.New("index disagrees with its segment")

func indexErr(x *index, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", errIndex, x.path, fmt.Sprintf(format, args...))
}

// checkSealedTail is the check at Open of a sealed segment whose successor
// starts at next, reading only the ends of its files: the index sizes, the
// last offset index entry, the last two time index entries (the last
// indexed batch's and the seal entry) and the batches from the last
// indexed one to the end of the segment. It returns the offset after the
// last batch; an error wrapping errIndex means the indexes disagree with
// the batches (or the segment was cut before its last index entry), any
// other error is I/O.
func checkSealedTail(s *segment, next int64) (end int64, err error) {
	var sizes [2]int64
	for i, x := range []*index{s.idx, s.tidx} {
		sizes[i], err = x.f.Size()
		if errors.Is(err, fs.ErrNotExist) {
			return 0, indexErr(x, "missing")
		}
		if err != nil {
			return 0, err
		}
	}
	idxBytes, tidxBytes := sizes[0], sizes[1]
	n := int(idxBytes / offsetEntrySize)
	switch {
	case idxBytes%offsetEntrySize != 0 || n == 0:
		return 0, indexErr(s.idx, "%d bytes", idxBytes)
	case tidxBytes%timeEntrySize != 0 || tidxBytes/timeEntrySize != int64(n)+1:
		return 0, indexErr(s.tidx, "%d bytes, want %d entries and the seal entry", tidxBytes, n)
	}
	var ob [offsetEntrySize]byte
	if err := s.idx.readEntries(n-1, ob[:]); err != nil {
		return 0, err
	}
	var tb [2 * timeEntrySize]byte
	if err := s.tidx.readEntries(n-1, tb[:]); err != nil {
		return 0, err
	}
	last, lastT, seal := decodeOffsetEntry(ob[:]), decodeTimeEntry(tb[:]), decodeTimeEntry(tb[timeEntrySize:])
	span := next - s.base
	switch {
	case n > 1 && (last.Rel == 0 || last.Pos == 0):
		return 0, indexErr(s.idx, "last of %d entries names the first batch", n)
	case int64(last.Pos) >= s.size:
		return 0, indexErr(s.idx, "last entry at byte %d, segment of %d bytes", last.Pos, s.size)
	case lastT.Rel < last.Rel:
		return 0, indexErr(s.tidx, "entry %d names offset %d, before its batch at %d", n-1, s.base+int64(lastT.Rel), s.base+int64(last.Rel))
	case int64(last.Rel) >= span, int64(lastT.Rel) >= span, int64(seal.Rel) >= span:
		return 0, indexErr(s.tidx, "entries past offset %d, where the next segment starts", next)
	}
	// Walk from the last indexed batch: it must be the one both last
	// entries name, and the seal entry must hold the segment's largest
	// max timestamp and the last offset of the first batch carrying it.
	maxTs, maxTsOffset, first := lastT.Timestamp, int64(-1), true
	res := scanBatches(s.log, int64(last.Pos), s.size, s.base+int64(last.Rel), 0, false, func(h batchHeader, _ int64) error {
		if first {
			first = false
			if h.lastOffset() != s.base+int64(lastT.Rel) || h.MaxTimestamp > lastT.Timestamp {
				return indexErr(s.tidx, "entry %d does not match the batch at offset %d", n-1, h.BaseOffset)
			}
			return nil
		}
		if h.MaxTimestamp > maxTs {
			maxTs, maxTsOffset = h.MaxTimestamp, h.lastOffset()
		}
		return nil
	})
	switch {
	case errors.Is(res.err, errIndex):
		return 0, res.err
	case res.err != nil && !isCorruption(res.err):
		return 0, res.err
	case res.err != nil:
		// The entry names no batch, or the batches after it are cut:
		// the full scan of the rebuild tells which.
		return 0, indexErr(s.idx, "batches from the last entry: %v", res.err)
	case seal.Timestamp != maxTs,
		maxTsOffset >= 0 && s.base+int64(seal.Rel) != maxTsOffset,
		maxTsOffset < 0 && seal.Rel > lastT.Rel:
		return 0, indexErr(s.tidx, "seal entry (%d, %d) disagrees with the batches", seal.Timestamp, s.base+int64(seal.Rel))
	}
	return res.next, nil
}

// indexCheckChunk is how many entries of each index checkIndexEntries
// reads at a time.
const indexCheckChunk = 4096

// checkIndexEntries checks both indexes of sealed segment s, whose
// successor starts at next, in full and cheaply against its batches:
// entries strictly increasing in offset and position (and, in the time
// index, never decreasing in timestamp), within the segment, each time
// entry naming an offset of the batch its offset entry names; then the
// batches named by the first, middle and last entries and by the seal
// entry are read to see that they are where and what the entries say. An
// error wrapping errIndex is a disagreement; any other error is I/O.
func checkIndexEntries(s *segment, next int64) error {
	n, m := s.idx.len(), s.tidx.len()
	if n == 0 || m != n+1 {
		return indexErr(s.tidx, "%d entries for %d offset index entries, want one more", m, n)
	}
	span := next - s.base
	obuf := make([]byte, min(n, indexCheckChunk)*offsetEntrySize)
	tbuf := make([]byte, min(m, indexCheckChunk)*timeEntrySize)
	var prev offsetEntry
	var prevT timeEntry
	for from := 0; from < m; from += indexCheckChunk {
		k := min(m-from, indexCheckChunk)
		if err := s.tidx.readEntries(from, tbuf[:k*timeEntrySize]); err != nil {
			return err
		}
		ko := min(n-from, k)
		if err := s.idx.readEntries(from, obuf[:ko*offsetEntrySize]); err != nil {
			return err
		}
		for i := 0; i < k; i++ {
			j := from + i
			te := decodeTimeEntry(tbuf[i*timeEntrySize:])
			if int64(te.Rel) >= span {
				return indexErr(s.tidx, "entry %d names offset %d, past the segment", j, s.base+int64(te.Rel))
			}
			if j > 0 && te.Timestamp < prevT.Timestamp {
				return indexErr(s.tidx, "entry %d: timestamp %d below the one before, %d", j, te.Timestamp, prevT.Timestamp)
			}
			if j == n { // the seal entry
				break
			}
			oe := decodeOffsetEntry(obuf[i*offsetEntrySize:])
			switch {
			case j == 0 && (oe.Rel != 0 || oe.Pos != 0):
				return indexErr(s.idx, "first entry (%d, %d), want the segment's first batch", oe.Rel, oe.Pos)
			case j > 0 && (oe.Rel <= prevT.Rel || oe.Pos <= prev.Pos):
				return indexErr(s.idx, "entry %d (offset %d, byte %d) does not follow the one before", j, s.base+int64(oe.Rel), oe.Pos)
			case int64(oe.Pos) >= s.size:
				return indexErr(s.idx, "entry %d at byte %d, segment of %d bytes", j, oe.Pos, s.size)
			case te.Rel < oe.Rel:
				return indexErr(s.tidx, "entry %d names offset %d, before its batch at %d", j, s.base+int64(te.Rel), s.base+int64(oe.Rel))
			}
			prev, prevT = oe, te
		}
	}
	// Spot checks against the batches.
	r := newHeaderReader(s.log)
	for _, j := range []int{0, n / 2, n - 1} {
		ob, err := s.idx.entry(j)
		if err != nil {
			return err
		}
		tb, err := s.tidx.entry(j)
		if err != nil {
			return err
		}
		oe, te := decodeOffsetEntry(ob), decodeTimeEntry(tb)
		h, err := r.header(int64(oe.Pos), s.size)
		if err != nil && !isCorruption(err) {
			return err
		}
		switch {
		case err != nil || h.BaseOffset != s.base+int64(oe.Rel):
			return indexErr(s.idx, "entry %d: no batch at offset %d at byte %d", j, s.base+int64(oe.Rel), oe.Pos)
		case h.lastOffset() != s.base+int64(te.Rel) || h.MaxTimestamp > te.Timestamp || (j == 0 && h.MaxTimestamp != te.Timestamp):
			return indexErr(s.tidx, "entry %d (%d, %d) disagrees with the batch at offset %d", j, te.Timestamp, s.base+int64(te.Rel), h.BaseOffset)
		}
	}
	b, err := s.tidx.entry(n)
	if err != nil {
		return err
	}
	seal := decodeTimeEntry(b)
	_, h, err := s.findBatch(r, s.base+int64(seal.Rel), s.size)
	if err != nil && !isCorruption(err) && err != ErrOffsetOutOfRange {
		return err
	}
	if err != nil || h.lastOffset() != s.base+int64(seal.Rel) || h.MaxTimestamp != seal.Timestamp {
		return indexErr(s.tidx, "seal entry (%d, %d) names no batch with that max timestamp", seal.Timestamp, s.base+int64(seal.Rel))
	}
	return nil
}

func (s *segment) acquire() { s.refs.Add(1) }

// release drops one reference; the last one closes the files and, for a
// segment retention has doomed, removes them.
func (s *segment) release() {
	if s.refs.Add(-1) != 0 {
		return
	}
	for _, x := range s.swapPins {
		x.unpin()
	}
	s.log.Close()
	s.idx.close()
	s.tidx.close()
	if s.doomed.Load() {
		for _, p := range []string{s.path, s.idx.path, s.tidx.path} {
			s.fs.Remove(p + deletedSuffix)
		}
	}
}

// syncAll writes pending index entries and fsyncs all three files.
func (s *segment) syncAll() error {
	if err := s.log.Sync(); err != nil {
		return fmt.Errorf("sync segment %d: %w", s.base, err)
	}
	if err := s.idx.sync(); err != nil {
		return err
	}
	return s.tidx.sync()
}

// addIndexEntries records the batch h written at pos, if the index
// interval has passed; maxTs must already include h.
func (s *segment) addIndexEntries(h batchHeader, pos int64, interval int) error {
	if s.bytesSinceIndex >= interval {
		if err := s.idx.add(encodeOffsetEntry(offsetEntry{Rel: uint32(h.BaseOffset - s.base), Pos: uint32(pos)})); err != nil {
			return err
		}
		if err := s.tidx.add(encodeTimeEntry(timeEntry{Timestamp: s.maxTs, Rel: uint32(h.lastOffset() - s.base)})); err != nil {
			return err
		}
		s.bytesSinceIndex = 0
	}
	s.bytesSinceIndex += int(h.Size)
	return nil
}

// noteBatch updates the running timestamps with a batch just written.
func (s *segment) noteBatch(h batchHeader) {
	if s.firstTs < 0 && s.size == 0 {
		s.firstTs = h.MaxTimestamp
	}
	if s.maxTsOffset < 0 || h.MaxTimestamp > s.maxTs {
		s.maxTs, s.maxTsOffset = h.MaxTimestamp, h.lastOffset()
	}
}

// headerReader reads batch headers through a small window so that walking
// many small batches costs few preads. After a batch larger than the
// window (alerts come in batches of about 1 MB) it reads only the next
// header's bytes: the window would hold nothing else.
type headerReader struct {
	f      File
	buf    []byte
	bufPos int64
	n      int
	large  bool // the last header read was of a batch larger than buf
}

const headerWindow = 16 << 10

func newHeaderReader(f File) *headerReader {
	return &headerReader{f: f, buf: make([]byte, headerWindow), bufPos: -1}
}

// header returns the batch header at pos, which must lie below limit.
func (r *headerReader) header(pos, limit int64) (batchHeader, error) {
	if limit-pos < batchHeaderSize {
		return batchHeader{}, errShortBatch
	}
	if r.bufPos < 0 || pos < r.bufPos || pos+batchHeaderSize > r.bufPos+int64(r.n) {
		want := min(int64(len(r.buf)), limit-pos)
		if r.large {
			want = batchHeaderSize
		}
		n, err := r.f.ReadAt(r.buf[:want], pos)
		if int64(n) < want {
			if err == nil || err == io.EOF {
				err = errShortBatch
			}
			r.bufPos = -1
			return batchHeader{}, err
		}
		r.bufPos, r.n = pos, n
	}
	off := pos - r.bufPos
	h, err := parseBatchHeader(r.buf[off : off+batchHeaderSize])
	r.large = err == nil && h.Size > int64(len(r.buf))
	return h, err
}

// findBatch returns the position and header of the batch containing
// offset, walking from the nearest index entry below it. limit is the end
// of the readable bytes. A wrong index entry (its batch is not where it
// says) falls back to a walk from the start of the segment.
func (s *segment) findBatch(r *headerReader, offset, limit int64) (int64, batchHeader, error) {
	pos, expect := int64(0), s.base
	if e, ok, err := s.idx.lookupOffset(uint32(offset - s.base)); err == nil && ok && int64(e.Pos) < limit {
		if h, err := r.header(int64(e.Pos), limit); err == nil && h.BaseOffset == s.base+int64(e.Rel) {
			pos, expect = int64(e.Pos), h.BaseOffset
		}
	}
	for pos < limit {
		h, err := r.header(pos, limit)
		if err != nil {
			return pos, h, s.corruption(pos, err)
		}
		if h.BaseOffset != expect {
			return pos, h, s.corruption(pos, errBadOffset)
		}
		if pos+h.Size > limit {
			return pos, h, s.corruption(pos, errBatchLength)
		}
		if h.lastOffset() >= offset {
			return pos, h, nil
		}
		pos += h.Size
		expect = h.nextOffset()
	}
	return pos, batchHeader{}, ErrOffsetOutOfRange
}

func (s *segment) corruption(pos int64, err error) error {
	if _, ok := err.(*CorruptionError); ok {
		return err
	}
	if oe := (*OpenError)(nil); errors.As(err, &oe) {
		return err // the file could not be opened: no damage
	}
	return &CorruptionError{Segment: s.path, Offset: pos, Err: err}
}

// readFull preads len(b) bytes at pos.
func readFull(f File, b []byte, pos int64) error {
	n, err := f.ReadAt(b, pos)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
