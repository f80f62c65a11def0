package protocol

import (
	"net"
	"net/netip"

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
	c.s.logins.fail(c.peerAddr(), c.sasl.mechanism)
	c.s.log.Warn("SASL authentication failed", zap.String("user", user), zap.String("remote", c.remote),
		zap.String("mechanism", c.sasl.mechanism), zap.String("listener", c.l.cfg.Name), zap.Error(err))
}
