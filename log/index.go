package log

import (
	"bytes"
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
// search with pread. Entries not yet written sit in pending. A search
// first looks in the summary, the first entry of every summaryEvery
// entries of the file, kept in memory, then reads the one block of the
// file that holds the answer with one pread: a consumer's fetch searches
// twice, and a search by pread alone read one entry per step (4.9% of the
// broker's CPU under 8 kcat consumers). The summary is 1/summaryEvery of
// the file, built on a segment's first search and kept up by add.
type index struct {
	mu        sync.RWMutex
	f         File
	path      string
	entrySize int
	written   int    // entries in the file
	pending   []byte // entries after them, not yet written
	summary   []byte // entry k*summaryEvery of the file, for each block k
	summed    int    // file entries the summary covers; below written: to build
}

// summaryEvery is how many entries a block of the summary stands for:
// the most one search reads from the file (2 KiB of offset entries).
const summaryEvery = 256

// blockPool holds the buffers a search reads a block into.
var blockPool = sync.Pool{New: func() any { return new([summaryEvery * timeEntrySize]byte) }}

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
	n := len(x.pending) / x.entrySize
	if x.summed == x.written {
		for i := range n {
			if (x.written+i)%summaryEvery == 0 {
				x.summary = append(x.summary, x.pending[i*x.entrySize:(i+1)*x.entrySize]...)
			}
		}
		x.summed += n
	}
	x.written += n
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
		if x.summed > n {
			x.summed = n
			x.summary = x.summary[:(n+summaryEvery-1)/summaryEvery*x.entrySize]
		}
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

// find returns the number of entries for which less is true, entries
// being ordered so that less is true for a prefix (sort.Search's
// contract), and a copy of the last of them, nil when there is none.
func (x *index) find(less func(entry []byte) bool) (int, []byte, error) {
	x.mu.RLock()
	for x.summed < x.written {
		x.mu.RUnlock()
		x.mu.Lock()
		err := x.summarizeLocked()
		x.mu.Unlock()
		if err != nil {
			return 0, nil, err
		}
		x.mu.RLock()
	}
	defer x.mu.RUnlock()
	es := x.entrySize
	at := func(b []byte, i int) []byte { return b[i*es : (i+1)*es] }
	if len(x.pending) > 0 && less(at(x.pending, 0)) {
		// Every entry of the file too: the answer is among pending.
		k := sort.Search(len(x.pending)/es, func(i int) bool { return !less(at(x.pending, i)) })
		return x.written + k, bytes.Clone(at(x.pending, k-1)), nil
	}
	b := sort.Search(len(x.summary)/es, func(k int) bool { return !less(at(x.summary, k)) })
	if b == 0 {
		return 0, nil, nil
	}
	// The first entry for which less is false is in block b-1 or is the
	// first of block b (or the end of the file).
	from := (b - 1) * summaryEvery
	n := min(summaryEvery, x.written-from)
	buf := blockPool.Get().(*[summaryEvery * timeEntrySize]byte)
	defer blockPool.Put(buf)
	block := buf[:n*es]
	if err := readFull(x.f, block, int64(from*es)); err != nil {
		return 0, nil, fmt.Errorf("read index %s entries %d..: %w", x.path, from, err)
	}
	k := sort.Search(n, func(i int) bool { return !less(at(block, i)) })
	if k == 0 {
		// The summary said less holds for the block's first entry.
		return 0, nil, fmt.Errorf("read index %s entry %d: changed under its summary", x.path, from)
	}
	return from + k, bytes.Clone(at(block, k-1)), nil
}

// summarizeLocked completes the summary from the file, reading it in
// chunks of 64 KiB.
func (x *index) summarizeLocked() error {
	es := x.entrySize
	blocks := (x.summed + summaryEvery - 1) / summaryEvery
	x.summary = x.summary[:blocks*es]
	const chunkBlocks = 64 << 10 / (summaryEvery * offsetEntrySize)
	buf := make([]byte, 0, chunkBlocks*summaryEvery*es)
	for from := blocks * summaryEvery; from < x.written; from += chunkBlocks * summaryEvery {
		n := min(chunkBlocks*summaryEvery, x.written-from)
		chunk := buf[:n*es]
		if err := readFull(x.f, chunk, int64(from*es)); err != nil {
			return fmt.Errorf("read index %s entries %d..: %w", x.path, from, err)
		}
		for i := 0; i < n; i += summaryEvery {
			x.summary = append(x.summary, chunk[i*es:(i+1)*es]...)
		}
	}
	x.summed = x.written
	return nil
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
	x.summary, x.summed = x.summary[:0], 0
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
	_, b, err := x.find(less)
	if err != nil || b == nil {
		return nil, false, err
	}
	return b, true, nil
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
