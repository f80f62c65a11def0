package web

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMaxConnections: with the public listener full of clients that send
// nothing, /healthz is still answered (the stalest connection makes room)
// and the listener never holds more than MaxConnections.
func TestMaxConnections(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Addr, cfg.AdminAddr, cfg.MaxConnections = "127.0.0.1:0", "", 4
	s, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Close()
	addr := s.Addr().String()
	var stalled []net.Conn
	for i := 0; i < 20; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n") // never ends the header
		stalled = append(stalled, c)
	}
	ln := s.pubLn.(*limitListener)
	deadline := time.Now().Add(5 * time.Second)
	for ln.shed.Load() < 16 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := ln.open(); n > cfg.MaxConnections {
		t.Fatalf("%d connections held, want <= %d", n, cfg.MaxConnections)
	}
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("healthz with the listener full of stalled clients: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(b)) != "ok" {
		t.Fatalf("healthz: %q", b)
	}
	// The oldest stalled clients were closed by the server.
	stalled[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(stalled[0]).ReadByte(); err == nil {
		t.Error("the stalest connection is still open")
	}
	t.Logf("held %d, shed %d of 21", ln.open(), ln.shed.Load())
}
