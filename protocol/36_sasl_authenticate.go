package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
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
	}
	reply, failure := c.saslStep(req.SASLAuthBytes)
	if failure != "" {
		return fail(kerr.SaslAuthenticationFailed.Code, failure)
	}
	resp.SASLAuthBytes = reply
	return resp, nil
}
