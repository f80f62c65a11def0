package archive

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

// gzipWriter writes one gzip member, compressing blockSize pieces of input
// on every core. Each piece gets the 32 KiB before it as dictionary and ends
// in a sync flush, so the pieces concatenate into one deflate stream that any
// gunzip reads, at a cost of a few bytes per MiB. The CRC is computed in
// Write, in order, which is cheap next to deflate.
//
// Write, Sync and Close are called from one goroutine (the owner). Workers
// compress; one writer goroutine writes results to dst in submission order.
type gzipWriter struct {
	dst   io.Writer
	level int

	crc    uint32
	size   int64  // input bytes so far (the trailer keeps it mod 2^32)
	window []byte // last ≤32 KiB of input before buf
	buf    []byte // input not yet submitted

	work  chan *gzBlock
	order chan *gzBlock
	pool  sync.Pool

	mu      sync.Mutex
	err     error // sticky: the first write or compress error
	written int64 // bytes written to dst by the writer goroutine

	wg     sync.WaitGroup
	closed bool
}

type gzBlock struct {
	in, dict []byte
	last     bool
	out      bytes.Buffer
	done     chan struct{}
	barrier  chan struct{} // set on Sync markers; no data
}

const (
	gzBlockSize  = 1 << 20
	gzWindowSize = 32 << 10
)

// gzState is what a checkpoint must keep to continue a gzip member.
type gzState struct {
	CRC    uint32 `json:"crc32"`
	Size   int64  `json:"input_bytes"`
	Window []byte `json:"window"`
}

// newGzipWriter starts a member on dst, or continues one from st (nil for a
// new member, whose header it writes) after the written bytes already in dst.
func newGzipWriter(dst io.Writer, level, workers int, st *gzState, written int64) (*gzipWriter, error) {
	if _, err := flate.NewWriter(io.Discard, level); err != nil {
		return nil, err
	}
	if workers < 1 {
		workers = 1
	}
	w := &gzipWriter{
		dst:   dst,
		level: level,
		work:  make(chan *gzBlock, workers),
		order: make(chan *gzBlock, 2*workers+2),
		buf:   make([]byte, 0, gzBlockSize),
	}
	w.pool.New = func() any { return make([]byte, 0, gzBlockSize) }
	if st != nil {
		w.crc, w.size, w.window = st.CRC, st.Size, append([]byte(nil), st.Window...)
		w.written = written
	} else {
		// No name, no mtime, OS unknown: the same input gives the same bytes.
		hdr := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}
		if _, err := dst.Write(hdr); err != nil {
			return nil, err
		}
		w.written = int64(len(hdr))
	}
	for range workers {
		w.wg.Add(1)
		go w.compressLoop()
	}
	w.wg.Add(1)
	go w.writeLoop()
	return w, nil
}

func (w *gzipWriter) compressLoop() {
	defer w.wg.Done()
	var fw *flate.Writer
	for b := range w.work {
		if fw == nil {
			fw, _ = flate.NewWriter(io.Discard, w.level)
		}
		fw.ResetDict(&b.out, b.dict)
		_, err := fw.Write(b.in)
		if err == nil {
			if b.last {
				err = fw.Close()
			} else {
				err = fw.Flush()
			}
		}
		if err != nil {
			w.fail(err)
		}
		close(b.done)
	}
}

func (w *gzipWriter) writeLoop() {
	defer w.wg.Done()
	for b := range w.order {
		if b.barrier != nil {
			close(b.barrier)
			continue
		}
		<-b.done
		if w.failed() == nil {
			n, err := w.dst.Write(b.out.Bytes())
			w.mu.Lock()
			w.written += int64(n)
			w.mu.Unlock()
			if err != nil {
				w.fail(err)
			}
		}
		w.pool.Put(b.in[:0])
	}
}

func (w *gzipWriter) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *gzipWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *gzipWriter) Write(p []byte) (int, error) {
	if err := w.failed(); err != nil {
		return 0, err
	}
	n := len(p)
	w.crc = crc32.Update(w.crc, crc32.IEEETable, p)
	w.size += int64(n)
	for len(p) > 0 {
		c := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+c]
		p = p[c:]
		if len(w.buf) == cap(w.buf) {
			w.submit(false)
		}
	}
	return n, nil
}

// submit hands buf to the workers (even when empty, for the final block).
func (w *gzipWriter) submit(last bool) {
	b := &gzBlock{in: w.buf, dict: w.window, last: last, done: make(chan struct{})}
	w.window = tail(w.window, w.buf)
	w.buf = w.pool.Get().([]byte)
	w.order <- b
	w.work <- b
}

// tail is the last gzWindowSize bytes of prev followed by next, in a new slice.
func tail(prev, next []byte) []byte {
	if len(next) >= gzWindowSize {
		return append([]byte(nil), next[len(next)-gzWindowSize:]...)
	}
	keep := min(len(prev), gzWindowSize-len(next))
	out := make([]byte, 0, keep+len(next))
	out = append(out, prev[len(prev)-keep:]...)
	return append(out, next...)
}

// Sync sync-flushes what was written so far, waits until it is all in dst,
// and returns the state that continues the member after it and the number of
// bytes written to dst.
func (w *gzipWriter) Sync() (gzState, int64, error) {
	if len(w.buf) > 0 {
		w.submit(false)
	}
	bar := &gzBlock{barrier: make(chan struct{})}
	w.order <- bar
	<-bar.barrier
	w.mu.Lock()
	defer w.mu.Unlock()
	return gzState{CRC: w.crc, Size: w.size, Window: append([]byte(nil), w.window...)}, w.written, w.err
}

// Close ends the member (final block and trailer) and stops the goroutines.
// It returns the bytes written to dst.
func (w *gzipWriter) Close() (int64, error) {
	if w.closed {
		return 0, errors.New("archive: gzip writer closed twice")
	}
	w.closed = true
	w.submit(true)
	w.shutdown()
	if err := w.failed(); err != nil {
		return w.written, err
	}
	var tr [8]byte
	binary.LittleEndian.PutUint32(tr[:4], w.crc)
	binary.LittleEndian.PutUint32(tr[4:], uint32(w.size))
	n, err := w.dst.Write(tr[:])
	w.written += int64(n)
	return w.written, err
}

// Abort stops the goroutines without ending the member.
func (w *gzipWriter) Abort() {
	if !w.closed {
		w.closed = true
		w.shutdown()
	}
}

func (w *gzipWriter) shutdown() {
	close(w.work)
	close(w.order)
	w.wg.Wait()
}
