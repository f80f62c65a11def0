package protocol

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// A failed login and a connection refused for too many of them are both
// answered late, as Kafka's connection.failed.authentication.delay.ms does:
// a client guessing passwords, or redialling an address that has spent its
// allowance, waits that long before it learns anything, so its rate is
// bounded by the delay times the connections it holds open, rather than by
// how fast the broker can answer. The connections waiting are bounded too:
// a failed login waits on its own read goroutine, within max.connections;
// a refused one is parked without goroutines (heldConns), at most
// maxHeldRefused of them, and closed at once beyond that.

// defaultFailedAuthDelay is Kafka's connection.failed.authentication.delay.ms.
const defaultFailedAuthDelay = 100 * time.Millisecond

// maxHeldRefused bounds the refused connections waiting out their delay:
// each is a file descriptor and a socket's buffers, outside max.connections.
const maxHeldRefused = 1024

// failedAuthDelay is the listener's connection.failed.authentication.delay.ms
// in effect: 0 means Kafka's default, a negative delay none.
func (lc ListenerConfig) failedAuthDelay() time.Duration {
	switch {
	case lc.FailedAuthenticationDelay == 0:
		return defaultFailedAuthDelay
	case lc.FailedAuthenticationDelay < 0:
		return 0
	}
	return lc.FailedAuthenticationDelay
}

// validFailedAuthDelay checks the delay against connections.max.idle.ms,
// which it must stay under, as in Kafka: a connection held longer would
// count as idle.
func (lc ListenerConfig) validFailedAuthDelay(idle time.Duration) error {
	if d := lc.failedAuthDelay(); len(lc.SASLMechanisms) > 0 && d >= idle {
		return fmt.Errorf("connection.failed.authentication.delay.ms %v: must be less than connections.max.idle.ms %v", d, idle)
	}
	return nil
}

// waitFailedAuth holds a failed login's answer for the listener's delay; it
// returns early when the connection or the server ends.
func (c *conn) waitFailedAuth() {
	d := c.l.cfg.failedAuthDelay()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.ctx.Done():
	case <-c.s.done:
	}
}

// heldConns are refused connections waiting to be closed, oldest first
// (one delay per listener, so close times are nearly in order; a later one
// due earlier waits for the one ahead, at most the longest delay).
type heldConns struct {
	mu      sync.Mutex
	q       []heldConn
	running bool // a closeHeld goroutine is serving q
}

type heldConn struct {
	nc    net.Conn
	until time.Time
}

// refuseLocked closes a connection refused at accept for too many failed
// logins, after the listener's delay when fewer than maxHeldRefused are
// waiting, at once otherwise. It closes with a reset, so the broker keeps
// no TIME_WAIT socket per refused connection. s.mu is held and the server
// is not closing, so the closer goroutine it may start is counted before
// Shutdown can wait.
func (s *Server) refuseLocked(l *listener, nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	d := l.cfg.failedAuthDelay()
	h := &s.held
	h.mu.Lock()
	if d <= 0 || len(h.q) >= maxHeldRefused {
		h.mu.Unlock()
		nc.Close()
		return
	}
	h.q = append(h.q, heldConn{nc: nc, until: time.Now().Add(d)})
	start := !h.running
	h.running = true
	h.mu.Unlock()
	if start {
		s.wg.Add(1)
		go s.tracked(s.closeHeld)
	}
}

// closeHeld closes held connections as their delays end, all of them at
// Shutdown, and returns when none is left.
func (s *Server) closeHeld() {
	h := &s.held
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		h.mu.Lock()
		now := time.Now()
		i := 0
		for ; i < len(h.q) && !h.q[i].until.After(now); i++ {
			h.q[i].nc.Close()
			h.q[i] = heldConn{}
		}
		h.q = h.q[i:]
		if len(h.q) == 0 {
			h.q, h.running = nil, false
			h.mu.Unlock()
			return
		}
		next := h.q[0].until
		h.mu.Unlock()
		t.Reset(time.Until(next))
		select {
		case <-t.C:
		case <-s.done:
			// accept adds none once closing is set (under s.mu, before
			// done is closed), so this empties the queue for good.
			h.mu.Lock()
			for _, hc := range h.q {
				hc.nc.Close()
			}
			h.q, h.running = nil, false
			h.mu.Unlock()
			return
		}
	}
}
