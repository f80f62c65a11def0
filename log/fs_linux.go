package log

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdatasync skips the inode timestamps that fsync would also write; the
// file size, which appends change, is flushed either way.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// syncRange writes back [off, off+n) of f and waits for it, without the
// metadata commit of an fsync (sync_file_range: a hint, not durability).
func syncRange(f *os.File, off, n int64) {
	const flags = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
	unix.SyncFileRange(int(f.Fd()), off, n, flags)
}
