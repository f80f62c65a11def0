package log

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// FS is the file-system seam: everything the log does to files goes through
// it, so that a test can substitute NewCrashFS and lose unsynced writes at
// any moment. Paths are ordinary slash-separated paths.
type FS interface {
	// OpenFile opens name with os.OpenFile's flags (O_RDONLY, O_RDWR,
	// O_CREATE, O_EXCL, O_TRUNC are the ones used).
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	RemoveAll(dir string) error
	Rename(oldname, newname string) error
	MkdirAll(dir string, perm os.FileMode) error
	// ReadDir lists the names in dir, sorted.
	ReadDir(dir string) ([]string, error)
	// SyncDir makes the entries of dir (creations, renames, removals) durable.
	SyncDir(dir string) error
}

// File is an open file of an FS.
type File interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Sync makes the file's data durable (fdatasync on Linux).
	Sync() error
	Truncate(size int64) error
	Size() (int64, error)
	Close() error
}

// OSFS is the operating system's file system.
type OSFS struct{}

type osFile struct{ *os.File }

func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (OSFS) Remove(name string) error                    { return os.Remove(name) }
func (OSFS) RemoveAll(dir string) error                  { return os.RemoveAll(dir) }
func (OSFS) Rename(oldname, newname string) error        { return os.Rename(oldname, newname) }
func (OSFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }

func (OSFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (f osFile) Sync() error { return fdatasync(f.File) }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// ErrCrashed is returned by a CrashFS after Crash, and by its files.
var ErrCrashed = errors.New("log: file system crashed")

// CrashFS is an in-memory FS that remembers what has been made durable
// (File.Sync for contents, SyncDir for directory entries) and can Crash:
// keep only that, as a power cut would. Directories themselves are always
// durable. It is safe for concurrent use and meant for tests, here and in
// other packages.
type CrashFS struct {
	mu       chan struct{}        // a mutex (a channel so that it needs no zero value care)
	dead     bool                 // crashed: the process that used it is gone
	live     map[string]*memInode // the namespace as seen now
	durable  map[string]*memInode // the namespace as of the last SyncDir
	dirs     map[string]bool
	syncErr  error
	writeErr error
}

type memInode struct {
	data   []byte
	synced []byte // contents as of the last Sync
}

// NewCrashFS returns an empty crashable in-memory file system.
func NewCrashFS() *CrashFS {
	return &CrashFS{
		mu:      make(chan struct{}, 1),
		live:    map[string]*memInode{},
		durable: map[string]*memInode{},
		dirs:    map[string]bool{"/": true, ".": true},
	}
}

func (c *CrashFS) lock()   { c.mu <- struct{}{} }
func (c *CrashFS) unlock() { <-c.mu }

// InjectSyncError makes every later File.Sync and SyncDir fail with err
// (nil heals).
func (c *CrashFS) InjectSyncError(err error) { c.lock(); c.syncErr = err; c.unlock() }

// InjectWriteError makes every later WriteAt fail with err (nil heals).
func (c *CrashFS) InjectWriteError(err error) { c.lock(); c.writeErr = err; c.unlock() }

// Crash simulates a power cut and returns the file system as found on the
// next boot: files and directory entries as of their last sync. tear, when
// not nil, decides what survives of each file's unsynced tail (bytes
// appended after the last Sync): it returns a prefix, garbage or nothing.
// c itself is dead afterwards: it and its files fail with ErrCrashed, so
// that goroutines of the crashed process cannot touch the new disk.
func (c *CrashFS) Crash(tear func(name string, unsynced []byte) []byte) *CrashFS {
	c.lock()
	defer c.unlock()
	c.dead = true
	next := NewCrashFS()
	for d := range c.dirs {
		next.dirs[d] = true
	}
	for name, ino := range c.durable {
		data := append([]byte(nil), ino.synced...)
		if tear != nil && len(ino.data) > len(ino.synced) {
			data = append(data, tear(name, append([]byte(nil), ino.data[len(ino.synced):]...))...)
		}
		n := &memInode{data: data, synced: append([]byte(nil), data...)}
		next.live[name] = n
		next.durable[name] = n
	}
	return next
}

// Bytes returns a copy of a file's current contents (for tests that damage
// or inspect files).
func (c *CrashFS) Bytes(name string) ([]byte, bool) {
	c.lock()
	defer c.unlock()
	ino, ok := c.live[filepath.Clean(name)]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), ino.data...), true
}

// SetBytes replaces a file's contents, durably, as a disk fault would.
func (c *CrashFS) SetBytes(name string, b []byte) {
	c.lock()
	defer c.unlock()
	ino, ok := c.live[filepath.Clean(name)]
	if !ok {
		return
	}
	ino.data = append(ino.data[:0], b...)
	ino.synced = append([]byte(nil), b...)
}

func (c *CrashFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	name = filepath.Clean(name)
	c.lock()
	defer c.unlock()
	if c.dead {
		return nil, ErrCrashed
	}
	if !c.dirs[filepath.Dir(name)] {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	ino, ok := c.live[name]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		ino = &memInode{}
		c.live[name] = ino
	}
	if flag&os.O_TRUNC != 0 {
		ino.data = ino.data[:0]
	}
	return &memFile{fs: c, ino: ino, writable: flag&(os.O_RDWR|os.O_WRONLY) != 0}, nil
}

func (c *CrashFS) Remove(name string) error {
	name = filepath.Clean(name)
	c.lock()
	defer c.unlock()
	if c.dead {
		return ErrCrashed
	}
	if _, ok := c.live[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(c.live, name)
	return nil
}

func (c *CrashFS) RemoveAll(dir string) error {
	dir = filepath.Clean(dir)
	c.lock()
	defer c.unlock()
	if c.dead {
		return ErrCrashed
	}
	for name := range c.live {
		if name == dir || isUnder(name, dir) {
			delete(c.live, name)
		}
	}
	for name := range c.durable {
		if isUnder(name, dir) {
			delete(c.durable, name)
		}
	}
	for d := range c.dirs {
		if d == dir || isUnder(d, dir) {
			delete(c.dirs, d)
		}
	}
	return nil
}

func isUnder(name, dir string) bool {
	return len(name) > len(dir) && name[:len(dir)] == dir && name[len(dir)] == '/'
}

func (c *CrashFS) Rename(oldname, newname string) error {
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	c.lock()
	defer c.unlock()
	if c.dead {
		return ErrCrashed
	}
	ino, ok := c.live[oldname]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	delete(c.live, oldname)
	c.live[newname] = ino
	return nil
}

func (c *CrashFS) MkdirAll(dir string, perm os.FileMode) error {
	c.lock()
	defer c.unlock()
	if c.dead {
		return ErrCrashed
	}
	for d := filepath.Clean(dir); !c.dirs[d]; d = filepath.Dir(d) {
		c.dirs[d] = true
	}
	return nil
}

func (c *CrashFS) ReadDir(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	c.lock()
	defer c.unlock()
	if c.dead {
		return nil, ErrCrashed
	}
	if !c.dirs[dir] {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for name := range c.live {
		if filepath.Dir(name) == dir {
			names = append(names, filepath.Base(name))
		}
	}
	sort.Strings(names)
	return names, nil
}

func (c *CrashFS) SyncDir(dir string) error {
	dir = filepath.Clean(dir)
	c.lock()
	defer c.unlock()
	if c.dead {
		return ErrCrashed
	}
	if c.syncErr != nil {
		return c.syncErr
	}
	for name := range c.durable {
		if filepath.Dir(name) == dir {
			delete(c.durable, name)
		}
	}
	for name, ino := range c.live {
		if filepath.Dir(name) == dir {
			c.durable[name] = ino
		}
	}
	return nil
}

type memFile struct {
	fs       *CrashFS
	ino      *memInode
	writable bool
	closed   bool
}

func (f *memFile) check() error {
	if f.closed {
		return os.ErrClosed
	}
	if f.fs.dead {
		return ErrCrashed
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.lock()
	defer f.fs.unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.lock()
	defer f.fs.unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	if !f.writable {
		return 0, os.ErrPermission
	}
	if f.fs.writeErr != nil {
		return 0, f.fs.writeErr
	}
	if end := off + int64(len(p)); end > int64(len(f.ino.data)) {
		if end > int64(cap(f.ino.data)) {
			grown := make([]byte, len(f.ino.data), 2*end)
			copy(grown, f.ino.data)
			f.ino.data = grown
		}
		f.ino.data = f.ino.data[:end]
	}
	copy(f.ino.data[off:], p)
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.lock()
	defer f.fs.unlock()
	if err := f.check(); err != nil {
		return err
	}
	if f.fs.syncErr != nil {
		return f.fs.syncErr
	}
	f.ino.synced = append(f.ino.synced[:0], f.ino.data...)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.lock()
	defer f.fs.unlock()
	if err := f.check(); err != nil {
		return err
	}
	if size <= int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:size]
	} else {
		f.ino.data = append(f.ino.data, make([]byte, size-int64(len(f.ino.data)))...)
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.lock()
	defer f.fs.unlock()
	if err := f.check(); err != nil {
		return 0, err
	}
	return int64(len(f.ino.data)), nil
}

func (f *memFile) Close() error {
	f.fs.lock()
	defer f.fs.unlock()
	if f.closed {
		return os.ErrClosed
	}
	f.closed = true
	return nil
}
