package mirror

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cluster is an in-process ztfbroker: the broker and its Kafka listener,
// with the group coordinator (producer ids, for the idempotent producer).
type cluster struct {
	addr string
	b    *broker.Broker
}

// startCluster opens a ztfbroker in a fresh folder on a loopback port; it
// stops at the test's end.
func startCluster(t testing.TB) *cluster {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.LogScrubBytesPerSecond = -1
	b, err := broker.Open(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := broker.OpenGroupCoordinator(b, broker.DefaultGroupConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := protocol.NewServer(protocol.DefaultConfig(), b, g, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, protocol.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		g.Close()
		b.Close()
	})
	return &cluster{addr: ln.Addr().String(), b: b}
}

func (c *cluster) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.addr), kgo.MetadataMinAge(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// runMirror runs a mirror from up to down until the returned stop is
// called (or the test ends).
func runMirror(t testing.TB, up, down *cluster, topics string) (stop func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Bootstrap, cfg.Dest, cfg.Topics, cfg.Refresh = []string{up.addr}, []string{down.addr}, topics, 200*time.Millisecond
	mr, err := New(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mr.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mirror: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}
