package protocol

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// SaslHandshake: v1.
//
// Names the mechanism the SaslAuthenticate requests that follow use, and
// lists the listener's mechanisms. v0, after which the client sends raw
// SASL tokens without Kafka framing, is not served: librdkafka, franz-go
// and the Java client use v1 with SaslAuthenticate. It is advertised all
// the same (advertiseV0), because librdkafka enables SASL only when the
// advertised range includes v0 ("SASL Handshake not supported by broker"
// otherwise). An unsupported mechanism, or a second handshake, is answered
// and the connection closed, as Kafka does.
func init() {
	register(api{key: saslHandshakeKey, min: 1, max: 1, advertiseV0: true, serve: serveSaslHandshake,
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
		x, err := newExchange(req.Mechanism, s.creds)
		if err != nil {
			s.log.Error("SASL: cannot start mechanism", zap.String("mechanism", req.Mechanism), zap.Error(err))
			resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
			break
		}
		c.sasl.mechanism, c.sasl.x = req.Mechanism, x
		return resp, nil
	}
	c.sasl.failed = true
	return resp, nil
}
