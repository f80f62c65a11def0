package protocol

import (
	"errors"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

const sendfileSupported = true

// maxSendfile is the most one sendfile(2) call is asked to move (Linux
// moves at most 0x7ffff000 bytes a call).
const maxSendfile = 1 << 30

// sendChunks writes chunks to the socket of rc in order: bytes with sendmsg
// (MSG_MORE while more follows), file sections with sendfile(2) from their
// own offsets. A full socket is waited on by returning false to rc.Write,
// which honours the write deadline. It returns the bytes sent from files.
// It returns errNotOSFile, having written nothing, when a section is not an
// *os.File.
func sendChunks(rc syscall.RawConn, chunks []chunk) (int64, error) {
	type file struct {
		fd       int
		off, end int64
	}
	files := make([]file, len(chunks))
	for i, ch := range chunks {
		if ch.f == nil {
			continue
		}
		f, off, n, ok := osFile(ch.f)
		if !ok {
			return 0, errNotOSFile
		}
		fc, err := f.SyscallConn()
		if err != nil {
			return 0, err
		}
		// The descriptor number is kept past Control: the Backend holds
		// the file open until the response is released.
		fd := -1
		if err := fc.Control(func(u uintptr) { fd = int(u) }); err != nil {
			return 0, err
		}
		files[i] = file{fd: fd, off: off, end: off + n}
	}
	var (
		i      int   // the chunk being sent
		done   int   // bytes of chunk i sent, for bytes
		fromFs int64 // bytes sent from files
		opErr  error
		iov    [][]byte
	)
	err := rc.Write(func(sfd uintptr) bool {
		for i < len(chunks) {
			var n int
			var err error
			if chunks[i].f == nil {
				// Every byte chunk up to the next file, in one sendmsg.
				iov = iov[:0]
				j := i
				for ; j < len(chunks) && chunks[j].f == nil; j++ {
					b := chunks[j].b
					if j == i {
						b = b[done:]
					}
					if len(b) > 0 {
						iov = append(iov, b)
					}
				}
				if len(iov) == 0 {
					i, done = j, 0
					continue
				}
				flags := unix.MSG_NOSIGNAL
				if j < len(chunks) {
					flags |= unix.MSG_MORE
				}
				n, err = unix.SendmsgBuffers(int(sfd), iov, nil, nil, flags)
				for n > 0 {
					rest := len(chunks[i].b) - done
					if n < rest {
						done += n
						break
					}
					n -= rest
					i, done = i+1, 0
				}
			} else {
				f := &files[i]
				if f.off >= f.end {
					i, done = i+1, 0
					continue
				}
				n, err = unix.Sendfile(int(sfd), f.fd, &f.off, int(min(f.end-f.off, maxSendfile)))
				fromFs += int64(max(n, 0))
				if err == nil && n == 0 {
					// The file is shorter than the section: never
					// send a response with a hole in it.
					opErr = io.ErrUnexpectedEOF
					return true
				}
			}
			switch {
			case err == nil:
			case errors.Is(err, unix.EAGAIN):
				return false // wait until the socket can take more
			case errors.Is(err, unix.EINTR):
			default:
				opErr = err
				return true
			}
		}
		return true
	})
	if err == nil {
		err = opErr
	}
	return fromFs, err
}
