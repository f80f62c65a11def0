package protocol

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Zero-copy fetch.
//
// On a plaintext listener (PLAINTEXT or SASL_PLAINTEXT) on Linux, a Fetch
// answer's records that the Backend holds in files and has already checked
// (FileFetcher) are written with sendfile(2) from the file straight to the
// socket: the bytes go from the page cache to the socket without a copy
// through this process, which matters on a small machine where the broker
// and its consumers share the cores. The encoded fields around them are
// written with sendmsg and MSG_MORE, so the kernel sends them with the
// records rather than as packets of their own. Each sendfile names its
// offset, so readers of one file never share a file position. A socket
// that is full is waited on through the poller (syscall.RawConn), under the
// connection's write deadline (socket.response.write.timeout.ms).
//
// TLS listeners keep the buffered path, as Kafka does: the records must be
// encrypted in user space anyway; so does every listener with fetch.copy
// (Config.FetchCopy). What sendfile saves is the broker's two copies of
// each byte (file to buffer, buffer to socket); the kernel's TCP work
// stays. Measured over loopback on a 2-core VM, against the copy path
// (issue 14): Java ConsumerPerformance and kcat consumed 1.3-1.5x faster
// at 0.56-0.71x the broker CPU per GB, 8 kcat consumers 1.34x at the same
// CPU; the consumers, on the same cores, copy the bytes out of the page
// cache themselves, so on loopback the gain is smaller than across a
// network.

// FileFetcher is optionally implemented by a Backend whose records live in
// files. FetchFiles is Fetch whose answer may begin with sections of open
// files (*os.File underneath): the records are the files, in order, then
// records (appended to dst, as Fetch does). fileRecords counts the records
// in the files. The Backend puts in files only bytes it has checked as it
// checks those it returns in records, and keeps them readable, whatever
// happens to the log meanwhile, until release is called; the listener
// calls it once they are written or dropped. release is never nil.
type FileFetcher interface {
	FetchFiles(ctx context.Context, topic string, partition int32, offset int64, maxBytes int, dst []byte) (files []*io.SectionReader, fileRecords int64, records []byte, release func(), highWatermark, logStartOffset int64, err error)
}

// chunk is one piece of a response on the wire: bytes, or a section of a
// file.
type chunk struct {
	b []byte
	f *io.SectionReader
}

// zeroCopy says whether fetched records may be sent from files on nc: a
// plaintext socket on a system with sendfile.
func zeroCopy(nc net.Conn, tls bool) bool {
	if tls || !sendfileSupported {
		return false
	}
	_, ok := nc.(syscall.Conn)
	return ok
}

// writeChunks writes chunks to w in order, copying the file sections
// through a buffer: the path for TLS and for systems without sendfile.
func writeChunks(w io.Writer, chunks []chunk) error {
	for _, ch := range chunks {
		if ch.f == nil {
			if _, err := w.Write(ch.b); err != nil {
				return err
			}
			continue
		}
		ra, off, n := ch.f.Outer()
		// A fresh section, hidden behind a plain Reader: io.Copy must
		// not hand the file to the socket's ReadFrom, which would use
		// (and move) the file's shared position.
		if _, err := io.Copy(w, struct{ io.Reader }{io.NewSectionReader(ra, off, n)}); err != nil {
			return err
		}
	}
	return nil
}

// osFile returns the *os.File under a section, if that is what it reads.
func osFile(sr *io.SectionReader) (*os.File, int64, int64, bool) {
	ra, off, n := sr.Outer()
	f, ok := ra.(*os.File)
	return f, off, n, ok
}

// errNotOSFile is a file section sendChunks cannot send: it wrote nothing.
var errNotOSFile = errors.New("protocol: file section is not an *os.File")
