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

	size        int64     // bytes written
	maxTs       int64     // largest batch max timestamp, -1 before any batch
	maxTsOffset int64     // last offset of the first batch carrying maxTs
	firstTs     int64     // max timestamp of the first batch, for segment.ms
	created     time.Time // first write (or open), for segment.ms by the clock

	// The writer's own state for the active segment.
	bytesSinceIndex int
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
	if s.size, err = lf.Size(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
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

// checkSealEntry is the check at Open of a sealed segment older than the
// newest: the index sizes (by stat) and the seal entry, the one entry Open
// needs. A wrong offset index entry does no harm later: findBatch checks
// the batch an entry names and walks from the start when it is wrong.
func checkSealEntry(s *segment, next int64) error {
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
	b, err := s.tidx.entry(s.tidx.len() - 1)
	if err != nil {
		return err
	}
	if seal := decodeTimeEntry(b); int64(seal.Rel) >= span {
		return errors.New("time index seal entry out of range")
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
// many small batches costs few preads.
type headerReader struct {
	f      File
	buf    []byte
	bufPos int64
	n      int
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
	return parseBatchHeader(r.buf[off : off+batchHeaderSize])
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
