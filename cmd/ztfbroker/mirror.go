package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ztfbroker/ztfbroker/alertcat"
	"github.com/ztfbroker/ztfbroker/mirror"
)

const mirrorUsage = `usage: ztfbroker mirror [flags] kafka://UPSTREAM:9092/TOPICS kafka://DEST:9092/

Copy the upstream topics matching TOPICS (a name, a glob such as
ztf_*_programid1, or ^regexp) into the destination cluster, record for
record: keys, values, timestamps, headers and partition counts kept,
partition i into partition i, topics created later picked up. Every copied
record carries a header ztfbroker-mirror-offset with its upstream offset;
a restart of the mirror or of either cluster resumes after the last record
the destination holds, so nothing is lost or copied twice.

Passwords come from the environment: ZTFBROKER_UPSTREAM_SASL_PASSWORD and
ZTFBROKER_DEST_SASL_PASSWORD. serve runs the same mirror into itself with a
mirror: section in its configuration.

flags:
`

// runMirror is `ztfbroker mirror`: MirrorMaker for ZTF's alert network.
func runMirror(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mirror", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, mirrorUsage)
		fs.PrintDefaults()
	}
	cfg := mirror.DefaultConfig()
	var metrics, level string
	fs.StringVar(&cfg.Start, "start", cfg.Start, "where a partition the destination has never held starts: earliest or latest")
	fs.DurationVar(&cfg.Refresh, "refresh", cfg.Refresh, "how often the upstream's topics are listed for new ones")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound on connecting and on each metadata request")
	fs.StringVar(&metrics, "metrics", "", "serve Prometheus /metrics on this `HOST:PORT` (lag, latency, records)")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	securityFlags(fs, "upstream", &cfg.Security)
	securityFlags(fs, "dest", &cfg.DestSecurity)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("mirror: need an upstream kafka://HOST:PORT/TOPICS and a destination kafka://HOST:PORT/")
	}
	up, err := alertcat.ParseEndpoint(fs.Arg(0))
	if err == nil && (!up.Kafka || up.Topic == "") {
		err = fmt.Errorf("mirror: upstream %q: want kafka://HOST:PORT/TOPICS", fs.Arg(0))
	}
	if err != nil {
		return err
	}
	down, err := alertcat.ParseEndpoint(fs.Arg(1))
	if err == nil && (!down.Kafka || down.Topic != "") {
		err = fmt.Errorf("mirror: destination %q: want kafka://HOST:PORT/ (topics keep their upstream names)", fs.Arg(1))
	}
	if err != nil {
		return err
	}
	cfg.Bootstrap, cfg.Topics, cfg.Dest = up.Hosts, up.Topic, down.Hosts
	cfg.Security.SASLPassword = os.Getenv("ZTFBROKER_UPSTREAM_SASL_PASSWORD")
	cfg.DestSecurity.SASLPassword = os.Getenv("ZTFBROKER_DEST_SASL_PASSWORD")
	if err := cfg.DestSecurity.Validate("--dest-"); err != nil {
		return err
	}
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return fmt.Errorf("mirror: --log-level %q: want debug, info, warn or error", level)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(encCfg), zapcore.AddSync(stderr), lvl))
	defer logger.Sync()

	reg := prometheus.NewRegistry()
	mr, err := mirror.New(cfg, logger, reg, time.Now)
	if err != nil {
		return err
	}
	if metrics != "" {
		ln, err := net.Listen("tcp", metrics)
		if err != nil {
			return fmt.Errorf("mirror: --metrics: %w", err)
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
	}
	logger.Info("mirror started", zap.Strings("upstream", cfg.Bootstrap), zap.String("topics", cfg.Topics),
		zap.Strings("destination", cfg.Dest))
	return mr.Run(ctx)
}

// securityFlags are --NAME-tls, --NAME-tls-ca, --NAME-sasl-mechanism and
// --NAME-sasl-user.
func securityFlags(fs *flag.FlagSet, name string, s *alertcat.Security) {
	fs.BoolVar(&s.TLS, name+"-tls", false, "reach the "+name+" over TLS, trusting the system's roots")
	fs.StringVar(&s.CAFile, name+"-tls-ca", "", "reach the "+name+" over TLS, trusting this PEM `file`")
	fs.StringVar(&s.SASLMechanism, name+"-sasl-mechanism", "", "SASL login to the "+name+": PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.StringVar(&s.SASLUser, name+"-sasl-user", "", "SASL `user` at the "+name)
}

// mirrorSection is the config file's `mirror:` mapping: whether serve runs
// a mirror of an upstream cluster into itself, and the mirror's Config
// inline (the destination is serve's own listener).
type mirrorSection struct {
	Enabled       bool `yaml:"enabled"`
	mirror.Config `yaml:",inline"`
}

// check names the section's problems: all of them when enabled, the ranges
// only when not (so a wrong number is caught before it is switched on).
func (s mirrorSection) check() []error {
	c := s.Config
	c.Dest = []string{"self:0"}
	if !s.Enabled {
		c.Bootstrap, c.Topics = []string{"upstream:9092"}, "ztf_*"
	}
	if err := c.Validate(); err != nil {
		return []error{err}
	}
	return nil
}
