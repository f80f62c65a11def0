package bench

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/alertcat"
)

// opts are the client options that make a connection speak s: a TLS dialer
// trusting CAFile, a SCRAM login, or both (alertcat.Security builds them,
// for cat and mirror too). Nil s is plaintext.
func (s *Security) opts() ([]kgo.Opt, error) {
	if s == nil {
		return nil, nil
	}
	sec := alertcat.Security{CAFile: s.CAFile}
	if s.User != "" {
		switch s.Mechanism {
		case "", "SCRAM-SHA-512":
			sec.SASLMechanism = "SCRAM-SHA-512"
		case "SCRAM-SHA-256":
			sec.SASLMechanism = s.Mechanism
		default:
			return nil, fmt.Errorf("bench: sasl mechanism %q: want SCRAM-SHA-512 or SCRAM-SHA-256", s.Mechanism)
		}
		sec.SASLUser, sec.SASLPassword = s.User, s.Password
	}
	opts, err := sec.KafkaOpts()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return opts, nil
}
