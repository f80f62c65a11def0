package log

import (
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
)

// MinFileCacheCapacity is the smallest default capacity of a FileCache.
const MinFileCacheCapacity = 64

// DefaultFileCacheCapacity is a quarter of the process's soft limit on open
// files (RLIMIT_NOFILE), and at least MinFileCacheCapacity: the rest is for
// the active segments (three files each), connections and the metadata
// store.
func DefaultFileCacheCapacity() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return MinFileCacheCapacity
	}
	return int(max(MinFileCacheCapacity, min(rl.Cur, 1<<24)/4))
}

// FileCache bounds the file descriptors sealed segments hold. A sealed
// segment's .log, .index and .timeindex are opened on first read and
// closed, least recently used first, once more than the capacity are open;
// a file is closed only while no read is using it, so the count can pass
// the capacity by the reads in flight. The active segments' files are not
// counted: they stay open until the segment is sealed (then the cache takes
// them) or the log closes.
//
// One FileCache is shared by every partition log of a process
// (Options.FileCache). It is safe for concurrent use.
type FileCache struct {
	capacity int

	mu        sync.Mutex
	lru       list.List // of *segFile: open, not held; most recent first
	open      int       // lru.Len()
	opens     int64
	evictions int64
}

// NewFileCache returns a cache that keeps at most capacity sealed segment
// files open; capacity <= 0 means DefaultFileCacheCapacity.
func NewFileCache(capacity int) *FileCache {
	if capacity <= 0 {
		capacity = DefaultFileCacheCapacity()
	}
	return &FileCache{capacity: capacity}
}

// Capacity is the number of sealed segment files the cache keeps open.
func (c *FileCache) Capacity() int { return c.capacity }

// FileCacheStats are a FileCache's counts.
type FileCacheStats struct {
	Open      int   // sealed segment files open now
	Opens     int64 // files opened, ever
	Evictions int64 // files closed to stay within the capacity, ever
}

// Stats returns the cache's counts.
func (c *FileCache) Stats() FileCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return FileCacheStats{Open: c.open, Opens: c.opens, Evictions: c.evictions}
}

// evictLocked detaches the least recently used unpinned files until the
// cache is within its capacity (all of them when all is set) and returns
// them for the caller to close outside the lock.
func (c *FileCache) evictLocked(all bool) []File {
	var victims []File
	for e := c.lru.Back(); e != nil && (all || c.open > c.capacity); {
		prev := e.Prev()
		if x := e.Value.(*segFile); x.pins == 0 {
			victims = append(victims, x.detachLocked())
			c.evictions++
		}
		e = prev
	}
	return victims
}

func closeFiles(fs []File) {
	for _, f := range fs {
		f.Close()
	}
}

// OpenError is a failure to open a sealed segment's file for a read, such
// as too many open files (EMFILE). It fails that read only: nothing is
// damaged and the log stays writable.
type OpenError struct {
	Path string
	Err  error
}

func (e *OpenError) Error() string { return fmt.Sprintf("log: open %s: %v", e.Path, e.Err) }
func (e *OpenError) Unwrap() error { return e.Err }

// segFile is one file of a segment, a File whose descriptor the FileCache
// owns. Held (the active segment's) it is open from creation to Close;
// otherwise every call pins it, opening it when needed, and the cache may
// close it while no call has it pinned. Fields after path are guarded by
// c.mu.
type segFile struct {
	c    *FileCache
	fs   FS
	path string

	flag   int  // to open it again: O_RDONLY once sealed
	f      File // nil while closed
	pins   int  // calls using f
	held   bool // the active segment's: never evicted, not counted
	closed bool
	elem   *list.Element // in c.lru while open and not held
}

// heldFile wraps f, just opened for the active segment.
func heldFile(c *FileCache, fsys FS, path string, f File) *segFile {
	return &segFile{c: c, fs: fsys, path: path, flag: os.O_RDWR, f: f, held: true}
}

// lazyFile is a sealed segment's file, opened read-only on first use.
func lazyFile(c *FileCache, fsys FS, path string) *segFile {
	return &segFile{c: c, fs: fsys, path: path, flag: os.O_RDONLY}
}

// detachLocked takes f out of x and the cache and returns it to be closed.
func (x *segFile) detachLocked() File {
	f := x.f
	x.f = nil
	if x.elem != nil {
		x.c.lru.Remove(x.elem)
		x.elem = nil
		x.c.open--
	}
	return f
}

// pin returns the open file, opening it if needed; unpin must follow.
func (x *segFile) pin() (File, error) {
	c := x.c
	c.mu.Lock()
	if f, ok := x.pinLocked(); ok || x.closed {
		c.mu.Unlock()
		if !ok {
			return nil, &OpenError{Path: x.path, Err: fs.ErrClosed}
		}
		return f, nil
	}
	flag := x.flag
	c.mu.Unlock()

	f, err := x.openFile(flag)
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		// Out of descriptors: give back every idle one and try once more.
		c.mu.Lock()
		victims := c.evictLocked(true)
		c.mu.Unlock()
		closeFiles(victims)
		f, err = x.openFile(flag)
	}
	if err != nil {
		// The cleaner may have opened it meanwhile and then taken its
		// name for a segment that replaced it (compact.go).
		c.mu.Lock()
		got, ok := x.pinLocked()
		c.mu.Unlock()
		if ok {
			return got, nil
		}
		return nil, &OpenError{Path: x.path, Err: err}
	}

	c.mu.Lock()
	if got, ok := x.pinLocked(); ok || x.closed {
		// Another reader opened it meanwhile, or the segment went.
		c.mu.Unlock()
		f.Close()
		if !ok {
			return nil, &OpenError{Path: x.path, Err: fs.ErrClosed}
		}
		return got, nil
	}
	x.f, x.pins = f, x.pins+1
	c.opens++
	var victims []File
	if !x.held {
		x.elem = c.lru.PushFront(x)
		c.open++
		victims = c.evictLocked(false)
	}
	c.mu.Unlock()
	closeFiles(victims)
	return f, nil
}

// pinLocked pins f if it is open.
func (x *segFile) pinLocked() (File, bool) {
	if x.f == nil || x.closed {
		return nil, false
	}
	x.pins++
	if x.elem != nil {
		x.c.lru.MoveToFront(x.elem)
	}
	return x.f, true
}

// openFile opens the file; a segment retention removed meanwhile is found
// under its .deleted name, kept until its last reader is done.
func (x *segFile) openFile(flag int) (File, error) {
	f, err := x.fs.OpenFile(x.path, flag, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if g, err2 := x.fs.OpenFile(x.path+deletedSuffix, flag, 0); err2 == nil {
			return g, nil
		}
	}
	return f, err
}

func (x *segFile) unpin() {
	c := x.c
	c.mu.Lock()
	x.pins--
	var victims []File
	switch {
	case x.pins == 0 && x.closed && x.f != nil:
		victims = append(victims, x.detachLocked())
	case c.open > c.capacity:
		victims = c.evictLocked(false)
	}
	c.mu.Unlock()
	closeFiles(victims)
}

func (x *segFile) ReadAt(p []byte, off int64) (int, error) {
	f, err := x.pin()
	if err != nil {
		return 0, err
	}
	defer x.unpin()
	return f.ReadAt(p, off)
}

func (x *segFile) WriteAt(p []byte, off int64) (int, error) {
	f, err := x.pin()
	if err != nil {
		return 0, err
	}
	defer x.unpin()
	return f.WriteAt(p, off)
}

func (x *segFile) Sync() error {
	f, err := x.pin()
	if err != nil {
		return err
	}
	defer x.unpin()
	return f.Sync()
}

func (x *segFile) Truncate(size int64) error {
	f, err := x.pin()
	if err != nil {
		return err
	}
	defer x.unpin()
	return f.Truncate(size)
}

// Size asks the file system when the file is not open, so that sizing a
// sealed segment costs no descriptor.
func (x *segFile) Size() (int64, error) {
	x.c.mu.Lock()
	open := x.f != nil
	x.c.mu.Unlock()
	if sfs, ok := x.fs.(sizeFS); ok && !open {
		return sfs.FileSize(x.path)
	}
	f, err := x.pin()
	if err != nil {
		return 0, err
	}
	defer x.unpin()
	return f.Size()
}

// Close closes the file for good: now, or when the last call using it
// returns.
func (x *segFile) Close() error {
	x.c.mu.Lock()
	x.closed = true
	var f File
	if x.f != nil && x.pins == 0 {
		f = x.detachLocked()
	}
	x.c.mu.Unlock()
	if f != nil {
		return f.Close()
	}
	return nil
}

// seal hands a held file to the cache, which may close it from now on;
// it is opened read-only when needed again.
func (x *segFile) seal() {
	c := x.c
	c.mu.Lock()
	var victims []File
	if x.held {
		x.held, x.flag = false, os.O_RDONLY
		if x.f != nil && !x.closed {
			x.elem = c.lru.PushFront(x)
			c.open++
			victims = c.evictLocked(false)
		}
	}
	c.mu.Unlock()
	closeFiles(victims)
}

// reopen drops the descriptor after the file was replaced by a rename (a
// rebuilt index); a held file is opened again at once.
func (x *segFile) reopen() error {
	var f File
	x.c.mu.Lock()
	held := x.held
	x.c.mu.Unlock()
	if held {
		var err error
		if f, err = x.fs.OpenFile(x.path, x.flag, 0); err != nil {
			return err
		}
	}
	x.c.mu.Lock()
	old := x.f
	if x.elem != nil {
		old = x.detachLocked()
	}
	x.f = f
	x.c.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// sizeFS is an FS that tells a file's size without opening it (stat).
type sizeFS interface {
	FileSize(name string) (int64, error)
}

// FileSize stats name.
func (OSFS) FileSize(name string) (int64, error) {
	st, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// fileSize is name's size, through stat when fsys can, else by opening it;
// a missing file is reported as fs.ErrNotExist.
func fileSize(fsys FS, name string) (int64, error) {
	if sfs, ok := fsys.(sizeFS); ok {
		return sfs.FileSize(name)
	}
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Size()
}
