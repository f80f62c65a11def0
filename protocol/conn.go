package protocol

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

var errTooManyOpenFiles = syscall.EMFILE

// minHeaderBytes is the smallest request header: key, version, correlation
// id and a null client id.
const minHeaderBytes = 2 + 2 + 4 + 2

// conn is one client connection. The read goroutine owns reading and
// handling; the write goroutine owns writing and closing the socket. A
// fetch answer is written by the reader itself when nothing is queued for
// the writer: a consumer has one fetch in flight, and the
// handoff to the writer (a channel send waking another thread) cost more
// CPU than the rest of the fetch outside sendfile. The reader then reads
// the next request once the answer is in the socket, as Kafka does.
type conn struct {
	s      *Server
	l      *listener
	nc     net.Conn
	remote string
	host   string // "/" + peer IP, as Kafka reports client hosts

	// ctx ends when the connection is killed, so handlers blocked on the
	// Backend or Groups give up.
	ctx    context.Context
	cancel context.CancelFunc

	out chan response // read goroutine -> write goroutine, in request order
	// queued is the bytes of the answers in out or being written; the
	// writer signals drained (buffered, never blocks) when it lowers it.
	queued  atomic.Int64
	drained chan struct{}
	// unwritten counts the answers sent to out and not yet written; at 0
	// the writer is idle and the reader may write a fetch answer itself.
	unwritten atomic.Int64
	ibuf      []byte // the reader's buffer for answers it writes

	// tlsw gathers a TLS connection's writes into full records; nil on
	// plaintext, where writev already sends a response in one call.
	tlsw *bufio.Writer
	// zeroCopy: fetched records may be sent from files (sendfile.go).
	zeroCopy bool

	// clientID of the last request, for logs.
	clientID string
	// principal is who the connection is: anonymous from its address
	// until it authenticates. Every request's context carries it.
	principal Principal
	// sasl is the connection's authentication state (sasl_conn.go).
	sasl saslConn

	acct connAccount // quotas and per-user accounting (quota.go)
}

// response is one answer on its way to the write goroutine.
type response struct {
	corr  int32
	key   int16
	resp  kmsg.Response
	start time.Time
	bytes int64 // counted in conn.queued
	// raw, with a nil resp, is a bare SASL token (SaslHandshake v0),
	// written with its size and nothing else.
	raw []byte
}

func newConn(s *Server, l *listener, nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	host := nc.RemoteAddr().String()
	principal := Principal{Listener: l.cfg.Name, TLS: l.cfg.TLS != nil}
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		host = ta.IP.String()
		principal.Addr = ta.AddrPort().Addr().Unmap()
	}
	c := &conn{
		s:       s,
		l:       l,
		nc:      nc,
		host:    "/" + host,
		remote:  nc.RemoteAddr().String(),
		ctx:     ctx,
		cancel:  cancel,
		out:     make(chan response, 32), // pipelined requests awaiting their answer
		drained: make(chan struct{}, 1),

		principal: principal,
	}
	if l.cfg.TLS != nil {
		// crypto/tls turns every Write into at least one record and a
		// syscall: a fetch answer's many small pieces (headers between
		// batches) are gathered into full records first.
		c.tlsw = bufio.NewWriterSize(nc, tlsWriteBuffer)
	}
	c.zeroCopy = !s.cfg.FetchCopy && zeroCopy(nc, l.cfg.TLS != nil)
	return c
}

// stopReading wakes a reader waiting for its next request (Shutdown).
func (c *conn) stopReading() { c.nc.SetReadDeadline(time.Unix(1, 0)) }

// kill closes the connection at once (Shutdown past its deadline).
func (c *conn) kill() {
	c.cancel()
	c.nc.Close()
}

// clientError logs one line for something a client did wrong and counts it.
func (c *conn) clientError(reason, msg string, fields ...zap.Field) {
	c.s.m.clientErrors.WithLabelValues(reason).Inc()
	c.s.log.Warn(msg, append(fields, zap.String("remote", c.remote), zap.String("listener", c.l.cfg.Name),
		zap.String("client_id", c.clientID))...)
}

// read reads, decodes and answers requests one at a time until the client
// goes, breaks the protocol or the server shuts down.
func (c *conn) read() {
	defer close(c.out) // the writer flushes what is queued, then closes
	defer c.closeAccount()
	if !c.handshakeTLS() {
		return
	}
	var size [4]byte
	for {
		if !c.waitDrained() || !c.waitMuted() {
			return
		}
		c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
		select {
		case <-c.s.done:
			return
		default:
		}
		if _, err := io.ReadFull(c.nc, size[:]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				select {
				case <-c.s.done:
				default:
					c.s.log.Debug("closing idle connection", zap.String("remote", c.remote),
						zap.Duration("connections.max.idle.ms", c.s.cfg.IdleTimeout))
				}
			}
			return
		}
		if c.sasl.raw { // a bare SASL token after SaslHandshake v0
			if !c.saslRawToken(size) {
				return
			}
			continue
		}
		n := int64(binary.BigEndian.Uint32(size[:]))
		if int32(n) < minHeaderBytes || n > int64(c.s.cfg.MaxRequestBytes) {
			c.clientError("frame_size", "closing connection: request size out of bounds",
				zap.Int64("size", int64(int32(n))), zap.Int("socket.request.max.bytes", c.s.cfg.MaxRequestBytes),
				zap.String("looks_like", sniff(size)))
			return
		}
		frame, held, err := c.readFrame(int(n))
		if err != nil {
			switch {
			case errors.Is(err, errFrameBudget):
				c.clientError("frame_budget", "closing connection: request frame waited too long for memory",
					zap.Int64("size", n), zap.Int64("queued.max.request.bytes", c.s.frames.total),
					zap.Duration("socket.request.read.timeout.ms", c.s.cfg.RequestReadTimeout))
			case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
				c.clientError("short_frame", "closing connection: reading request", zap.Int64("size", n), zap.Error(err))
			}
			return
		}
		c.s.m.bytesRead.Add(float64(4 + n))
		r, recycle, ok := c.handle(frame)
		if recycle {
			putBuf(frame)
		}
		// Counted until answered, as Kafka's queued.max.request.bytes,
		// whether or not Groups keeps a reference to the frame.
		c.s.frames.releaseFrame(c, int(n), held)
		if !ok {
			return
		}
		if r.resp == nil {
			continue
		}
		if fr, isFetch := r.resp.(*fetchResponse); isFetch {
			// Records in memory and in files alike: what the client
			// has not read yet (connection.max.inflight.response.bytes).
			r.bytes = fr.held + fr.fileBytes
			c.queued.Add(r.bytes)
			if c.unwritten.Load() == 0 {
				// The writer is idle: write the answer here.
				var ok bool
				if c.ibuf, ok = c.answer(c.ibuf, r); !ok {
					return
				}
				continue
			}
		}
		c.unwritten.Add(1)
		select {
		case c.out <- r:
		case <-c.ctx.Done():
			c.unwritten.Add(-1)
			c.queued.Add(-r.bytes)
			releaseResponse(r.resp)
			return
		}
		if c.sasl.failed { // the answer says why; then the connection closes
			return
		}
	}
}

// waitDrained holds the next request while the answers queued for the
// client exceed connection.max.inflight.response.bytes: one that does not
// read them is not served more. It reports false when the connection or the
// server ends meanwhile.
func (c *conn) waitDrained() bool {
	for c.queued.Load() > int64(c.s.cfg.ConnectionMaxInflightResponseBytes) {
		select {
		case <-c.drained:
		case <-c.ctx.Done():
			return false
		case <-c.s.done:
			return false
		}
	}
	return true
}

// errFrameBudget is a request frame that could not get memory before its
// read deadline.
var errFrameBudget = errors.New("protocol: queued.max.request.bytes spent")

// readFrame reads a request body of n bytes under one deadline,
// socket.request.read.timeout.ms for the whole frame, and takes its memory
// from queued.max.request.bytes: a small frame at once, a bigger one as its
// bytes arrive, so that a client announcing 100 MiB and sending little holds
// little. It returns the frame and the bytes it holds in the budget, to be
// given back once the request is answered.
func (c *conn) readFrame(n int) ([]byte, int64, error) {
	deadline := time.Now().Add(c.s.cfg.RequestReadTimeout)
	c.nc.SetReadDeadline(deadline)
	budget := c.s.frames
	if n <= smallFrameBytes {
		if !budget.growFrame(c, n, int64(n), deadline) {
			return nil, 0, errFrameBudget
		}
		// Small frames come from the pool and go back once answered (see
		// handle for the ones that stay referenced), so a producer
		// streaming 1 MB requests does not allocate, clear and collect
		// 1 MB per request.
		frame := getBuf(n)
		if _, err := io.ReadFull(c.nc, frame); err != nil {
			putBuf(frame)
			budget.releaseFrame(c, n, int64(n))
			return nil, 0, err
		}
		return frame, int64(n), nil
	}
	// A big frame doubles its buffer when full, from smallFrameBytes up to
	// n; the old array is garbage as soon as it is copied.
	var frame []byte
	var held int64
	for len(frame) < n {
		if len(frame) == cap(frame) {
			next := min(max(2*cap(frame), smallFrameBytes), n)
			if !budget.growFrame(c, n, int64(next-cap(frame)), deadline) {
				budget.releaseFrame(c, n, held)
				return nil, 0, errFrameBudget
			}
			held = int64(next)
			grown := make([]byte, len(frame), next)
			copy(grown, frame)
			frame = grown
		}
		m, err := c.nc.Read(frame[len(frame):cap(frame)])
		frame = frame[:len(frame)+m]
		if err != nil && len(frame) < n {
			budget.releaseFrame(c, n, held)
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, 0, err
		}
	}
	return frame, held, nil
}

// handle decodes one frame and answers it. ok false closes the connection.
// recycle false means the frame's bytes may still be referenced: kmsg
// decodes byte fields as sub-slices of the frame and Groups keeps member
// metadata and assignments. Produce's record batches are not kept: the
// Backend contract says they are written before Produce returns.
func (c *conn) handle(frame []byte) (r response, recycle, ok bool) {
	start := time.Now()
	rd := kbin.Reader{Src: frame}
	key, version, corr := rd.Int16(), rd.Int16(), rd.Int32()
	cid := rd.NullableString()
	if cid != nil {
		c.clientID = *cid
	}
	if !rd.Ok() {
		c.clientError("malformed_header", "closing connection: malformed request header", zap.Int16("api_key", key))
		return r, true, false
	}
	r = response{corr: corr, key: key, start: start}
	a, known := apis[key]
	if !known || (a.groups && c.s.g == nil) {
		c.clientError("unknown_api", "closing connection: unsupported api key",
			zap.Int16("api_key", key), zap.Int16("api_version", version))
		return r, true, false
	}
	if !c.saslAllows(key) {
		c.clientError("unauthenticated", "closing connection: request before SASL authentication",
			zap.Int16("api_key", key))
		return r, true, false
	}
	name := kmsg.NameForKey(key)
	if key == apiVersionsKey && version > a.max {
		// KIP-511: the body of a newer version cannot be parsed; answer
		// v0 so the client learns what we serve and retries.
		c.s.m.request(name)
		r.resp = apiVersionsFallback(c.s)
		return r, true, true
	}
	if version < a.min || version > a.max {
		c.clientError("unsupported_version", "closing connection: unsupported api version",
			zap.String("api", name), zap.Int16("api_version", version), zap.Int16("min", a.min), zap.Int16("max", a.max))
		return r, true, false
	}
	recycle = !a.groups
	req := kmsg.RequestForKey(key)
	req.SetVersion(version)
	if req.IsFlexible() {
		kmsg.SkipTags(&rd)
		if !rd.Ok() {
			c.clientError("malformed_header", "closing connection: malformed request header tags", zap.String("api", name))
			return r, true, false
		}
	}
	if err := req.ReadFrom(rd.Src); err != nil {
		c.clientError("malformed_body", "closing connection: malformed request body",
			zap.String("api", name), zap.Int16("api_version", version), zap.Error(err))
		return r, true, false
	}
	c.s.m.request(name)
	resp, err := c.serve(a, req)
	if err != nil {
		c.clientError("request_refused", "closing connection", zap.String("api", name),
			zap.Int16("api_version", version), zap.Error(err))
		return r, recycle, false
	}
	if resp != nil {
		resp.SetVersion(version)
	} else {
		c.s.m.observe(name, time.Since(start))
	}
	r.resp = resp
	return r, recycle, true
}

// serve runs a handler, turning a panic into a closed connection: one bad
// request must never take the broker down.
func (c *conn) serve(a api, req kmsg.Request) (resp kmsg.Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.s.log.Error("handler panic", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			resp, err = nil, fmt.Errorf("internal error: %v", p)
		}
	}()
	return a.serve(c.s, c, req)
}

// write encodes and writes responses in order; it owns closing the socket.
func (c *conn) write() {
	defer c.s.dropConn(c)
	defer c.cancel()
	defer c.nc.Close()
	buf := make([]byte, 0, 4096)
	for r := range c.out {
		var ok bool
		buf, ok = c.answer(buf, r)
		c.unwritten.Add(-1)
		if !ok {
			for r := range c.out { // let the reader finish and exit
				releaseResponse(r.resp)
				c.written(r)
				c.unwritten.Add(-1)
			}
			return
		}
	}
}

// answer writes one response with buf, returning buf to reuse. On a write
// error it closes the connection and reports false.
func (c *conn) answer(buf []byte, r response) ([]byte, bool) {
	buf, err := c.writeOne(buf, r)
	c.written(r)
	c.s.m.observe(kmsg.NameForKey(r.key), time.Since(r.start))
	if err != nil {
		if !errors.Is(err, net.ErrClosed) {
			c.s.log.Debug("writing response", zap.String("remote", c.remote), zap.Error(err))
		}
		c.nc.Close()
		c.cancel()
		return buf, false
	}
	if cap(buf) > 1<<20 {
		buf = make([]byte, 0, 4096) // do not pin a one-off large answer
	}
	return buf, true
}

// written uncounts an answer written or dropped and wakes a reader held
// by waitDrained.
func (c *conn) written(r response) {
	if r.bytes == 0 {
		return
	}
	c.queued.Add(-r.bytes)
	select {
	case c.drained <- struct{}{}:
	default:
	}
}

// writeOne writes one response frame: size, correlation id, the header's
// tagged fields (flexible versions, never ApiVersions) and the body.
func (c *conn) writeOne(buf []byte, r response) ([]byte, error) {
	defer releaseResponse(r.resp)
	if pr, ok := r.resp.(*produceResponse); ok {
		pr.resolve()
	}
	if r.resp == nil {
		buf = binary.BigEndian.AppendUint32(buf[:0], uint32(len(r.raw)))
		buf = append(buf, r.raw...)
		c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
		return buf, c.send(buf)
	}
	buf = append(buf[:0], 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(buf[4:], uint32(r.corr))
	if r.resp.IsFlexible() && r.key != apiVersionsKey {
		buf = append(buf, 0)
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	if fr, ok := r.resp.(*fetchResponse); ok {
		chunks, n, grown := fr.appendChunks(buf)
		binary.BigEndian.PutUint32(chunks[0].b[:4], uint32(n-4))
		c.s.m.bytesWritten.Add(float64(n))
		return grown, c.sendFetch(chunks, fr.fileBytes > 0)
	}
	buf = r.resp.AppendTo(buf)
	binary.BigEndian.PutUint32(buf[:4], uint32(len(buf)-4))
	c.s.m.bytesWritten.Add(float64(len(buf)))
	return buf, c.send(buf)
}

// sendFetch writes a fetch answer: with sendfile when it has records in
// files and the connection allows it, else with writev (through the TLS
// writer on TLS).
func (c *conn) sendFetch(chunks []chunk, files bool) error {
	if files && c.zeroCopy {
		rc, err := c.nc.(syscall.Conn).SyscallConn()
		if err != nil {
			return err
		}
		sent, err := sendChunks(rc, chunks)
		c.s.m.sendfileBytes.Add(float64(sent))
		if !errors.Is(err, errNotOSFile) {
			return err
		}
	}
	if files || c.tlsw != nil {
		w := io.Writer(c.nc)
		if c.tlsw != nil {
			w = c.tlsw
		}
		err := writeChunks(w, chunks)
		if c.tlsw != nil {
			err = errors.Join(err, c.tlsw.Flush())
		}
		return err
	}
	bufs := make(net.Buffers, len(chunks))
	for i, ch := range chunks {
		bufs[i] = ch.b
	}
	_, err := bufs.WriteTo(c.nc)
	return err
}

// tlsWriteBuffer is a TLS connection's write buffer: one maximum-size TLS
// record (16 KiB) four times over.
const tlsWriteBuffer = 64 << 10

// send writes one whole response.
func (c *conn) send(b []byte) error {
	if c.tlsw != nil {
		if _, err := c.tlsw.Write(b); err != nil {
			return err
		}
		return c.tlsw.Flush()
	}
	_, err := c.nc.Write(b)
	return err
}

// sniff names what a frame that is not Kafka seems to be, for the log.
func sniff(b [4]byte) string {
	switch {
	case b[0] == 0x16 && b[1] == 0x03:
		return "TLS handshake on a plaintext listener"
	case string(b[:]) == "GET " || string(b[:]) == "POST" || string(b[:]) == "PUT " || string(b[:]) == "HEAD":
		return "HTTP"
	}
	return "unknown"
}

// Request frames and fetched records come from size-classed pools so a busy
// connection does not allocate per request.
var bufPools [28]sync.Pool // class i holds buffers of cap 1<<i

func bufClass(n int) int {
	i := 9 // 512 bytes minimum
	for 1<<i < n {
		i++
	}
	return i
}

// getBuf returns a buffer of length n.
func getBuf(n int) []byte {
	i := bufClass(n)
	if i >= len(bufPools) {
		return make([]byte, n)
	}
	if p, ok := bufPools[i].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<i)
}

// putBuf recycles a buffer from getBuf.
func putBuf(b []byte) {
	c := cap(b)
	if c == 0 || c&(c-1) != 0 {
		return
	}
	i := bufClass(c)
	if i >= len(bufPools) {
		return
	}
	b = b[:0]
	bufPools[i].Put(&b)
}

// errCode turns a Backend error into a Kafka error code: a *kerr.Error is
// its code; anything else is logged and becomes fallback.
func (s *Server) errCode(err error, fallback *kerr.Error, what string, fields ...zap.Field) int16 {
	if err == nil {
		return 0
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return kerr.RequestTimedOut.Code
	}
	s.log.Error(what, append(fields, zap.Error(err))...)
	return fallback.Code
}
