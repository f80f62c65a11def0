package log

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
)

// Entry sizes of the two index files; part of the on-disk format.
const (
	offsetEntrySize = 8  // relOffset uint32 | position uint32
	timeEntrySize   = 12 // timestamp int64 | relOffset uint32
	// indexBufferBytes is how many new entries wait in memory before they
	// are written; they are also written on every sync, roll and close.
	indexBufferBytes = 4096
)

// index is an append-only file of fixed-size entries, read by binary
// search with pread so that sealed segments keep nothing in memory.
// Entries not yet written sit in pending.
type index struct {
	mu        sync.RWMutex
	f         File
	path      string
	entrySize int
	written   int    // entries in the file
	pending   []byte // entries after them, not yet written
}

func newIndex(f File, path string, entrySize int, entries int) *index {
	return &index{f: f, path: path, entrySize: entrySize, written: entries}
}

func (x *index) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.lenLocked()
}

func (x *index) lenLocked() int { return x.written + len(x.pending)/x.entrySize }

// add appends one entry, writing the buffer when it is full.
func (x *index) add(entry []byte) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.pending = append(x.pending, entry...)
	if len(x.pending) >= indexBufferBytes {
		return x.flushLocked()
	}
	return nil
}

func (x *index) flushLocked() error {
	if len(x.pending) == 0 {
		return nil
	}
	if _, err := x.f.WriteAt(x.pending, int64(x.written*x.entrySize)); err != nil {
		return fmt.Errorf("write index %s: %w", x.path, err)
	}
	x.written += len(x.pending) / x.entrySize
	x.pending = x.pending[:0]
	return nil
}

// sync writes pending entries and fsyncs the file.
func (x *index) sync() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.flushLocked(); err != nil {
		return err
	}
	if err := x.f.Sync(); err != nil {
		return fmt.Errorf("sync index %s: %w", x.path, err)
	}
	return nil
}

// truncate keeps the first n entries, on disk too.
func (x *index) truncate(n int) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.flushLocked(); err != nil {
		return err
	}
	if n < x.written {
		if err := x.f.Truncate(int64(n * x.entrySize)); err != nil {
			return fmt.Errorf("truncate index %s: %w", x.path, err)
		}
		x.written = n
	}
	return nil
}

// entryLocked reads entry i into buf.
func (x *index) entryLocked(i int, buf []byte) error {
	if i >= x.written {
		off := (i - x.written) * x.entrySize
		copy(buf, x.pending[off:off+x.entrySize])
		return nil
	}
	n, err := x.f.ReadAt(buf[:x.entrySize], int64(i*x.entrySize))
	if n == x.entrySize {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read index %s entry %d: %w", x.path, i, err)
}

// search returns the number of entries for which less is true, entries
// being ordered so that less is true for a prefix (sort.Search's contract).
func (x *index) search(less func(entry []byte) bool) (int, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var buf [timeEntrySize]byte
	var err error
	i := sort.Search(x.lenLocked(), func(i int) bool {
		if err != nil {
			return true
		}
		if err = x.entryLocked(i, buf[:]); err != nil {
			return true
		}
		return !less(buf[:x.entrySize])
	})
	return i, err
}

func (x *index) entry(i int) ([]byte, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	buf := make([]byte, x.entrySize)
	return buf, x.entryLocked(i, buf)
}

func (x *index) close() error { return x.f.Close() }

// reopen points x at its file after the file was replaced by a rename (a
// rebuilt index) holding entries entries, in place: readers keep their
// *index. The old descriptor is closed.
func (x *index) reopen(fsys FS, entries int) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if sf, ok := x.f.(*segFile); ok {
		if err := sf.reopen(); err != nil {
			return fmt.Errorf("reopen index: %w", err)
		}
	} else {
		f, err := fsys.OpenFile(x.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("reopen index: %w", err)
		}
		x.f.Close()
		x.f = f
	}
	x.written, x.pending = entries, x.pending[:0]
	return nil
}

// readEntries reads entries [from, from+len(buf)/entrySize) of the file
// into buf with one pread.
func (x *index) readEntries(from int, buf []byte) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if err := readFull(x.f, buf, int64(from*x.entrySize)); err != nil {
		return fmt.Errorf("read index %s entries %d..: %w", x.path, from, err)
	}
	return nil
}

type offsetEntry struct {
	Rel uint32 // offset - segment base
	Pos uint32 // byte position of the batch in the segment file
}

func encodeOffsetEntry(e offsetEntry) []byte {
	var b [offsetEntrySize]byte
	binary.BigEndian.PutUint32(b[0:], e.Rel)
	binary.BigEndian.PutUint32(b[4:], e.Pos)
	return b[:]
}

func decodeOffsetEntry(b []byte) offsetEntry {
	return offsetEntry{Rel: binary.BigEndian.Uint32(b[0:]), Pos: binary.BigEndian.Uint32(b[4:])}
}

type timeEntry struct {
	Timestamp int64  // largest batch max timestamp up to and including the batch
	Rel       uint32 // last offset of that batch - segment base
}

func encodeTimeEntry(e timeEntry) []byte {
	var b [timeEntrySize]byte
	binary.BigEndian.PutUint64(b[0:], uint64(e.Timestamp))
	binary.BigEndian.PutUint32(b[8:], e.Rel)
	return b[:]
}

func decodeTimeEntry(b []byte) timeEntry {
	return timeEntry{Timestamp: int64(binary.BigEndian.Uint64(b[0:])), Rel: binary.BigEndian.Uint32(b[8:])}
}

// lookupOffset returns the last entry at or below rel; ok is false when
// the index is empty.
func (x *index) lookupOffset(rel uint32) (e offsetEntry, ok bool, err error) {
	b, ok, err := x.last(func(b []byte) bool { return decodeOffsetEntry(b).Rel <= rel })
	if !ok {
		return offsetEntry{}, false, err
	}
	return decodeOffsetEntry(b), true, nil
}

// last returns the last entry of the prefix for which less is true.
func (x *index) last(less func(entry []byte) bool) ([]byte, bool, error) {
	n, err := x.search(less)
	if err != nil || n == 0 {
		return nil, false, err
	}
	b, err := x.entry(n - 1)
	return b, err == nil, err
}

// lookupTimeBelow returns the last entry whose timestamp is below ts: every
// batch up to its offset has a max timestamp below ts.
func (x *index) lookupTimeBelow(ts int64) (e timeEntry, ok bool, err error) {
	b, ok, err := x.last(func(b []byte) bool { return decodeTimeEntry(b).Timestamp < ts })
	if !ok {
		return timeEntry{}, false, err
	}
	return decodeTimeEntry(b), true, nil
}
