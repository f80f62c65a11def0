package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/ztfbroker/ztfbroker/bench"
)

const benchUsage = `usage: ztfbroker bench [flags]

Runs the same workload against every broker given (--target, --with-kfake,
--with-embedded), one after another, and measures the machine's limits in the
same run: producer and consumer throughput for each record size, end-to-end
latency at each offered rate (from the scheduled send time, so stalls are not
hidden by coordinated omission), and each broker's CPU seconds and peak RSS.
Prints a table; --json and --plot keep every figure.

--with-kfake runs franz-go's kfake from its own command, which ztfbroker does
not contain (kfake is a test fake); build it next to ztfbroker with
  go build -o ztfbroker-kfake ./bench/kfakeserve

flags:
`

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// runBench is `ztfbroker bench`: the same workload against several brokers
// in one run, next to the machine's limits.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	var (
		cfg        bench.Config
		targets    listFlag
		pids       listFlag
		targetCAs  listFlag
		targetSASL listFlag
		embedded   bool
		binary     string
		sizes      string
		rates      string
		jsonPath   string
		plotPath   string
		quiet      bool
		partitions int
		withKfake  bool
		kfakeBin   string
	)
	fs.DurationVar(&cfg.Duration, "duration", 0, "length of each phase (default 30s)")
	fs.Var(&targets, "target", "broker to measure, as `NAME=HOST:PORT[,HOST:PORT]` (repeatable)")
	fs.Var(&pids, "target-pid", "broker process of a --target, as `NAME=PID`, for CPU and RSS (default: the process listening on its port, if visible)")
	fs.Var(&targetCAs, "target-ca", "reach a --target over TLS trusting the CA certificates in a PEM file, as `NAME=CAFILE` (an SSL or SASL_SSL listener; repeatable)")
	fs.Var(&targetSASL, "target-sasl", "log in to a --target with SCRAM, as `NAME=USER:PASSWORDFILE[:SCRAM-SHA-256]` (default SCRAM-SHA-512; the password is the file's first line; repeatable)")
	fs.BoolVar(&withKfake, "with-kfake", false, "also measure franz-go's kfake, started from the kfakeserve command as a subprocess with a temporary data dir")
	fs.StringVar(&kfakeBin, "kfake-binary", "", "kfakeserve binary for --with-kfake (default: ztfbroker-kfake or kfakeserve next to this executable, else on PATH)")
	fs.BoolVar(&cfg.KfakeSync, "kfake-sync", false, "make --with-kfake's kfake fsync every write")
	// Kept so that command lines written for the old in-process default
	// still run: they asked for what is now the only way kfake runs.
	fs.Bool("kfake-process", false, "no effect: --with-kfake always runs kfake as its own process")
	fs.BoolVar(&embedded, "with-embedded", false, "also measure ztfbroker serve, started as a subprocess on free ports with a temporary data dir")
	fs.StringVar(&binary, "binary", "", "ztfbroker binary for --with-embedded (default: this executable)")
	fs.IntVar(&cfg.Producers, "producers", 4, "concurrent producers")
	fs.IntVar(&partitions, "partitions", 6, "partitions per topic")
	fs.StringVar(&sizes, "sizes", "60000,1000", "record sizes of the throughput phases, bytes")
	fs.StringVar(&rates, "rates", "10,80", "offered rates of the latency phases, MB/s (ZTF's peak is about 80)")
	fs.IntVar(&cfg.LatencySize, "latency-size", 60000, "record size of the latency phases, bytes")
	fs.Int64Var(&cfg.MaxBytes, "max-bytes", 8e9, "cap on the bytes of one produce phase (disk and memory of the brokers)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for brokers started here and the disk test (default: a temporary directory)")
	fs.DurationVar(&cfg.LimitsDuration, "limits-duration", 0, "length of each machine-limit test (default: --duration, at most 10s)")
	fs.BoolVar(&cfg.SkipLimits, "skip-limits", false, "do not measure the machine's limits")
	fs.StringVar(&jsonPath, "json", "", "write every figure to this JSON `file`")
	fs.StringVar(&plotPath, "plot", "", "draw throughput and latency to this .png or .svg `file`")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	cfg.Partitions = int32(partitions)
	var err error
	if cfg.Sizes, err = parseInts(sizes); err != nil {
		return fmt.Errorf("bench: --sizes: %w", err)
	}
	if cfg.Rates, err = parseFloats(rates); err != nil {
		return fmt.Errorf("bench: --rates: %w", err)
	}
	pidOf := map[string]int{}
	for _, p := range pids {
		name, v, ok := strings.Cut(p, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n <= 0 {
			return fmt.Errorf("bench: --target-pid %q: want NAME=PID", p)
		}
		pidOf[name] = n
	}
	secOf, err := targetSecurity(targetCAs, targetSASL)
	if err != nil {
		return err
	}
	for _, t := range targets {
		name, addrs, ok := strings.Cut(t, "=")
		if !ok || name == "" || addrs == "" {
			return fmt.Errorf("bench: --target %q: want NAME=HOST:PORT", t)
		}
		cfg.Targets = append(cfg.Targets, bench.Target{Name: name, Addrs: strings.Split(addrs, ","), PID: pidOf[name],
			Security: secOf[name]})
		delete(pidOf, name)
		delete(secOf, name)
	}
	for name := range pidOf {
		return fmt.Errorf("bench: --target-pid %s: no --target of that name", name)
	}
	for name := range secOf {
		return fmt.Errorf("bench: --target-ca/--target-sasl %s: no --target of that name", name)
	}
	if embedded && binary == "" {
		if binary, err = os.Executable(); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if embedded {
		cfg.Embedded = &bench.Process{Binary: binary}
	}
	if withKfake {
		bin, err := bench.FindKfakeServe(kfakeBin)
		if err != nil {
			return err
		}
		cfg.Kfake = &bench.Process{Binary: bin}
	} else if kfakeBin != "" || cfg.KfakeSync {
		return errors.New("bench: --kfake-binary and --kfake-sync need --with-kfake")
	}
	if !quiet {
		cfg.Log = stderr
	}
	rep, err := bench.Run(ctx, cfg)
	if rep != nil {
		rep.WriteTable(stdout)
		if jsonPath != "" {
			if jerr := rep.WriteJSON(jsonPath); jerr != nil {
				return fmt.Errorf("bench: --json: %w", jerr)
			}
		}
		if plotPath != "" {
			if perr := rep.WritePlot(plotPath); perr != nil {
				return fmt.Errorf("bench: --plot: %w", perr)
			}
		}
	}
	return err
}

// targetSecurity reads --target-ca NAME=CAFILE and --target-sasl
// NAME=USER:PASSWORDFILE[:MECHANISM] into each named target's settings.
func targetSecurity(cas, sasls []string) (map[string]*bench.Security, error) {
	out := map[string]*bench.Security{}
	of := func(name string) *bench.Security {
		if out[name] == nil {
			out[name] = &bench.Security{}
		}
		return out[name]
	}
	for _, c := range cas {
		name, file, ok := strings.Cut(c, "=")
		if !ok || name == "" || file == "" {
			return nil, fmt.Errorf("bench: --target-ca %q: want NAME=CAFILE", c)
		}
		of(name).CAFile = file
	}
	for _, c := range sasls {
		name, v, ok := strings.Cut(c, "=")
		parts := strings.Split(v, ":")
		if !ok || name == "" || len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("bench: --target-sasl %q: want NAME=USER:PASSWORDFILE[:SCRAM-SHA-256]", c)
		}
		raw, err := os.ReadFile(parts[1])
		if err != nil {
			return nil, fmt.Errorf("bench: --target-sasl %s: %w", name, err)
		}
		pw, _, _ := strings.Cut(string(raw), "\n")
		s := of(name)
		s.User, s.Password = parts[0], strings.TrimRight(pw, "\r")
		if len(parts) == 3 {
			s.Mechanism = parts[2]
		}
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
