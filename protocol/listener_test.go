package protocol

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestListeners serves two listeners, each advertising its own address.
func TestListeners(t *testing.T) {
	s, err := NewServer(Config{NodeID: 1, AdvertisedAddr: "broker.example:9092"}, newMemBackend(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln1, _ := net.Listen("tcp", "127.0.0.1:0")
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 2)
	go func() { done <- s.Serve(ln1) }()
	go func() {
		done <- s.ServeListener(ln2, ListenerConfig{Name: "INTERNAL", AdvertisedAddr: "localhost:7777"})
	}()
	for _, tc := range []struct {
		addr string
		host string
		port int32
	}{{ln1.Addr().String(), "broker.example", 9092}, {ln2.Addr().String(), "127.0.0.1", 7777}} {
		md := rawRoundTrip(t, tc.addr, kmsg.NewPtrMetadataRequest()).(*kmsg.MetadataResponse)
		if b := md.Brokers[0]; b.Host != tc.host || b.Port != tc.port || b.NodeID != 1 {
			t.Errorf("listener %s advertises %s:%d", tc.addr, b.Host, b.Port)
		}
		fc := rawRoundTrip(t, tc.addr, kmsg.NewPtrFindCoordinatorRequest()).(*kmsg.FindCoordinatorResponse)
		if fc.Host != tc.host || fc.Port != tc.port {
			t.Errorf("coordinator on %s: %s:%d", tc.addr, fc.Host, fc.Port)
		}
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}
}

func TestReachableAddr(t *testing.T) {
	got := reachableAddr(&net.TCPAddr{IP: net.IPv4zero, Port: 9092})
	host, port, err := net.SplitHostPort(got)
	if err != nil || port != "9092" || net.ParseIP(host).To4() == nil || net.ParseIP(host).IsUnspecified() {
		t.Fatalf("advertised %q for 0.0.0.0:9092", got)
	}
	if got := reachableAddr(&net.TCPAddr{IP: net.IPv6unspecified, Port: 1}); net.ParseIP(got[:len(got)-2]).To4() == nil {
		t.Fatalf("advertised %q for [::]:1", got)
	}
}

func TestMaxConnections(t *testing.T) {
	ts := startServer(t, Config{MaxConnections: 2}, nil)
	dial(t, ts.addr)
	dial(t, ts.addr)
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(ts.s.m.connsOpen) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	expectClosed(t, dial(t, ts.addr))
	if v := metricValue(ts.s.m.clientErrors.WithLabelValues("max_connections")); v != 1 {
		t.Errorf("refusals counted %v", v)
	}
}

// TestShutdownDeadline: a Backend that never answers cannot hold Shutdown
// past its context; the handler's context is cancelled and every goroutine
// ends (goleak checks in TestMain).
func TestShutdownDeadline(t *testing.T) {
	b := newMemBackend()
	b.CreateTopic(context.Background(), "t", 1, nil, false)
	b.stuck = true
	s, err := NewServer(Config{}, b, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	c := dial(t, ln.Addr().String())
	req := produceReq(9, 1, "t", 0, makeBatch(1, 10, 1))
	req.TimeoutMillis = 0 // no request timeout: only Shutdown ends it
	c.Write(frame(req, 1))
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	<-done
}
