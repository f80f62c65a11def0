package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ztfbroker/ztfbroker/packager"
)

const packageUsage = `usage: ztfbroker package [flags] --simulate N | --ingest DIR | --replay PATH [PATH...] | --seed-history PATH [PATH...]

Package detections into ZTF 4.02 alerts and produce them to the night's topic
ztf_<YYYYMMDD>_programid<N> (key: objectId; value: one single-alert Avro
container file with its schema, or Confluent-framed with --format confluent).

  --simulate N   a synthetic night: --exposures exposures of N alerts, one
                 every --interval over many fields, each revisited every
                 --cadence, objects recurring so histories grow
  --ingest DIR   exposure folders a pipeline writes (layout: go doc
                 ./packager): package those READY and not DONE, then exit;
                 with --follow, keep watching DIR
  --replay PATH  re-publish .avro alert files (and folders of them) as the
                 bytes they are, one message per alert, each to its own
                 night's programid topic (programid 0, prototypes and
                 unreadable alerts are refused into --rejects)
  --seed-history PATH
                 fill the history store from earlier alerts (.avro files,
                 archive .tar.gz, folders of them), then exit; no Kafka is
                 used, and serve must not be running on the same --data-dir

flags:
`

// runPackage is `ztfbroker package`: one packager on one source, producing to
// any Kafka cluster (the embedded broker of a running serve, or another).
func runPackage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, packageUsage)
		fs.PrintDefaults()
	}
	cfg := packager.DefaultConfig()
	sim := &cfg.Source.Simulate
	var (
		bootstrap  string
		replay     string
		seed       string
		follow     bool
		idempotent bool
		schemaAddr string
		verbose    bool
		format     string
		exposures  int
	)
	fs.StringVar(&bootstrap, "bootstrap", "localhost:9092", "comma-separated Kafka `brokers`")
	fs.IntVar(&sim.Alerts, "simulate", 0, "simulate exposures of `N` alerts")
	fs.IntVar(&exposures, "exposures", 1, "simulated exposures to make (0: until interrupted)")
	fs.DurationVar(&sim.Interval, "interval", sim.Interval, "time between simulated exposures, on the wall and on the sky (under 1s: back to back, 40 s apart on the sky)")
	fs.DurationVar(&sim.Cadence, "cadence", sim.Cadence, "time between two visits of a field in a simulated night")
	fs.DurationVar(&sim.Night, "night", sim.Night, "observing hours each day, from the first exposure (0: around the clock)")
	fs.Uint64Var(&sim.Seed, "seed", sim.Seed, "seed of the simulated night")
	fs.StringVar(&cfg.Source.IngestDir, "ingest", "", "ingest exposure folders under `DIR`")
	fs.BoolVar(&follow, "follow", false, "with --ingest: keep watching for new exposures")
	fs.StringVar(&replay, "replay", "", "replay alert files: `PATH` (more paths may follow the flags)")
	fs.StringVar(&seed, "seed-history", "", "seed the history from earlier alerts under `PATH` (more paths may follow the flags), then exit")
	fs.StringVar(&format, "format", string(cfg.Format), "message format: ocf (ZTF's) or confluent (schema by id)")
	fs.Func("schema-id", "schema `id` for --format confluent (default 1)", func(s string) error {
		var id int32
		_, err := fmt.Sscanf(s, "%d", &id)
		cfg.SchemaID = id
		return err
	})
	fs.StringVar(&schemaAddr, "schema-addr", "", "serve GET /schemas/ids/<id> on `host:port` while running")
	fs.StringVar(&cfg.Topic, "topic", "", "produce to this topic instead of ztf_<YYYYMMDD>_programid<N>")
	dataDir := fs.String("data-dir", "./data", "data `folder`: history and rejects go under its packager/, as with serve")
	fs.StringVar(&cfg.HistoryDir, "history", "", "pebble `folder` of per-object history (default <data-dir>/packager/history)")
	fs.StringVar(&cfg.RejectDir, "rejects", "", "`folder` for refused inputs (default <data-dir>/packager/rejects)")
	fs.Float64Var(&cfg.HistoryDays, "history-days", cfg.HistoryDays, "days of history attached to each alert")
	fs.StringVar(&cfg.Compression, "compression", cfg.Compression, "record batch `codec`: zstd, lz4, snappy, gzip or none")
	fs.IntVar(&cfg.CompressionLevel, "compression-level", 0, "zstd 1-22 or gzip 1-9 (0: the codec's default here)")
	fs.Func("partitions", "partitions of each topic created (default 4; -1: the cluster's num.partitions)", func(s string) error {
		_, err := fmt.Sscanf(s, "%d", &cfg.Partitions)
		return err
	})
	fs.BoolVar(&idempotent, "idempotent", true, "idempotent producer (franz-go goes on without it if the broker lacks InitProducerId)")
	fs.BoolVar(&verbose, "v", false, "log each exposure on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg.Format = packager.Format(format)
	cfg.HistoryDir, cfg.RejectDir = packagerStateDirs(*dataDir, cfg.HistoryDir, cfg.RejectDir)
	sim.Exposures = exposures
	var kinds []string
	if sim.Alerts > 0 {
		kinds = append(kinds, packager.SourceSimulate)
	}
	if cfg.Source.IngestDir != "" {
		kinds = append(kinds, packager.SourceIngest)
	}
	if replay != "" {
		kinds = append(kinds, packager.SourceReplay)
		cfg.Source.ReplayPaths = append([]string{replay}, fs.Args()...)
	}
	if seed != "" {
		kinds = append(kinds, "seed-history")
	}
	if fs.NArg() > 0 && replay == "" && seed == "" {
		return fmt.Errorf("package: unexpected arguments %q", fs.Args())
	}
	if len(kinds) != 1 {
		fs.Usage()
		return errors.New("package: give exactly one of --simulate, --ingest, --replay, --seed-history")
	}
	if seed != "" {
		return seedHistory(ctx, cfg, append([]string{seed}, fs.Args()...), verbose, stdout, stderr)
	}
	cfg.Source.Kind = kinds[0]
	if err := cfg.Validate(); err != nil {
		return err
	}

	level := zap.WarnLevel
	if verbose {
		level = zap.InfoLevel
	}
	logger := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(stderr), level))
	defer logger.Sync() //nolint:errcheck

	client, err := packager.NewKafkaProducer(packager.KafkaOptions{
		Bootstrap:        strings.Split(bootstrap, ","),
		NoIdempotence:    !idempotent,
		Compression:      cfg.Compression,
		CompressionLevel: cfg.CompressionLevel,
	})
	if err != nil {
		return fmt.Errorf("package: kafka client: %w", err)
	}
	defer client.Close()
	p, err := packager.New(cfg, client, logger, nil)
	if err != nil {
		return err
	}
	defer p.Close()

	if schemaAddr != "" {
		ln, err := net.Listen("tcp", schemaAddr)
		if err != nil {
			return fmt.Errorf("package: schema endpoint: %w", err)
		}
		srv := &http.Server{Handler: p.SchemaHandler(), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln) //nolint:errcheck
		defer srv.Close()
		fmt.Fprintf(stdout, "schema: http://%s/schemas/ids/%d\n", ln.Addr(), cfg.SchemaID)
	}

	src, err := p.NewSource()
	if err != nil {
		return err
	}
	if cfg.Source.Kind == packager.SourceIngest && !follow {
		// A poll of 0 in the config means the default (1s, follow), so the
		// one-pass ingest is built here: what is READY, then io.EOF.
		src = packager.NewIngest(cfg.Source.IngestDir, 0, nil, p.Schema())
	}
	var total packager.Result
	exposuresDone := 0
	for {
		exp, err := src.Next(ctx)
		if errors.Is(err, io.EOF) || ctx.Err() != nil {
			break
		}
		if err != nil {
			return err
		}
		res, err := p.Package(ctx, exp)
		if err != nil {
			return err
		}
		if d, ok := src.(interface {
			Done(*packager.Exposure) error
		}); ok {
			if err := d.Done(exp); err != nil {
				return err
			}
		}
		exposuresDone++
		total.Alerts += res.Alerts
		total.Rejected += res.Rejected
		total.Bytes += res.Bytes
		fmt.Fprintf(stdout, "exposure %s: %d alerts, %d rejected, %.1f MB, %.3f s (%.0f alerts/s)\n",
			exp.ID, res.Alerts, res.Rejected, float64(res.Bytes)/1e6, res.Latency.Seconds(), rate(res.Alerts, res.Latency))
	}
	fmt.Fprintf(stdout, "total: %d exposures, %d alerts, %d rejected (in %s), %.1f MB\n",
		exposuresDone, total.Alerts, total.Rejected, cfg.RejectDir, float64(total.Bytes)/1e6)
	return nil
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// seedHistory is `package --seed-history`: earlier alerts into the history
// store, so that a new deployment's first alerts carry their 30 days.
func seedHistory(ctx context.Context, cfg packager.Config, paths []string, verbose bool, stdout, stderr io.Writer) error {
	level := zap.WarnLevel
	if verbose {
		level = zap.InfoLevel
	}
	logger := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(stderr), level))
	defer logger.Sync() //nolint:errcheck
	schema, err := packager.LoadSchema()
	if err != nil {
		return err
	}
	h, err := packager.OpenHistory(cfg.HistoryDir, schema, packager.HistoryMemory{})
	if err != nil {
		return fmt.Errorf("package: %w (is serve running on this data folder?)", err)
	}
	res, err := packager.SeedHistory(ctx, h, paths, cfg.RejectDir, logger)
	if cerr := h.Close(); err == nil {
		err = cerr
	}
	fmt.Fprintf(stdout, "seeded %s: %d files, %d alerts: %d detections, %d upper limits, %d forced photometry; %d refused (in %s)\n",
		cfg.HistoryDir, res.Files, res.Alerts, res.Detections, res.Limits, res.Forced, res.Rejected, cfg.RejectDir)
	return err
}
