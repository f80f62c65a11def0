// Package bench measures Kafka brokers side by side with ZTF-shaped load:
// producer and consumer throughput with 60 kB alerts and 1 kB records from
// several producers over several partitions, end-to-end latency at fixed
// offered rates, and each broker's CPU time and resident memory, next to the
// machine's own limits (sequential write with fdatasync to the data disk,
// loopback TCP) measured in the same run.
//
// Phases, per target and in this order, each lasting Config.Duration (or
// until Config.MaxBytes have been produced):
//
//	produce  size S: P producers, acks=all, no compression, into a fresh
//	         topic of N partitions; records/s and MB/s of acknowledged data
//	consume  size S: one consumer reads that topic from the start to the
//	         end offsets taken after the produce phase
//	latency  rate R: P producers send 60 kB records on a fixed schedule
//	         (record i at t0 + i*size/R) and one consumer receives them;
//	         latency is receive time minus the *scheduled* send time, so a
//	         stalled broker or producer is charged for every record it
//	         delayed (the correction for coordinated omission)
//
// Broker CPU seconds are utime+stime from /proc/<pid>/stat over a phase,
// RSS the peak of VmRSS from /proc/<pid>/status sampled every 200 ms.
//
// franz-go's kfake, the reference peer, runs as its own process from the
// bench/kfakeserve command (Config.Kfake), never inside this package: kfake
// is a test fake at an untagged version, and the ztfbroker binary, which
// links this package for `ztfbroker bench`, must not carry it.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Target is a broker to measure.
type Target struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
	// PID is the broker process for CPU and RSS; 0 discovers it from the
	// listening port, -1 means unknown.
	PID int `json:"pid"`
	// Kind is "external", "embedded" (ztfbroker serve as a subprocess) or
	// "kfake" (bench/kfakeserve as a subprocess).
	Kind string `json:"kind"`
	// Security, when set, is how the bench clients reach the target: TLS,
	// SCRAM or both (an SSL, SASL_PLAINTEXT or SASL_SSL listener). Nil is
	// PLAINTEXT.
	Security *Security `json:"security,omitempty"`
}

// Security is a target's TLS and SASL settings for its clients.
type Security struct {
	// CAFile, when set, dials over TLS and trusts the PEM certificates in it.
	CAFile string `json:"ca_file,omitempty"`
	// User, when set, logs in with SCRAM as this user with Password.
	User     string `json:"user,omitempty"`
	Password string `json:"-"`
	// Mechanism is SCRAM-SHA-512 (the default) or SCRAM-SHA-256.
	Mechanism string `json:"mechanism,omitempty"`
}

// Protocol is the Kafka security.protocol these settings speak.
func (s *Security) Protocol() string {
	switch {
	case s == nil || s.CAFile == "" && s.User == "":
		return "PLAINTEXT"
	case s.User == "":
		return "SSL"
	case s.CAFile == "":
		return "SASL_PLAINTEXT"
	}
	return "SASL_SSL"
}

// Process says how to start a broker binary as a child process, so that its
// CPU and RSS are its own and not the bench clients'.
type Process struct {
	Binary string
	// Env is added to the subprocess environment (tests use it to make a
	// test binary act as ztfbroker).
	Env []string
}

// Config is one bench run.
type Config struct {
	Duration time.Duration
	Targets  []Target
	// Kfake, when set, also measures kfake: Binary is the bench/kfakeserve
	// command (see FindKfakeServe), run with a data directory.
	Kfake *Process
	// KfakeSync makes kfake fsync every write (kfakeserve --sync).
	KfakeSync bool
	// Embedded, when set, also measures `ztfbroker serve` from Binary.
	Embedded   *Process
	Producers  int
	Partitions int32
	// Sizes are the record sizes of the throughput phases.
	Sizes []int
	// Rates are the offered rates of the latency phases, in MB/s.
	Rates []float64
	// LatencySize is the record size of the latency phases.
	LatencySize int
	// MaxBytes caps what one produce phase writes (in-memory brokers).
	MaxBytes int64
	// DataDir holds the data of brokers started here and the disk test.
	DataDir string
	// LimitsDuration is how long each machine limit is measured.
	LimitsDuration time.Duration
	SkipLimits     bool
	// Log receives progress lines.
	Log io.Writer
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Producers == 0 {
		c.Producers = 4
	}
	if c.Partitions == 0 {
		c.Partitions = 6
	}
	if len(c.Sizes) == 0 {
		c.Sizes = []int{60000, 1000}
	}
	if len(c.Rates) == 0 {
		c.Rates = []float64{10, 80}
	}
	if c.LatencySize == 0 {
		c.LatencySize = 60000
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 8e9
	}
	if c.LimitsDuration == 0 {
		c.LimitsDuration = min(c.Duration, 10*time.Second)
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Validate joins every problem with the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Duration <= 0 {
		errs = append(errs, errors.New("bench: --duration must be positive"))
	}
	if len(c.Targets) == 0 && c.Kfake == nil && c.Embedded == nil {
		errs = append(errs, errors.New("bench: nothing to measure: give --target, --with-kfake or --with-embedded"))
	}
	seen := map[string]bool{"kfake": c.Kfake != nil, "ztfbroker": c.Embedded != nil}
	for _, t := range c.Targets {
		if t.Name == "" || len(t.Addrs) == 0 {
			errs = append(errs, fmt.Errorf("bench: --target %q: want NAME=HOST:PORT", t.Name))
		}
		if seen[t.Name] {
			errs = append(errs, fmt.Errorf("bench: target name %q used twice", t.Name))
		}
		seen[t.Name] = true
	}
	if c.Producers < 1 {
		errs = append(errs, errors.New("bench: --producers must be at least 1"))
	}
	if c.Partitions < 1 {
		errs = append(errs, errors.New("bench: --partitions must be at least 1"))
	}
	for _, s := range append(append([]int{}, c.Sizes...), c.LatencySize) {
		if s < 16 || s > 900_000 {
			errs = append(errs, fmt.Errorf("bench: record size %d out of 16..900000", s))
		}
	}
	for _, r := range c.Rates {
		if r <= 0 {
			errs = append(errs, fmt.Errorf("bench: --rates: %v MB/s is not positive", r))
		}
	}
	if c.Embedded != nil && c.Embedded.Binary == "" {
		errs = append(errs, errors.New("bench: --with-embedded needs a ztfbroker binary"))
	}
	if c.Kfake != nil && c.Kfake.Binary == "" {
		errs = append(errs, errors.New("bench: --with-kfake needs a kfakeserve binary (--kfake-binary)"))
	}
	return errors.Join(errs...)
}

// Run measures the machine and every target, in turn, and returns every
// figure. A target that fails is reported with its error and the run
// continues; Run returns an error only if nothing could be measured.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dataDir := cfg.DataDir
	if dataDir == "" {
		d, err := os.MkdirTemp("", "ztfbroker-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dataDir = d
	} else if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	rep := &Report{
		Started: time.Now().UTC(), Host: host, CPUs: numCPU(),
		Duration: cfg.Duration.Seconds(), Producers: cfg.Producers, Partitions: cfg.Partitions,
	}
	if !cfg.SkipLimits {
		fmt.Fprintf(cfg.Log, "bench: machine limits (%s each)\n", cfg.LimitsDuration)
		l, err := measureLimits(ctx, dataDir, cfg.LimitsDuration)
		if err != nil {
			rep.Errors = append(rep.Errors, err.Error())
		}
		rep.Limits = &l
	}

	type start func() (Target, func(), error)
	var starts []start
	if cfg.Embedded != nil {
		starts = append(starts, func() (Target, func(), error) { return startEmbedded(ctx, cfg, dataDir) })
	}
	if cfg.Kfake != nil {
		starts = append(starts, func() (Target, func(), error) { return startKfake(ctx, cfg, dataDir) })
	}
	for _, t := range cfg.Targets {
		starts = append(starts, func() (Target, func(), error) { return resolvePID(t), func() {}, nil })
	}
	for _, st := range starts {
		if ctx.Err() != nil {
			break
		}
		t, stop, err := st()
		if err != nil {
			rep.Targets = append(rep.Targets, TargetReport{Target: t, Error: err.Error()})
			fmt.Fprintf(cfg.Log, "bench: %s: %v\n", t.Name, err)
			continue
		}
		tr := runTarget(ctx, cfg, t)
		stop()
		rep.Targets = append(rep.Targets, tr)
	}
	rep.Finished = time.Now().UTC()
	rep.fillFractions()
	measured := false
	for _, t := range rep.Targets {
		measured = measured || len(t.Throughput) > 0
	}
	if !measured {
		return rep, errors.New("bench: no target could be measured")
	}
	return rep, nil
}

func resolvePID(t Target) Target {
	if t.Kind == "" {
		t.Kind = "external"
	}
	if t.PID == 0 {
		t.PID = -1
		for _, a := range t.Addrs {
			if pid, err := pidListeningOn(portOf(a)); err == nil {
				t.PID = pid
				break
			}
		}
	}
	return t
}
