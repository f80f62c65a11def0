package web

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener keeps at most max connections open. At the limit it still
// accepts, and closes the connection that has gone longest without moving
// a byte: a client that stalls (a download it stopped reading) cannot hold
// a descriptor against a newcomer, and Accept never blocks, so /healthz
// is answered under any load. (netutil.LimitListener blocks Accept
// instead, which queues a health check behind every stalled client.)
type limitListener struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[*limitConn]struct{}
	shed  atomic.Int64 // connections closed to make room
}

func newLimitListener(ln net.Listener, max int) *limitListener {
	return &limitListener{Listener: ln, max: max, conns: map[*limitConn]struct{}{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &limitConn{Conn: c, l: l}
	lc.touch()
	var victim *limitConn
	l.mu.Lock()
	if len(l.conns) >= l.max {
		for o := range l.conns {
			if victim == nil || o.last.Load() < victim.last.Load() {
				victim = o
			}
		}
		delete(l.conns, victim)
	}
	l.conns[lc] = struct{}{}
	l.mu.Unlock()
	if victim != nil {
		l.shed.Add(1)
		victim.Conn.Close()
	}
	return lc, nil
}

// open is the number of connections held.
func (l *limitListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// limitConn notes when it last moved a byte.
type limitConn struct {
	net.Conn
	l    *limitListener
	last atomic.Int64 // unix ns
	once sync.Once
}

func (c *limitConn) touch() { c.last.Store(time.Now().UnixNano()) }

func (c *limitConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *limitConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *limitConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
