package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// SaslHandshake: v1.
//
// Names the mechanism of the exchange that follows and lists the listener's
// mechanisms. After v1 the tokens come in SaslAuthenticate requests; after
// v0 they come bare, size-prefixed without Kafka headers, and are answered
// the same way until the login succeeds (a failed one closes the
// connection without an answer, as Kafka). An unsupported mechanism, or a
// second handshake, is answered and the connection closed, as Kafka does.
func init() {
	register(api{key: saslHandshakeKey, min: 0, max: 1, serve: serveSaslHandshake,
		acl: public("authentication comes before any identity")})
}

func serveSaslHandshake(s *Server, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = c.l.cfg.SASLMechanisms
	if resp.SupportedMechanisms == nil {
		resp.SupportedMechanisms = []string{}
	}
	switch {
	case c.sasl.done || c.sasl.x != nil:
		resp.ErrorCode = kerr.IllegalSaslState.Code
	case !c.l.cfg.offers(req.Mechanism):
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
	default:
		x, err := s.startExchange(c, req.Mechanism)
		if err != nil {
			s.log.Error("SASL: cannot start mechanism", zap.String("mechanism", req.Mechanism), zap.Error(err))
			resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
			break
		}
		c.sasl.mechanism, c.sasl.x = req.Mechanism, x
		c.sasl.raw = req.Version == 0
		return resp, nil
	}
	c.sasl.failed = true
	return resp, nil
}
