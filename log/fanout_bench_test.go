package log

import (
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fanoutReaders is ZTF's fan-out: 8+ downstream brokers read the whole
// night of one topic.
const (
	fanoutReaders   = 8
	fanoutLogBytes  = 256 << 20
	fanoutBatch     = 64 << 10 // a producer batch of a few alerts
	fanoutFetchSize = 1 << 20  // max.partition.fetch.bytes' default
)

// BenchmarkFanout has 8 readers each read one 256 MiB partition from the
// start, a fetch of 1 MiB at a time, side by side: crc-every-read checks
// every batch's CRC on every read (as before verified ranges), verified
// skips the CRC of batches this process wrote or checked, and pread is the
// floor: the same bytes read into user space with nothing checked. One op
// is all 8 readers reading the whole log; MB/s counts all their bytes and
// cpu-ms/GB is process CPU (user + system) per GB served.
func BenchmarkFanout(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "t-0")
	l, err := Open(dir, Config{Flush: FlushInterval, SegmentBytes: 64 << 20}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rng := rand.New(rand.NewSource(14))
	batch := makeBatch(rng, 4, time.Now().UnixMilli(), fanoutBatch/4-40)
	for l.Size() < fanoutLogBytes {
		if _, err := l.Write(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	size := l.Size()
	// readers runs one reader on each of fanoutReaders goroutines and
	// waits for them; toConn gives each its own drained loopback socket.
	readers := func(read func()) {
		var wg sync.WaitGroup
		for r := 0; r < fanoutReaders; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				read()
			}()
		}
		wg.Wait()
	}
	toConn := func(b *testing.B, send func(conn *net.TCPConn)) {
		readers(func() {
			conn, drained := loopback(b)
			defer func() { conn.Close(); <-drained }()
			send(conn)
		})
	}
	read := func(b *testing.B) {
		readers(func() {
			buf := make([]byte, 0, 2*fanoutFetchSize)
			var off, n int64
			for off < l.HighWatermark() {
				out, err := l.Read(off, fanoutFetchSize, buf[:0])
				if err != nil {
					b.Error(err)
					return
				}
				off = nextOffsetAfter(out)
				n += int64(len(out))
			}
			if n != size {
				b.Errorf("read %d bytes, want %d", n, size)
			}
		})
	}
	pread := func(b *testing.B) {
		names, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		readers(func() {
			buf := make([]byte, fanoutFetchSize)
			for _, name := range names {
				f, err := os.Open(name)
				if err != nil {
					b.Error(err)
					return
				}
				for pos := int64(0); ; pos += fanoutFetchSize {
					if n, _ := f.ReadAt(buf, pos); n < len(buf) {
						break
					}
				}
				f.Close()
			}
		})
	}
	// To a socket: what a Fetch costs past the log. Each reader writes to
	// its own loopback TCP connection, drained by a goroutine; read+write
	// is the buffered path (Read, then write the buffer), spans the
	// listener's zero-copy path (ReadSpans, then sendfile of each span),
	// sendfile the floor (whole segment files, unchecked).
	spans := func(b *testing.B) {
		toConn(b, func(conn *net.TCPConn) {
			rc, err := conn.SyscallConn()
			if err != nil {
				b.Error(err)
				return
			}
			buf := make([]byte, 0, 2*fanoutFetchSize)
			for off := int64(0); off < l.HighWatermark(); {
				got, err := l.ReadSpans(off, fanoutFetchSize, buf[:0])
				if err != nil {
					b.Error(err)
					return
				}
				next := off
				for _, s := range got.Spans {
					if err := sendSpan(rc, s); err != nil {
						b.Error(err)
					}
					next += s.Offsets
				}
				if len(got.Tail) > 0 {
					conn.Write(got.Tail)
					next = nextOffsetAfter(got.Tail)
				}
				got.Release()
				off = next
			}
		})
	}
	toSocket := func(zeroCopy bool) func(*testing.B) {
		return func(b *testing.B) {
			toConn(b, func(conn *net.TCPConn) {
				if zeroCopy {
					names, _ := filepath.Glob(filepath.Join(dir, "*.log"))
					for _, name := range names {
						f, err := os.Open(name)
						if err != nil {
							b.Error(err)
							return
						}
						if _, err := conn.ReadFrom(f); err != nil {
							b.Error(err)
						}
						f.Close()
					}
					return
				}
				buf := make([]byte, 0, 2*fanoutFetchSize)
				for off := int64(0); off < l.HighWatermark(); {
					out, err := l.Read(off, fanoutFetchSize, buf[:0])
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := conn.Write(out); err != nil {
						b.Error(err)
						return
					}
					off = nextOffsetAfter(out)
				}
			})
		}
	}
	for _, c := range []struct {
		name string
		run  func(*testing.B)
		crc  bool
	}{
		{"crc-every-read", read, true}, {"verified", read, false}, {"pread", pread, false},
		{"socket/crc-every-read", toSocket(false), true}, {"socket/verified", toSocket(false), false},
		{"socket/spans", spans, false}, {"socket/sendfile", toSocket(true), false},
	} {
		b.Run(c.name, func(b *testing.B) {
			l.alwaysCRC = c.crc
			read(b) // warm the page cache
			b.SetBytes(fanoutReaders * size)
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.run(b)
			}
			b.StopTimer()
			gb := float64(b.N) * fanoutReaders * float64(size) / 1e9
			b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/gb, "cpu-ms/GB")
		})
	}
	l.alwaysCRC = false
}

// sendSpan sends s to the socket of rc with sendfile, as the listener does.
func sendSpan(rc syscall.RawConn, s Span) error {
	off, end := s.Pos, s.Pos+s.Len
	fd := int(s.File.Fd())
	var opErr error
	err := rc.Write(func(sfd uintptr) bool {
		for off < end {
			_, err := unix.Sendfile(int(sfd), fd, &off, int(end-off))
			if err == unix.EAGAIN {
				return false
			}
			if err != nil {
				opErr = err
				return true
			}
		}
		return true
	})
	if err == nil {
		err = opErr
	}
	return err
}

// loopback returns the sending end of a loopback TCP connection whose
// other end is read and dropped until drained is closed.
func loopback(b *testing.B) (*net.TCPConn, <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	drained := make(chan struct{})
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(drained)
			accepted <- nil
			return
		}
		accepted <- c
		io.Copy(io.Discard, c)
		c.Close()
		close(drained)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	<-accepted
	return c.(*net.TCPConn), drained
}

// nextOffsetAfter walks the batch headers of whole batches in b and
// returns the offset after the last one.
func nextOffsetAfter(b []byte) int64 {
	var next int64
	for len(b) >= batchHeaderSize {
		h, err := parseBatchHeader(b)
		if err != nil || h.Size > int64(len(b)) {
			break
		}
		next = h.nextOffset()
		b = b[h.Size:]
	}
	return next
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
