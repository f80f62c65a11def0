package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// SaslAuthenticate: v0-2.
//
// Carries the tokens of the mechanism chosen by SaslHandshake v1. A failed
// login is answered SASL_AUTHENTICATION_FAILED with a message the client
// shows, then the connection closes; it is logged, counted
// (ztfbroker_sasl_failed_logins_total) and taken from its address's
// failed-login allowance (sasl.go). Success makes the connection's
// principal the user. Version notes: v1 SessionLifetimeMillis (0: no
// re-authentication is asked for); v2 flexible.
func init() {
	register(api{key: saslAuthenticateKey, min: 0, max: 2, serve: serveSaslAuthenticate,
		acl: public("authentication comes before any identity")})
}

func serveSaslAuthenticate(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	fail := func(code int16, msg string) (kmsg.Response, error) {
		resp.ErrorCode, resp.ErrorMessage, c.sasl.failed = code, &msg, true
		return resp, nil
	}
	switch {
	case c.sasl.done:
		return fail(kerr.IllegalSaslState.Code, "already authenticated")
	case c.sasl.x == nil:
		return fail(kerr.IllegalSaslState.Code, "SaslAuthenticate before SaslHandshake")
	case !s.logins.allowed(c.peerAddr()):
		s.log.Warn("SASL authentication refused: too many failed logins", zap.String("remote", c.remote),
			zap.String("mechanism", c.sasl.mechanism))
		return fail(kerr.SaslAuthenticationFailed.Code, "too many failed logins from "+c.peerAddr().String()+"; try again later")
	}
	reply, done, err := c.sasl.x.step(req.SASLAuthBytes)
	if err != nil {
		c.loginFailed(c.sasl.x.user(), err)
		return fail(kerr.SaslAuthenticationFailed.Code,
			"Authentication failed: invalid credentials with SASL mechanism "+c.sasl.mechanism)
	}
	resp.SASLAuthBytes = reply
	if done {
		c.sasl.done = true
		c.principal.User = c.sasl.x.user()
		s.log.Debug("SASL authenticated", zap.String("user", c.principal.User), zap.String("remote", c.remote),
			zap.String("mechanism", c.sasl.mechanism))
	}
	return resp, nil
}
