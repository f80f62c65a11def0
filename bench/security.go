package bench

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// opts are the client options that make a connection speak s: a TLS dialer
// trusting CAFile, a SCRAM login, or both. Nil s is plaintext.
func (s *Security) opts() ([]kgo.Opt, error) {
	if s == nil {
		return nil, nil
	}
	var opts []kgo.Opt
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("bench: tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bench: tls ca: no PEM certificate in %s", s.CAFile)
		}
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}))
	}
	if s.User != "" {
		a := scram.Auth{User: s.User, Pass: s.Password}
		switch s.Mechanism {
		case "", "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(a.AsSha512Mechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(a.AsSha256Mechanism()))
		default:
			return nil, fmt.Errorf("bench: sasl mechanism %q: want SCRAM-SHA-512 or SCRAM-SHA-256", s.Mechanism)
		}
	}
	return opts, nil
}
