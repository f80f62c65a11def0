package log

import (
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/ztfbroker/ztfbroker/durable"
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

func (OSFS) SyncDir(dir string) error { return durable.SyncDir(dir) }

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

// CrashFS is an in-memory FS that remembers what has been made durable and
// can Crash: keep only that, as a power cut would. A file's contents are
// durable as of its last File.Sync; a name (a file or folder created,
// renamed or removed) as of the last SyncDir of the folder holding it, as
// in pebble's strict MemFS: that is all POSIX promises, and a folder lost
// in a crash takes everything under it, synced or not. The roots "/" and
// "." always exist. It is safe for concurrent use and meant for tests,
// here and in other packages.
type CrashFS struct {
	mu       chan struct{} // a mutex (a channel so that it needs no zero value care)
	dead     bool          // crashed: the process that used it is gone
	roots    map[string]*memNode
	syncErr  error
	writeErr error
}

// memNode is a file or a folder of a CrashFS.
type memNode struct {
	dir bool
	// A file's contents now and as of its last Sync.
	data, synced []byte
	// A folder's entries now and as of its last SyncDir.
	live, durable map[string]*memNode
}

func newMemDir() *memNode {
	return &memNode{dir: true, live: map[string]*memNode{}, durable: map[string]*memNode{}}
}

// NewCrashFS returns an empty crashable in-memory file system.
func NewCrashFS() *CrashFS {
	return &CrashFS{
		mu:    make(chan struct{}, 1),
		roots: map[string]*memNode{"/": newMemDir(), ".": newMemDir()},
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
// next boot: every folder's entries as of its last SyncDir, every file's
// contents as of its last Sync. tear, when not nil, decides what survives
// of each file's unsynced tail (bytes appended after the last Sync): it
// returns a prefix, garbage or nothing. c itself is dead afterwards: it
// and its files fail with ErrCrashed, so that goroutines of the crashed
// process cannot touch the new disk.
func (c *CrashFS) Crash(tear func(name string, unsynced []byte) []byte) *CrashFS {
	c.lock()
	defer c.unlock()
	c.dead = true
	next := NewCrashFS()
	// A renamed file whose old and new folders were both synced has two
	// durable names; it stays one file.
	booted := map[*memNode]*memNode{}
	var boot func(n *memNode, name string) *memNode
	boot = func(n *memNode, name string) *memNode {
		if m, ok := booted[n]; ok {
			return m
		}
		if n.dir {
			m := newMemDir()
			booted[n] = m
			for _, child := range slices.Sorted(maps.Keys(n.durable)) {
				b := boot(n.durable[child], filepath.Join(name, child))
				m.live[child], m.durable[child] = b, b
			}
			return m
		}
		data := append([]byte(nil), n.synced...)
		if tear != nil && len(n.data) > len(n.synced) {
			data = append(data, tear(name, append([]byte(nil), n.data[len(n.synced):]...))...)
		}
		m := &memNode{data: data, synced: append([]byte(nil), data...)}
		booted[n] = m
		return m
	}
	for _, root := range []string{"/", "."} {
		next.roots[root] = boot(c.roots[root], root)
	}
	return next
}

// walkLocked returns the root name starts from and the elements after it.
func (c *CrashFS) walkLocked(name string) (*memNode, []string) {
	name = filepath.Clean(name)
	root := c.roots["."]
	if filepath.IsAbs(name) {
		root, name = c.roots["/"], name[1:]
	}
	if name == "" || name == "." {
		return root, nil
	}
	return root, strings.Split(name, "/")
}

// lookupLocked returns the node named name now, or nil.
func (c *CrashFS) lookupLocked(name string) *memNode {
	n, parts := c.walkLocked(name)
	for _, part := range parts {
		if !n.dir {
			return nil
		}
		if n = n.live[part]; n == nil {
			return nil
		}
	}
	return n
}

// parentLocked returns the folder that holds name, or nil, and name's last
// element.
func (c *CrashFS) parentLocked(name string) (*memNode, string) {
	name = filepath.Clean(name)
	d := c.lookupLocked(filepath.Dir(name))
	if d == nil || !d.dir {
		return nil, ""
	}
	return d, filepath.Base(name)
}

// Bytes returns a copy of a file's current contents (for tests that damage
// or inspect files).
func (c *CrashFS) Bytes(name string) ([]byte, bool) {
	c.lock()
	defer c.unlock()
	n := c.lookupLocked(name)
	if n == nil || n.dir {
		return nil, false
	}
	return append([]byte(nil), n.data...), true
}

// SetBytes replaces a file's contents, durably, as a disk fault would.
func (c *CrashFS) SetBytes(name string, b []byte) {
	c.lock()
	defer c.unlock()
	n := c.lookupLocked(name)
	if n == nil || n.dir {
		return
	}
	n.data = append(n.data[:0], b...)
	n.synced = append([]byte(nil), b...)
}

func (c *CrashFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	c.lock()
	defer c.unlock()
	if c.dead {
		return nil, ErrCrashed
	}
	d, base := c.parentLocked(name)
	if d == nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	n, ok := d.live[base]
	switch {
	case ok && n.dir:
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		n = &memNode{}
		d.live[base] = n
	}
	if flag&os.O_TRUNC != 0 {
		n.data = n.data[:0]
	}
	return &memFile{fs: c, ino: n, writable: flag&(os.O_RDWR|os.O_WRONLY) != 0}, nil
}

// Remove removes a file or an empty folder.
func (c *CrashFS) Remove(name string) error {
	c.lock()
	defer c.unlock()
	if c.dead {
		return ErrCrashed
	}
	d, base := c.parentLocked(name)
	n := (*memNode)(nil)
	if d != nil {
		n = d.live[base]
	}
	switch {
	case n == nil:
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	case n.dir && len(n.live) > 0:
		return &fs.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
	}
	delete(d.live, base)
	return nil
}

// RemoveAll removes name and everything under it. Until its parent folder
// is synced, a crash brings the whole subtree back as it was last synced.
func (c *CrashFS) RemoveAll(name string) error {
	c.lock()
	defer c.unlock()
	if c.dead {
		return ErrCrashed
	}
	if d, base := c.parentLocked(name); d != nil {
		delete(d.live, base)
	}
	return nil
}

func (c *CrashFS) Rename(oldname, newname string) error {
	c.lock()
	defer c.unlock()
	if c.dead {
		return ErrCrashed
	}
	od, ob := c.parentLocked(oldname)
	nd, nb := c.parentLocked(newname)
	var n *memNode
	if od != nil {
		n = od.live[ob]
	}
	if n == nil || nd == nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	if t := nd.live[nb]; t != nil && t != n {
		switch {
		case t.dir && !n.dir:
			return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.EISDIR}
		case !t.dir && n.dir:
			return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.ENOTDIR}
		case t.dir && len(t.live) > 0:
			return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.ENOTEMPTY}
		}
	}
	delete(od.live, ob)
	nd.live[nb] = n
	return nil
}

func (c *CrashFS) MkdirAll(dir string, perm os.FileMode) error {
	c.lock()
	defer c.unlock()
	if c.dead {
		return ErrCrashed
	}
	n, parts := c.walkLocked(dir)
	for _, part := range parts {
		child := n.live[part]
		if child == nil {
			child = newMemDir()
			n.live[part] = child
		} else if !child.dir {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		n = child
	}
	return nil
}

// ReadDir lists the files and folders in dir.
func (c *CrashFS) ReadDir(dir string) ([]string, error) {
	c.lock()
	defer c.unlock()
	if c.dead {
		return nil, ErrCrashed
	}
	n := c.lookupLocked(dir)
	if n == nil {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	if !n.dir {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: syscall.ENOTDIR}
	}
	return slices.Sorted(maps.Keys(n.live)), nil
}

// SyncDir makes dir's entries as they are now the ones a crash keeps.
func (c *CrashFS) SyncDir(dir string) error {
	c.lock()
	defer c.unlock()
	if c.dead {
		return ErrCrashed
	}
	if c.syncErr != nil {
		return c.syncErr
	}
	n := c.lookupLocked(dir)
	if n == nil || !n.dir {
		return &fs.PathError{Op: "sync", Path: dir, Err: fs.ErrNotExist}
	}
	n.durable = maps.Clone(n.live)
	return nil
}

type memFile struct {
	fs       *CrashFS
	ino      *memNode
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
