package bench

import (
	"net"
	"os"
	"testing"
)

func TestProcFigures(t *testing.T) {
	pid := os.Getpid()
	cpu, err := cpuSeconds(pid)
	if err != nil || cpu < 0 {
		t.Fatalf("cpu: %v %v", cpu, err)
	}
	rss, err := rssBytes(pid)
	if err != nil || rss <= 0 {
		t.Fatalf("rss: %v %v", rss, err)
	}
	s := startSampler(pid)
	x := 0
	for i := 0; i < 30_000_000; i++ {
		x += i
	}
	_ = x
	c, r, err := s.Stop()
	if err != nil || c < 0 || r <= 0 {
		t.Fatalf("sampler: %v %v %v", c, r, err)
	}
}

// --target without --target-pid finds the broker by its listening port.
func TestPIDListeningOn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pid, err := pidListeningOn(ln.Addr().(*net.TCPAddr).Port)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("pid %d, %v; want %d", pid, err, os.Getpid())
	}
	got := resolvePID(Target{Name: "x", Addrs: []string{ln.Addr().String()}})
	if got.PID != os.Getpid() || got.Kind != "external" {
		t.Fatalf("resolvePID: %+v", got)
	}
	if _, err := pidListeningOn(1); err == nil {
		t.Fatal("port 1: want an error")
	}
}
