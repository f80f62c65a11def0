// Package protocol is ztfbroker's Kafka-wire listener.
//
// A Kafka request frame is
//
//	+-----------+---------+---------+----------------+-----------+--------------+------+
//	| size int32| key i16 | ver i16 | correlation i32| client id | [tagged flds]| body |
//	+-----------+---------+---------+----------------+-----------+--------------+------+
//
// where size counts every byte after itself, the client id is an int16-length
// nullable string and the tagged-field section is present only for flexible
// versions. A response frame is size, correlation id, a tagged-field byte for
// flexible versions (never for ApiVersions) and the body.
//
// Each connection has one read goroutine, which reads a frame, decodes it with
// kmsg and answers it through the handler registered for its key (one file
// per key, NN_name.go), and one write goroutine, which encodes and writes the
// answers in the order the requests came. Requests on one connection are
// handled one at a time, as Kafka does; clients pipeline across connections.
// Fetch answers are written with writev straight from the bytes the Backend
// returned: record batches are never decoded or re-encoded here.
package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("protocol: server closed")

// Config is the listener's configuration. Zero fields take the defaults of
// DefaultConfig, except NodeID, where 0 is a valid id. The yaml tags are the
// settings' names in ztfbroker's config file (Kafka's where Kafka has one).
type Config struct {
	// NodeID is this broker's node.id, advertised in Metadata and as the
	// leader of every partition and the coordinator of every group.
	NodeID int32 `yaml:"node.id"`
	// AdvertisedAddr (advertised.listeners) is the host:port clients are
	// told to connect to. Empty: the listener's own address, with an
	// unspecified IP replaced by this machine's first non-loopback IPv4
	// (librdkafka may resolve "localhost" to ::1, so IPv4 is preferred).
	AdvertisedAddr string `yaml:"-"`
	// MaxRequestBytes (socket.request.max.bytes) caps a request frame; a
	// larger announced size closes the connection before any allocation.
	MaxRequestBytes int `yaml:"socket.request.max.bytes"`
	// IdleTimeout (connections.max.idle.ms) closes a connection that sends
	// nothing for this long.
	IdleTimeout time.Duration `yaml:"connections.max.idle.ms"`
	// RequestReadTimeout bounds reading one whole request frame, from its
	// size to its last byte, waiting for queued.max.request.bytes
	// included: a client that stalls in the middle of a frame, or sends it
	// a few bytes at a time, is disconnected and its buffer freed.
	RequestReadTimeout time.Duration `yaml:"socket.request.read.timeout.ms"`
	// WriteTimeout bounds writing one response.
	WriteTimeout time.Duration `yaml:"socket.response.write.timeout.ms"`
	// MaxConnections (max.connections) refuses connections beyond it.
	MaxConnections int `yaml:"max.connections"`
	// FetchMaxBytes (fetch.max.bytes) caps the bytes of one Fetch response
	// whatever the request asks for (the first batch is always served).
	// Records this process has not CRC-checked yet, and every record on a
	// TLS listener, pass through a buffer (read and checked, or
	// encrypted), so this bounds the memory one fetch may hold: 16 MiB
	// instead of Kafka's 55 MiB, for a 4 GB machine; clients simply fetch
	// again. Checked records on plaintext listeners are sent from the
	// segment files with sendfile and hold no memory (sendfile.go).
	FetchMaxBytes int `yaml:"fetch.max.bytes"`
	// FetchCopy (fetch.copy) reads fetched records into memory and writes
	// them from there on plaintext listeners too, as on TLS, instead of
	// sending the checked ones from the segment files with sendfile
	// (sendfile.go), which saves the broker two copies per byte. For
	// measuring the two side by side, and for a kernel or file system
	// whose sendfile misbehaves.
	FetchCopy bool `yaml:"fetch.copy"`
	// FetchMaxWait caps a Fetch request's MaxWaitMs.
	FetchMaxWait time.Duration `yaml:"fetch.max.wait.ms"`
	// SendBufferBytes (socket.send.buffer.bytes, Kafka's name) is the
	// socket send buffer (SO_SNDBUF) of a connection whose round trip at
	// connect is under 1 ms, a client on this host or its LAN; connections
	// with a longer round trip are left to the kernel's autotuning. -1:
	// every connection is left to the kernel. See sockbuf.go.
	SendBufferBytes int `yaml:"socket.send.buffer.bytes"`
	// QueuedMaxRequestBytes (queued.max.request.bytes, Kafka's name) bounds
	// the bytes of request frames being read or handled, over every
	// connection; see budget.go.
	QueuedMaxRequestBytes int64 `yaml:"queued.max.request.bytes"`
	// MaxInflightResponseBytes (max.inflight.response.bytes) bounds the
	// fetched record bytes held in memory waiting to be written, over
	// every connection: Fetch shrinks its max bytes to what is free. Bytes
	// sent from files with sendfile are taken while the fetch runs and
	// given back once it knows they are in files: queued, they hold an
	// open file and page cache the kernel can evict, not memory.
	MaxInflightResponseBytes int64 `yaml:"max.inflight.response.bytes"`
	// ConnectionMaxInflightResponseBytes
	// (connection.max.inflight.response.bytes): a connection whose queued
	// answers exceed it takes no new request until its client reads them.
	// It counts every record byte not yet written, in memory or in files:
	// a client that does not read is not served more either way, and
	// holds no more segment files open.
	ConnectionMaxInflightResponseBytes int `yaml:"connection.max.inflight.response.bytes"`
	// FailedAuthenticationDelay (connection.failed.authentication.delay.ms,
	// Kafka's name and default, 100 ms) is every SASL listener's delay
	// unless the ListenerConfig sets its own; negative: none.
	FailedAuthenticationDelay time.Duration `yaml:"connection.failed.authentication.delay.ms"`
}

// DefaultConfig returns Kafka's defaults where Kafka has a setting.
func DefaultConfig() Config {
	return Config{
		MaxRequestBytes:    100 << 20,
		IdleTimeout:        10 * time.Minute,
		RequestReadTimeout: 30 * time.Second,
		WriteTimeout:       2 * time.Minute,
		MaxConnections:     5000,
		FetchMaxBytes:      16 << 20,
		FetchMaxWait:       30 * time.Second,
		SendBufferBytes:    256 << 10,
		// Kafka does not bound these by default (it sends fetched
		// records with sendfile); ztfbroker holds requests, and the
		// fetched records it reads to check or encrypt, in memory, so
		// they are sized for its default memory.budget.bytes (1 GiB).
		QueuedMaxRequestBytes:              128 << 20,
		MaxInflightResponseBytes:           128 << 20,
		ConnectionMaxInflightResponseBytes: 16 << 20,
		FailedAuthenticationDelay:          defaultFailedAuthDelay,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = d.MaxRequestBytes
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.RequestReadTimeout == 0 {
		c.RequestReadTimeout = d.RequestReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = d.MaxConnections
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = d.FetchMaxBytes
	}
	if c.FetchMaxWait == 0 {
		c.FetchMaxWait = d.FetchMaxWait
	}
	if c.SendBufferBytes == 0 {
		c.SendBufferBytes = d.SendBufferBytes
	}
	if c.QueuedMaxRequestBytes == 0 {
		c.QueuedMaxRequestBytes = d.QueuedMaxRequestBytes
	}
	if c.MaxInflightResponseBytes == 0 {
		c.MaxInflightResponseBytes = d.MaxInflightResponseBytes
	}
	if c.ConnectionMaxInflightResponseBytes == 0 {
		c.ConnectionMaxInflightResponseBytes = d.ConnectionMaxInflightResponseBytes
	}
	if c.FailedAuthenticationDelay == 0 {
		c.FailedAuthenticationDelay = d.FailedAuthenticationDelay
	}
	return c
}

// Validate reports every problem in c at once, naming the setting. Zero
// fields stand for their defaults, as in NewServer.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.NodeID < 0 {
		errs = append(errs, fmt.Errorf("node.id %d: must be >= 0", c.NodeID))
	}
	if c.AdvertisedAddr != "" {
		if _, _, err := splitHostPort(c.AdvertisedAddr); err != nil {
			errs = append(errs, fmt.Errorf("advertised.listeners %q: %w", c.AdvertisedAddr, err))
		}
	}
	if c.MaxRequestBytes < 1024 || int64(c.MaxRequestBytes) > 1<<31-1 {
		errs = append(errs, fmt.Errorf("socket.request.max.bytes %d: must be in [1024, 2147483647]", c.MaxRequestBytes))
	}
	if c.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("connections.max.idle.ms %v: must be > 0", c.IdleTimeout))
	}
	if c.RequestReadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("socket.request.read.timeout.ms %v: must be > 0", c.RequestReadTimeout))
	}
	if c.FailedAuthenticationDelay < -time.Millisecond || c.FailedAuthenticationDelay >= c.IdleTimeout {
		errs = append(errs, fmt.Errorf("connection.failed.authentication.delay.ms %v: out of range: -1 (none) or 0 to less than connections.max.idle.ms (%v)",
			c.FailedAuthenticationDelay, c.IdleTimeout))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("socket.response.write.timeout.ms %v: must be > 0", c.WriteTimeout))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("max.connections %d: must be >= 1", c.MaxConnections))
	}
	if c.FetchMaxBytes < 1 || int64(c.FetchMaxBytes) > 1<<31-1 {
		errs = append(errs, fmt.Errorf("fetch.max.bytes %d: must be in [1, 2147483647]", c.FetchMaxBytes))
	}
	if c.FetchMaxWait <= 0 {
		errs = append(errs, fmt.Errorf("fetch.max.wait.ms %v: must be > 0", c.FetchMaxWait))
	}
	if c.SendBufferBytes != -1 && (c.SendBufferBytes < minSendBuffer || c.SendBufferBytes > maxSendBuffer) {
		errs = append(errs, fmt.Errorf("socket.send.buffer.bytes %d: must be -1 (the kernel's autotuning) or in [%d, %d]: "+
			"a buffer of less than two 64 KiB loopback segments waits on the client's delayed acknowledgement (40 ms) every segment",
			c.SendBufferBytes, minSendBuffer, maxSendBuffer))
	}
	// A small request must always fit, even with a quarter of the budget.
	if c.QueuedMaxRequestBytes < 4*smallFrameBytes {
		errs = append(errs, fmt.Errorf("queued.max.request.bytes %d: must be at least %d (4 MiB)", c.QueuedMaxRequestBytes, 4*smallFrameBytes))
	}
	if c.MaxInflightResponseBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("max.inflight.response.bytes %d: must be at least 1048576 (1 MiB)", c.MaxInflightResponseBytes))
	}
	if c.ConnectionMaxInflightResponseBytes < 1 {
		errs = append(errs, fmt.Errorf("connection.max.inflight.response.bytes %d: must be >= 1", c.ConnectionMaxInflightResponseBytes))
	}
	return errors.Join(errs...)
}

// splitHostPort parses an advertised host:port.
func splitHostPort(addr string) (string, int32, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	if host == "" {
		return "", 0, errors.New("empty host")
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q not in [1, 65535]", ps)
	}
	return host, int32(port), nil
}

// ListenerConfig is what may differ between listeners of one server.
type ListenerConfig struct {
	// Name labels the listener in logs (PLAINTEXT, SASL_SSL, ...).
	Name string
	// AdvertisedAddr overrides Config.AdvertisedAddr for this listener.
	AdvertisedAddr string
	// TLS, when set, encrypts every connection (SSL, SASL_SSL); see
	// Certificate for one reloaded without a restart.
	TLS *tls.Config
	// SASLMechanisms, when set, makes this a SASL listener: a connection
	// must authenticate with one of them before any request other than
	// ApiVersions, SaslHandshake and SaslAuthenticate, as in Kafka.
	SASLMechanisms []string
	// AllowCIDRs, when set, are the only networks served: a connection
	// from anywhere else is closed at accept and counted.
	AllowCIDRs []netip.Prefix
	// Private marks a listener only this process's own clients dial (serve's
	// in-process packager and archiver): the failed-login limit, which is
	// per address, does not lock them out when someone on the same machine
	// floods the public listeners.
	Private bool
	// FailedAuthenticationDelay (connection.failed.authentication.delay.ms)
	// holds the answer to a failed SASL login, and the close of a
	// connection refused for too many of them, this long, so that a
	// password guesser's rate is bounded by it (login_delay.go). Zero means
	// Kafka's default, 100 ms; negative, no delay.
	FailedAuthenticationDelay time.Duration
}

// allows tells whether a peer address may connect.
func (lc ListenerConfig) allows(a netip.Addr) bool {
	if len(lc.AllowCIDRs) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range lc.AllowCIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// listener is one net.Listener being served and what it advertises.
type listener struct {
	cfg  ListenerConfig
	ln   net.Listener
	host string
	port int32
}

// Server serves the Kafka protocol on any number of listeners.
type Server struct {
	cfg    Config
	b      Backend
	g      Groups
	authz  Authorizer // nil allows everything; authz.go
	log    *zap.Logger
	m      *metrics
	ids    topicIDs
	done   chan struct{} // closed when Shutdown starts
	wg     sync.WaitGroup
	stopMu sync.Once
	// frames and responses are the memory budgets every connection shares
	// (budget.go).
	frames, responses *byteBudget
	// creds is the user store, when the Backend is one (Credentials);
	// logins limits and counts failed SASL logins.
	creds  Credentials
	logins *loginLimiter
	// held are connections refused for too many failed logins, waiting
	// out the listener's delay before they are closed (login_delay.go).
	held heldConns

	mu        sync.Mutex
	closing   bool
	listeners map[*listener]struct{}
	conns     map[*conn]struct{}
}

// NewServer checks cfg and returns a Server answering from b and, when g is
// not nil, serving the group and producer-id keys from g. A nil logger logs
// nothing; a nil registerer registers no metrics.
func NewServer(cfg Config, b Backend, g Groups, logger *zap.Logger, reg prometheus.Registerer) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("protocol: config: %w", err)
	}
	if b == nil {
		return nil, errors.New("protocol: nil Backend")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("protocol: metrics: %w", err)
	}
	s := &Server{
		cfg:       cfg,
		b:         b,
		g:         g,
		log:       logger,
		m:         m,
		done:      make(chan struct{}),
		listeners: make(map[*listener]struct{}),
		conns:     make(map[*conn]struct{}),
		frames:    newByteBudget(cfg.QueuedMaxRequestBytes),
		responses: newByteBudget(cfg.MaxInflightResponseBytes),
	}
	s.ids.b = b
	s.creds, _ = b.(Credentials)
	if s.logins, err = newLoginLimiter(reg); err != nil {
		return nil, fmt.Errorf("protocol: metrics: %w", err)
	}
	return s, nil
}

// SetCredentials replaces the user store SASL logins are checked against
// (by default the Backend, when it is one). Call before serving.
func (s *Server) SetCredentials(c Credentials) { s.creds = c }

// Serve accepts connections on ln until Shutdown, advertising
// Config.AdvertisedAddr. It returns ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.ServeListener(ln, ListenerConfig{Name: "PLAINTEXT"})
}

// ServeListener is Serve with per-listener settings.
func (s *Server) ServeListener(ln net.Listener, lc ListenerConfig) error {
	if lc.FailedAuthenticationDelay == 0 {
		lc.FailedAuthenticationDelay = s.cfg.FailedAuthenticationDelay
	}
	if err := errors.Join(validMechanisms(lc.SASLMechanisms), lc.validFailedAuthDelay(s.cfg.IdleTimeout)); err != nil {
		ln.Close()
		return fmt.Errorf("protocol: listener %s: %w", lc.Name, err)
	}
	l := &listener{cfg: lc, ln: ln}
	adv := lc.AdvertisedAddr
	if adv == "" {
		adv = s.cfg.AdvertisedAddr
	}
	if adv == "" {
		adv = reachableAddr(ln.Addr())
	}
	host, port, err := splitHostPort(adv)
	if err != nil {
		ln.Close()
		return fmt.Errorf("protocol: listener %s advertised address %q: %w", lc.Name, adv, err)
	}
	if host == "localhost" {
		host = "127.0.0.1" // librdkafka may try ::1 first for localhost
	}
	l.host, l.port = host, port

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	s.log.Info("listening", zap.String("listener", lc.Name), zap.Stringer("addr", ln.Addr()),
		zap.String("advertised", net.JoinHostPort(host, strconv.Itoa(int(port)))))

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return ErrServerClosed
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyOpenFiles) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
				time.Sleep(backoff)
				continue
			}
			s.mu.Lock()
			delete(s.listeners, l)
			s.mu.Unlock()
			return fmt.Errorf("protocol: accept on %s: %w", lc.Name, err)
		}
		backoff = 0
		s.accept(l, nc)
	}
}

// accept starts serving one connection, or refuses it.
func (s *Server) accept(l *listener, nc net.Conn) {
	s.sizeSendBuffer(nc)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if len(s.conns) >= s.cfg.MaxConnections {
		s.mu.Unlock()
		s.m.clientErrors.WithLabelValues("max_connections").Inc()
		s.log.Warn("connection refused: max.connections reached", zap.Stringer("remote", nc.RemoteAddr()),
			zap.Int("max.connections", s.cfg.MaxConnections))
		nc.Close()
		return
	}
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok && !l.cfg.allows(ta.AddrPort().Addr()) {
		s.mu.Unlock()
		s.m.clientErrors.WithLabelValues("cidr_refused").Inc()
		s.log.Warn("connection refused: address outside the listener's allow.cidrs",
			zap.Stringer("remote", nc.RemoteAddr()), zap.String("listener", l.cfg.Name))
		nc.Close()
		return
	}
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok && len(l.cfg.SASLMechanisms) > 0 && !l.cfg.Private && !s.logins.allowed(ta.AddrPort().Addr().Unmap()) {
		// An address that has spent its failed-login allowance would only
		// be refused at its next login: close it before it costs a TLS
		// handshake, two goroutines and a login exchange, and after the
		// failed-login delay, so that redialling is no faster than
		// guessing. Counted, not logged per connection (that is what a
		// flood wants).
		s.refuseLocked(l, nc)
		s.mu.Unlock()
		s.m.clientErrors.WithLabelValues("login_rate_limited").Inc()
		return
	}
	if l.cfg.TLS != nil {
		nc = tls.Server(nc, l.cfg.TLS)
	}
	c := newConn(s, l, nc)
	s.conns[c] = struct{}{}
	// Counted under s.mu: once Shutdown has set closing, no goroutine is
	// added to a WaitGroup it may already be waiting on at zero.
	s.wg.Add(2)
	s.mu.Unlock()
	s.m.connsOpen.Inc()
	s.m.connsTotal.Inc()
	go s.tracked(c.write)
	go s.tracked(c.read)
}

// dropConn forgets a connection whose goroutines have finished with it.
func (s *Server) dropConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.m.connsOpen.Dec()
}

// goTracked runs f on a goroutine Shutdown waits for. Every goroutine of the
// server is tracked, so Shutdown knows when the last one is done. Only a
// goroutine that is itself tracked may call it (the count is then above
// zero); accept counts its connection's pair under s.mu instead.
func (s *Server) goTracked(f func()) {
	s.wg.Add(1)
	go s.tracked(f)
}

// tracked runs f for a goroutine already counted in s.wg.
func (s *Server) tracked(f func()) {
	defer s.wg.Done()
	f()
}

// Shutdown stops accepting, lets requests being handled finish and be
// answered (long polls return at once), then closes every connection. When
// ctx ends first, connections are closed at once and ctx's error returned.
// It is safe to call more than once and from several goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopMu.Do(func() {
		s.mu.Lock()
		s.closing = true
		close(s.done)
		lns := make([]*listener, 0, len(s.listeners))
		for l := range s.listeners {
			lns = append(lns, l)
		}
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, l := range lns {
			l.ln.Close()
		}
		// Readers waiting for a next request stop now; one in a handler
		// finishes it first and then sees s.done.
		for _, c := range conns {
			c.stopReading()
		}
		s.log.Info("shutting down", zap.Int("connections", len(conns)))
	})

	finished := make(chan struct{})
	go func() { // untracked: it waits for the tracked ones
		s.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.kill()
	}
	s.mu.Unlock()
	select {
	case <-finished:
	case <-time.After(100 * time.Millisecond):
	}
	return ctx.Err()
}

// reachableAddr is the host:port to advertise for a listener address.
func reachableAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, ad := range addrs {
				if in, ok := ad.(*net.IPNet); ok && !in.IP.IsLoopback() && in.IP.To4() != nil {
					ip = in.IP.To4()
					break
				}
			}
		}
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}
