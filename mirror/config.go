package mirror

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/alertcat"
)

// Config is one mirror: where from, what, and how to reach the upstream.
// The yaml names are serve's `mirror:` settings.
type Config struct {
	// Bootstrap are the upstream's HOST:PORT addresses.
	Bootstrap []string `yaml:"bootstrap"`
	// Topics selects the upstream topics: a name, a glob
	// (ztf_*_programid1) or ^ and a regular expression.
	Topics string `yaml:"topics"`
	// Start is where a partition the destination has never held starts:
	// earliest (the upstream's log start) or latest (new records only).
	Start string `yaml:"start"`
	// Refresh is how often the upstream's topics are listed, so that new
	// topics and partitions are picked up. refresh.ms.
	Refresh time.Duration `yaml:"refresh.ms"`
	// Timeout bounds connecting and each metadata request. timeout.ms.
	Timeout time.Duration `yaml:"timeout.ms"`
	// Security is how the upstream is reached (tls, tls.ca, sasl.*).
	alertcat.Security `yaml:",inline"`

	// Dest are the destination's HOST:PORT addresses and DestSecurity
	// how it is reached: serve sets them to itself.
	Dest         []string          `yaml:"-"`
	DestSecurity alertcat.Security `yaml:"-"`
	// DestKafkaOpts are added to the destination's clients: serve's
	// in-process login.
	DestKafkaOpts []kgo.Opt `yaml:"-"`
}

// Start values.
const (
	StartEarliest = "earliest"
	StartLatest   = "latest"
)

// Bounds of the durations.
const (
	minRefresh = 100 * time.Millisecond
	maxRefresh = time.Hour
	minTimeout = 100 * time.Millisecond
	maxTimeout = 10 * time.Minute
)

// DefaultConfig is a mirror's configuration unless set.
func DefaultConfig() Config {
	return Config{Start: StartEarliest, Refresh: 5 * time.Second, Timeout: 10 * time.Second}
}

// Validate names every problem of c. The destination is checked only when
// set (serve sets it after the config is read).
func (c Config) Validate() error {
	var errs []error
	if len(c.Bootstrap) == 0 {
		errs = append(errs, errors.New("mirror.bootstrap: empty; name the upstream's HOST:PORT"))
	}
	for _, hp := range append(append([]string(nil), c.Bootstrap...), c.Dest...) {
		if h, _, err := net.SplitHostPort(hp); err != nil || h == "" {
			errs = append(errs, fmt.Errorf("mirror: %q: want HOST:PORT", hp))
		}
	}
	if c.Topics == "" {
		errs = append(errs, errors.New("mirror.topics: empty; a topic name, a glob (ztf_*_programid1) or ^regexp"))
	} else if _, err := alertcat.TopicPattern(c.Topics); err != nil {
		errs = append(errs, fmt.Errorf("mirror.topics: %w", err))
	}
	if c.Start != StartEarliest && c.Start != StartLatest {
		errs = append(errs, fmt.Errorf("mirror.start %q: want earliest or latest", c.Start))
	}
	if c.Refresh < minRefresh || c.Refresh > maxRefresh {
		errs = append(errs, fmt.Errorf("mirror.refresh.ms %d: out of range: %d to %d", c.Refresh.Milliseconds(), minRefresh.Milliseconds(), maxRefresh.Milliseconds()))
	}
	if c.Timeout < minTimeout || c.Timeout > maxTimeout {
		errs = append(errs, fmt.Errorf("mirror.timeout.ms %d: out of range: %d to %d", c.Timeout.Milliseconds(), minTimeout.Milliseconds(), maxTimeout.Milliseconds()))
	}
	if err := c.Security.Validate("mirror."); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
