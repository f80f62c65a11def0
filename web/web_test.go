package web

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start serves s on loopback ports chosen by the system.
func start(t *testing.T, cfg Config, routes ...Route) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.AdminAddr != "" {
		cfg.AdminAddr = "127.0.0.1:0"
	}
	s, err := New(cfg, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ztfbroker_up 1\n")
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Handle(routes...); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return s
}

func get(t *testing.T, method, url string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

func TestRoutes(t *testing.T) {
	program := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "listing of "+r.PathValue("program"))
	})
	file := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.PathValue("program")+" file "+r.PathValue("name"))
	})
	s := start(t, DefaultConfig(),
		Route{Pattern: "GET /alerts/{program}/{$}", Handler: program, Title: "Alert archive"},
		Route{Pattern: "GET /alerts/{program}/{name}", Handler: file},
		Route{Pattern: "GET /schemas/ids/{id}", Handler: program, Title: "Schema registry"},
	)
	base := "http://" + s.Addr().String()
	admin := "http://" + s.AdminAddr().String()

	for _, tc := range []struct {
		name, method, url string
		code              int
		body, allow       string
	}{
		{"index", "GET", base + "/", 200, `<a href="/healthz">/healthz</a>`, ""},
		{"index lists owners' pages", "GET", base + "/", 200, "Alert archive", ""},
		{"wildcard page shown, not linked", "GET", base + "/", 200, "<code>/schemas/ids/{id}</code>", ""},
		{"healthz", "GET", base + "/healthz", 200, "ok", ""},
		{"HEAD is GET", "HEAD", base + "/healthz", 200, "", ""},
		{"metrics handed in", "GET", base + "/metrics", 200, "ztfbroker_up 1", ""},
		{"owner's route with wildcard", "GET", base + "/alerts/public/", 200, "listing of public", ""},
		{"second wildcard", "GET", base + "/alerts/public/x.tar.gz", 200, "public file x.tar.gz", ""},
		{"unknown path", "GET", base + "/nowhere", 404, "", ""},
		{"no pprof on public", "GET", base + "/debug/pprof/", 404, "", ""},
		{"no profile on public", "GET", base + "/debug/pprof/goroutine?debug=1", 404, "", ""},
		{"method mismatch", "POST", base + "/alerts/public/", 405, "", "GET, HEAD"},
		{"method mismatch on healthz", "DELETE", base + "/healthz", 405, "", "GET, HEAD"},
		{"pprof on admin", "GET", admin + "/debug/pprof/", 200, "goroutine", ""},
		{"goroutine dump on admin", "GET", admin + "/debug/pprof/goroutine?debug=1", 200, "goroutine profile", ""},
		{"admin has no pages", "GET", admin + "/alerts/public/", 404, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := get(t, tc.method, tc.url)
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Fatalf("%s %s: %d, want %d with %q\n%s", tc.method, tc.url, code, tc.code, tc.body, body)
			}
			if tc.allow != "" && h.Get("Allow") != tc.allow {
				t.Fatalf("Allow %q, want %q", h.Get("Allow"), tc.allow)
			}
		})
	}
}

func TestNoAdminListener(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AdminAddr = ""
	s := start(t, cfg)
	if s.AdminAddr() != nil {
		t.Fatalf("admin listener at %v with AdminAddr empty", s.AdminAddr())
	}
	if code, _, _ := get(t, "GET", "http://"+s.Addr().String()+"/debug/pprof/"); code != 404 {
		t.Fatalf("public /debug/pprof/: %d", code)
	}
}

func TestServerTimeouts(t *testing.T) {
	s, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := s.pubSrv
	if p.ReadHeaderTimeout <= 0 || p.ReadTimeout <= 0 || p.WriteTimeout <= 0 || p.IdleTimeout <= 0 || p.MaxHeaderBytes <= 0 {
		t.Fatalf("public server without limits: %+v", p)
	}
	if s.admSrv.WriteTimeout != 0 || s.admSrv.ReadTimeout != 0 {
		t.Fatal("admin server would cut a 60 s CPU profile")
	}
}

func TestHandleErrors(t *testing.T) {
	s, err := New(DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := http.NotFoundHandler()
	if err := s.Handle(Route{Pattern: "GET /schemas/ids/{id}", Handler: ok}); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]Route{
		"conflict":    {Pattern: "GET /schemas/ids/{other}", Handler: ok},
		"bad pattern": {Pattern: "GET /a/{", Handler: ok},
		"nil handler": {Pattern: "GET /b", Handler: nil},
		"healthz":     {Pattern: "GET /healthz", Handler: ok},
	} {
		if err := s.Handle(r); err == nil || !strings.Contains(err.Error(), r.Pattern) {
			t.Errorf("%s: %v, want an error naming %q", name, err, r.Pattern)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := Config{Addr: "nowhere", AdminAddr: "also-nowhere"}
	err := cfg.Validate()
	for _, want := range []string{`http.listener "nowhere"`, `admin.listener "also-nowhere"`, "http.read.header.timeout.ms",
		"http.read.timeout.ms", "http.write.timeout.ms", "http.idle.timeout.ms", "http.max.header.bytes"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not name %s", err, want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestAdminAddressTaken: a second broker on the host keeps serving its
// pages without a profiler rather than failing to start.
func TestAdminAddressTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := DefaultConfig()
	cfg.Addr, cfg.AdminAddr = "127.0.0.1:0", taken.Addr().String()
	s, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Addr() == nil || s.AdminAddr() != nil {
		t.Fatalf("public %v admin %v", s.Addr(), s.AdminAddr())
	}
}
