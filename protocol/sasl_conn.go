package protocol

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// Keys a SASL listener serves before authentication.
const (
	saslHandshakeKey    int16 = 17
	saslAuthenticateKey int16 = 36
)

// saslConn is one connection's authentication, owned by its read
// goroutine.
type saslConn struct {
	mechanism string       // chosen by SaslHandshake
	x         saslExchange // under way since SaslHandshake
	done      bool         // authenticated
	// failed closes the connection once the answer saying why is
	// queued, as Kafka does after a failed authentication.
	failed bool
	// raw: after SaslHandshake v0 the client sends bare size-prefixed
	// tokens, without Kafka headers, until authenticated.
	raw bool
}

// maxRawSASLBytes bounds a bare SASL token; SCRAM and PLAIN need far less.
const maxRawSASLBytes = 64 << 10

// saslStep answers one token of the exchange SaslHandshake started. A
// non-empty failure is a refused login (already logged and counted) to
// tell the client, after the listener's failed-authentication delay; the
// connection then closes.
func (c *conn) saslStep(token []byte) (reply []byte, failure string) {
	if !c.l.cfg.Private && !c.s.logins.allowed(c.peerAddr()) {
		c.s.log.Warn("SASL authentication refused: too many failed logins", zap.String("remote", c.remote),
			zap.String("mechanism", c.sasl.mechanism))
		c.waitFailedAuth()
		return nil, "too many failed logins from " + c.peerAddr().String() + "; try again later"
	}
	reply, done, err := c.sasl.x.step(token)
	if err != nil {
		c.loginFailed(c.sasl.x.user(), err)
		c.waitFailedAuth()
		return nil, "Authentication failed: invalid credentials with SASL mechanism " + c.sasl.mechanism
	}
	if done {
		c.sasl.done, c.sasl.raw = true, false
		c.principal.User = c.sasl.x.user()
		c.s.log.Debug("SASL authenticated", zap.String("user", c.principal.User), zap.String("remote", c.remote),
			zap.String("mechanism", c.sasl.mechanism))
	}
	return reply, ""
}

// saslRawToken reads and answers one bare token whose size was read;
// false closes the connection (a failed login closes it without an answer
// under v0, as in Kafka).
func (c *conn) saslRawToken(size [4]byte) bool {
	start := time.Now()
	n := binary.BigEndian.Uint32(size[:])
	if n > maxRawSASLBytes {
		c.clientError("frame_size", "closing connection: SASL token too large", zap.Uint32("size", n))
		return false
	}
	token := make([]byte, n)
	c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.RequestReadTimeout))
	if _, err := io.ReadFull(c.nc, token); err != nil {
		return false
	}
	reply, failure := c.saslStep(token)
	if failure != "" {
		return false
	}
	if reply == nil {
		reply = []byte{}
	}
	select {
	case c.out <- response{key: saslHandshakeKey, start: start, raw: reply}:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// saslAllows tells whether the connection may send a request of key now:
// on a SASL listener, only ApiVersions and the SASL keys come before
// authentication.
func (c *conn) saslAllows(key int16) bool {
	if len(c.l.cfg.SASLMechanisms) == 0 || c.sasl.done {
		return true
	}
	return key == apiVersionsKey || key == saslHandshakeKey || key == saslAuthenticateKey
}

// peerAddr is the peer's IP address, for the failed-login limiter.
func (c *conn) peerAddr() netip.Addr {
	if ta, ok := c.nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// loginFailed logs, counts and rate-limits one failed login.
func (c *conn) loginFailed(user string, err error) {
	known := ""
	if c.sasl.x.known() {
		known = user
	}
	c.s.logins.fail(c.peerAddr(), c.sasl.mechanism, known)
	c.s.log.Warn("SASL authentication failed", zap.String("user", user), zap.String("remote", c.remote),
		zap.String("mechanism", c.sasl.mechanism), zap.String("listener", c.l.cfg.Name), zap.Error(err))
}
