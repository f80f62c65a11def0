package protocol

import (
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// TestSendBufferFor: the fixed send buffer is for connections known to be
// near; a far or unknown one keeps the kernel's autotuning.
func TestSendBufferFor(t *testing.T) {
	for _, tc := range []struct {
		bytes int
		rtt   time.Duration
		want  int
	}{
		{256 << 10, 40 * time.Microsecond, 256 << 10},  // loopback
		{256 << 10, 300 * time.Microsecond, 256 << 10}, // a LAN
		{256 << 10, time.Millisecond, 0},               // a WAN
		{256 << 10, 150 * time.Millisecond, 0},
		{256 << 10, 0, 0}, // unknown (a SYN cookie, say)
		{-1, 40 * time.Microsecond, 0},
	} {
		if got := sendBufferFor(tc.bytes, tc.rtt); got != tc.want {
			t.Errorf("sendBufferFor(%d, %v) = %d, want %d", tc.bytes, tc.rtt, got, tc.want)
		}
	}
}

// TestSendBufferOfLoopbackConn: a client on this host gets
// socket.send.buffer.bytes (the kernel reports twice what was set), and
// -1 leaves the kernel's buffer, as a connection without the setting has.
func TestSendBufferOfLoopbackConn(t *testing.T) {
	// serverSndbuf returns SO_SNDBUF of the server's side of a new
	// connection to ts, and its round trip as the kernel saw it.
	serverSndbuf := func(ts *testServer) (int, time.Duration) {
		c := dial(t, ts.addr)
		c.Write(frame(kmsg.NewPtrApiVersionsRequest(), 1))
		readFrame(t, c) // the connection is accepted and served
		ts.s.mu.Lock()
		defer ts.s.mu.Unlock()
		if len(ts.s.conns) != 1 {
			t.Fatalf("%d connections, want 1", len(ts.s.conns))
		}
		for sc := range ts.s.conns {
			tc := sc.nc.(*net.TCPConn)
			return sndbuf(t, tc), connRTT(tc)
		}
		return 0, 0
	}
	n, rtt := serverSndbuf(startServer(t, Config{}, nil))
	if rtt <= 0 || rtt >= lanRTT {
		t.Fatalf("loopback round trip %v, want in (0, %v)", rtt, lanRTT)
	}
	if want := 2 * DefaultConfig().SendBufferBytes; n != want {
		t.Errorf("default: SO_SNDBUF %d, want %d", n, want)
	}
	n, _ = serverSndbuf(startServer(t, Config{SendBufferBytes: 200 << 10}, nil))
	if want := 2 * (200 << 10); n != want {
		t.Errorf("socket.send.buffer.bytes=%d: SO_SNDBUF %d, want %d", 200<<10, n, want)
	}
	auto, _ := serverSndbuf(startServer(t, Config{SendBufferBytes: -1}, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String()) // completes in the listen backlog
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	plain, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if kernel := sndbuf(t, plain.(*net.TCPConn)); auto != kernel {
		t.Errorf("socket.send.buffer.bytes=-1: SO_SNDBUF %d, want the kernel's own %d", auto, kernel)
	}
}

// sndbuf is SO_SNDBUF of tc as the kernel reports it.
func sndbuf(t *testing.T, tc *net.TCPConn) int {
	t.Helper()
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	rc.Control(func(fd uintptr) { n, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSendBufferOutOfRange: too small a buffer is refused with the reason.
func TestSendBufferOutOfRange(t *testing.T) {
	for _, n := range []int{-2, 64 << 10, 65 << 20} {
		err := Config{SendBufferBytes: n}.Validate()
		if err == nil {
			t.Errorf("socket.send.buffer.bytes %d accepted", n)
			continue
		}
		t.Log(err)
	}
	if err := (Config{SendBufferBytes: -1}).Validate(); err != nil {
		t.Errorf("-1: %v", err)
	}
}
