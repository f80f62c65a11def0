// Package web owns ztfbroker's HTTP: the servers, their timeouts and the
// list of pages. It serves nothing of its own but a page index, /healthz
// and the profiler; pages and APIs are handed to it by the packages that
// own them, as Routes: a Go 1.22 ServeMux pattern ("GET /alerts/{program}/{$}"),
// a handler that reads its wildcards with r.PathValue, and a title for the
// index. So the pattern and the code reading it live in one place, the
// owner, and this package imports nothing of the project.
//
// Two listeners:
//
//	public  Config.Addr       the index at /, /healthz, /metrics, every Route
//	admin   Config.AdminAddr  /debug/pprof/ only; loopback by default, "" for none
//
// Profiles and goroutine dumps are never served on the public listener: it
// answers 404 for /debug/pprof/.
//
// Timeouts. The public server bounds the request header, the whole request
// and idle keep-alive connections, and gives each response WriteTimeout to
// be written. A handler whose responses take longer on purpose (a 9 GB
// nightly archive over a slow link) lifts the read deadline for its own
// request and moves the write deadline forward as each chunk is written,
// with http.NewResponseController(w), so that a client that stops reading
// is still cut off; every other response stays bounded.
//
// Connections. The public listener holds at most MaxConnections; at the
// limit a new connection closes the one idle (no byte moved) longest.
package web

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Route is one page or API endpoint handed in by its owner.
type Route struct {
	// Pattern is a Go 1.22 ServeMux pattern, with a method where the
	// route has one: "GET /schemas/ids/{id}". GET also answers HEAD; a
	// path served for other methods only answers 405 with Allow.
	Pattern string
	Handler http.Handler
	// Title lists the route on the page index; empty leaves it off.
	Title string
	// Access guards the route (see access.go); nil: public.
	Access Access
}

// Config is the listeners and their limits.
type Config struct {
	// Addr is the public HOST:PORT.
	Addr string `yaml:"http.listener"`
	// AdminAddr is the HOST:PORT for the profiler; empty means none. Keep
	// it on loopback: a CPU profile or goroutine dump is for operators.
	AdminAddr string `yaml:"admin.listener"`
	// ReadHeaderTimeout bounds reading a request's header (slowloris).
	ReadHeaderTimeout time.Duration `yaml:"http.read.header.timeout.ms"`
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration `yaml:"http.read.timeout.ms"`
	// WriteTimeout bounds writing a response; a handler may lift it for
	// its own request (see the package doc). Not applied on the admin
	// listener, where a CPU profile or trace runs as long as asked.
	WriteTimeout time.Duration `yaml:"http.write.timeout.ms"`
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration `yaml:"http.idle.timeout.ms"`
	// MaxHeaderBytes bounds a request's header.
	MaxHeaderBytes int `yaml:"http.max.header.bytes"`
	// MaxConnections bounds the public listener's open connections, and so
	// its file descriptors. At the limit a new connection closes the one
	// that has gone longest without moving a byte (see limitListener).
	// http.max.connections; 0 means DefaultMaxConnections.
	MaxConnections int `yaml:"http.max.connections"`
	// MetricsUsers, when set, are the only users who may read /metrics
	// (HTTP basic authentication); empty: anyone.
	MetricsUsers []string `yaml:"http.metrics.users"`
	// TLSCert and TLSKey, when set, make the public listener HTTPS (basic
	// authentication then never crosses the network in clear); the caller
	// loads them into TLS, which may reload the certificate (SIGHUP).
	TLSCert string `yaml:"http.tls.cert"`
	TLSKey  string `yaml:"http.tls.key"`
	// TLS is the public listener's TLS configuration; nil: plain HTTP.
	TLS *tls.Config `yaml:"-"`
}

// DefaultMaxConnections is http.max.connections: far below the usual 1024
// descriptors, far above a survey's consumers of listings and archives.
const DefaultMaxConnections = 512

// DefaultConfig is the public listener on every interface at 8080 and the
// admin listener on loopback at 8081.
func DefaultConfig() Config {
	return Config{
		Addr:              "0.0.0.0:8080",
		AdminAddr:         "127.0.0.1:8081",
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		MaxConnections:    DefaultMaxConnections,
	}
}

// Validate names every setting that is wrong.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("http.listener %q: %w", c.Addr, err))
	}
	if c.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
			errs = append(errs, fmt.Errorf("admin.listener %q: %w", c.AdminAddr, err))
		}
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"http.read.header.timeout.ms", c.ReadHeaderTimeout}, {"http.read.timeout.ms", c.ReadTimeout},
		{"http.write.timeout.ms", c.WriteTimeout}, {"http.idle.timeout.ms", c.IdleTimeout}} {
		if t.d <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", t.name, t.d))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, fmt.Errorf("http.tls.cert %q, http.tls.key %q: give both or neither", c.TLSCert, c.TLSKey))
	}
	if c.MaxHeaderBytes <= 0 {
		errs = append(errs, fmt.Errorf("http.max.header.bytes %d: must be positive", c.MaxHeaderBytes))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("http.max.connections %d: must be positive (0: %d)", c.MaxConnections, DefaultMaxConnections))
	}
	return errors.Join(errs...)
}

// Server is the public and admin HTTP servers. Routes may be added until
// and while it serves.
type Server struct {
	cfg    Config
	log    *zap.Logger
	public *http.ServeMux
	admin  *http.ServeMux
	pubSrv *http.Server
	admSrv *http.Server

	gate *gate

	mu     sync.Mutex
	routes []Route      // handed in, in order: the page index
	home   http.Handler // "/" when set; else the page index
	pubLn  net.Listener
	admLn  net.Listener // nil: no admin listener
}

// New builds the servers: the index, /healthz, metrics at /metrics (nil:
// none) on the public mux, pprof on the admin mux. Nothing listens until
// Listen. logger nil means no logging.
func New(cfg Config, metrics http.Handler, logger *zap.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	s := &Server{cfg: cfg, log: logger, public: http.NewServeMux(), admin: http.NewServeMux(), gate: newGate()}
	errLog := zap.NewStdLog(logger)
	s.pubSrv = &http.Server{Handler: s.public, ErrorLog: errLog,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, ReadTimeout: cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes}
	s.admSrv = &http.Server{Handler: s.admin, ErrorLog: errLog,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes}

	own := []Route{
		{Pattern: "GET /{$}", Handler: http.HandlerFunc(s.root)},
		{Pattern: "GET /pages", Handler: http.HandlerFunc(s.index)},
		{Pattern: "GET /healthz", Handler: http.HandlerFunc(healthz), Title: "Health check"},
	}
	if metrics != nil {
		own = append(own, Route{Pattern: "GET /metrics", Handler: metrics, Title: "Prometheus metrics", Access: OnlyUsers(cfg.MetricsUsers)})
	}
	if err := s.Handle(own...); err != nil {
		return nil, err
	}
	// pprof.Index also serves the named profiles (heap, goroutine, ...)
	// below /debug/pprof/.
	s.admin.HandleFunc("/debug/pprof/", pprof.Index)
	s.admin.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	s.admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.admin.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	s.admin.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s.admin.HandleFunc("GET /healthz", healthz)
	return s, nil
}

func healthz(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }

// Handle adds routes to the public listener. A malformed pattern, a nil
// handler or a pattern that conflicts with one already served is an error
// (naming the pattern), and the routes before it stay added.
func (s *Server) Handle(routes ...Route) error {
	for _, r := range routes {
		if err := s.handle(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) handle(r Route) (err error) {
	if r.Handler == nil {
		return fmt.Errorf("web: route %q: nil handler", r.Pattern)
	}
	// ServeMux reports a bad or conflicting pattern by panicking, which
	// is a programming error in a main package but not in a server that
	// takes routes from several owners: say which one.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("web: route %q: %v", r.Pattern, p)
		}
	}()
	h := r.Handler
	if r.Access != nil {
		h = s.gate.guard(r.Access, h)
	}
	s.public.Handle(r.Pattern, h)
	s.mu.Lock()
	s.routes = append(s.routes, r)
	s.mu.Unlock()
	return nil
}

// Listen binds the public listener, an error if it cannot, and the admin
// listener. An admin address already taken is logged, not fatal: the
// profiler is a diagnostic aid, and the broker's job must not depend on it.
func (s *Server) Listen() error {
	pub, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	var adm net.Listener
	if s.cfg.AdminAddr != "" {
		adm, err = net.Listen("tcp", s.cfg.AdminAddr)
		if err != nil {
			s.log.Warn("admin listener not started: no pprof", zap.String("addr", s.cfg.AdminAddr), zap.Error(err))
			adm = nil
		}
	}
	s.mu.Lock()
	s.pubLn, s.admLn = newLimitListener(pub, cmp.Or(s.cfg.MaxConnections, DefaultMaxConnections)), adm
	if s.cfg.TLS != nil {
		s.pubLn = tls.NewListener(s.pubLn, s.cfg.TLS)
	}
	s.mu.Unlock()
	return nil
}

// Addr is the bound public address, nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pubLn == nil {
		return nil
	}
	return s.pubLn.Addr()
}

// AdminAddr is the bound admin address, nil when there is none.
func (s *Server) AdminAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admLn == nil {
		return nil
	}
	return s.admLn.Addr()
}

// Serve serves both listeners until Shutdown or Close, then returns
// http.ErrServerClosed, or the first listener's failure.
func (s *Server) Serve() error {
	s.mu.Lock()
	pub, adm := s.pubLn, s.admLn
	s.mu.Unlock()
	if pub == nil {
		return errors.New("web: Serve before Listen")
	}
	errc := make(chan error, 2)
	if adm != nil {
		go func() { errc <- s.admSrv.Serve(adm) }()
	}
	go func() { errc <- s.pubSrv.Serve(pub) }()
	return <-errc
}

// Shutdown stops accepting, waits for requests in flight until ctx ends,
// then closes what is left. It is safe to call twice and before Serve.
func (s *Server) Shutdown(ctx context.Context) error {
	err := errors.Join(s.pubSrv.Shutdown(ctx), s.admSrv.Shutdown(ctx))
	s.closeListeners()
	return err
}

// Close stops both servers at once, dropping requests in flight.
func (s *Server) Close() error {
	err := errors.Join(s.pubSrv.Close(), s.admSrv.Close())
	s.closeListeners()
	return err
}

// closeListeners closes listeners that never reached Serve (a start that
// failed later); http.Server only closes the ones it served.
func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range []net.Listener{s.pubLn, s.admLn} {
		if ln != nil {
			ln.Close() // already closed by the server when served: harmless
		}
	}
}

// SetHome makes h the page at "/" (the portal's status page); the page
// index stays at /pages. access guards it like a Route's (nil: public).
func (s *Server) SetHome(h http.Handler, access Access) {
	if access != nil {
		h = s.gate.guard(access, h)
	}
	s.mu.Lock()
	s.home = h
	s.mu.Unlock()
}

func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	home := s.home
	s.mu.Unlock()
	if home == nil {
		s.index(w, r)
		return
	}
	home.ServeHTTP(w, r)
}

// page is one line of the index.
type page struct {
	Title, Method, Path string
	Link                bool // the path has no wildcard, so it can be followed
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	var pages []page
	for _, r := range s.routes {
		if r.Title == "" {
			continue
		}
		method, path, ok := strings.Cut(r.Pattern, " ")
		if !ok {
			method, path = "", r.Pattern
		}
		path = strings.TrimSuffix(strings.TrimSpace(path), "{$}")
		pages = append(pages, page{Title: r.Title, Method: method, Path: path,
			Link: strings.HasPrefix(path, "/") && !strings.Contains(path, "{")})
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := indexTmpl.Execute(w, pages); err != nil {
		s.log.Debug("index write", zap.Error(err))
	}
}

var indexTmpl = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ztfbroker</title>
<style>
body { font-family: sans-serif; margin: 2em; }
th, td { padding: 0.2em 1.5em 0.2em 0; text-align: left; }
</style>
</head>
<body>
<h1>ztfbroker</h1>
<table id="pages">
<thead><tr><th>Page</th><th>Path</th></tr></thead>
<tbody>
{{- range .}}
<tr class="page"><td>{{.Title}}</td><td>{{if .Method}}{{.Method}} {{end}}{{if .Link}}<a href="{{.Path}}">{{.Path}}</a>{{else}}<code>{{.Path}}</code>{{end}}</td></tr>
{{- end}}
</tbody>
</table>
</body>
</html>
`))
