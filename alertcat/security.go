package alertcat

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Security is how a Kafka client reaches a cluster: TLS (trusting CAFile,
// or the system's roots when it is empty) and a SASL login. The zero value
// is plaintext without a login. It is shared by every client the project
// makes to another cluster (cat, mirror).
type Security struct {
	TLS           bool   `yaml:"tls"`
	CAFile        string `yaml:"tls.ca"`
	SASLMechanism string `yaml:"sasl.mechanism"` // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	SASLUser      string `yaml:"sasl.user"`
	SASLPassword  string `yaml:"sasl.password"`
}

// Validate names every problem of s; prefix is the settings' prefix
// ("mirror.", "--source-").
func (s Security) Validate(prefix string) error {
	var errs []error
	switch s.SASLMechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		errs = append(errs, fmt.Errorf("%ssasl.mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", prefix, s.SASLMechanism))
	}
	if (s.SASLMechanism != "") != (s.SASLUser != "") {
		errs = append(errs, fmt.Errorf("%ssasl.mechanism and %ssasl.user go together", prefix, prefix))
	}
	if s.SASLMechanism == "PLAIN" && !s.TLS && s.CAFile == "" {
		errs = append(errs, fmt.Errorf("%ssasl.mechanism PLAIN sends the password in clear: set %stls or use SCRAM", prefix, prefix))
	}
	return errors.Join(errs...)
}

// KafkaOpts are the client options that make a connection speak s.
func (s Security) KafkaOpts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if s.TLS || s.CAFile != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.CAFile != "" {
			pem, err := os.ReadFile(s.CAFile)
			if err != nil {
				return nil, fmt.Errorf("tls ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls ca: no PEM certificate in %s", s.CAFile)
			}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	switch s.SASLMechanism {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha512Mechanism()))
	default:
		return nil, s.Validate("")
	}
	return opts, nil
}

// TopicPattern compiles a topic selector as kafka:// addresses take it: a
// name (nil: match it exactly), a glob (ztf_*_programid1) or, starting
// with ^, a regular expression.
func TopicPattern(topic string) (*regexp.Regexp, error) { return topicPattern(topic) }
