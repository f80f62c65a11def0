package log

import (
	"os"
	"syscall"
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
