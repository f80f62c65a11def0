package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ztfbroker/ztfbroker/archive"
)

// runArchive is `ztfbroker archive`: one night's topic, from its start to
// the end offsets listed when the run starts, into ZTF's tarball in --out.
// A run that was stopped resumes from its last checkpoint.
func runArchive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("archive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		bootstrap = fs.String("bootstrap", "localhost:9092", "Kafka brokers, `HOST:PORT[,HOST:PORT]`")
		night     = fs.String("night", "", "UTC night to archive, `YYYYMMDD` (topic ztf_YYYYMMDD_programidN)")
		program   = fs.Int("program", 1, "programid: 1 public, 2 partnership")
		out       = fs.String("out", ".", "folder for the tarball")
		topic     = fs.String("topic", "", "consume this topic instead of ztf_YYYYMMDD_programidN")
		level     = fs.Int("level", archive.DefaultLevel, "gzip level, 1 (fast) to 9 (small)")
		ckpt      = fs.Int64("checkpoint-bytes", archive.DefaultCheckpointBytes, "tar bytes between checkpoints")
		workers   = fs.Int("workers", 0, "compressing goroutines (default: one per core)")
		progress  = fs.String("progress", "auto", "progress bar on stderr: auto (only on a terminal), always, never")
	)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ztfbroker archive --night YYYYMMDD [--program N] [--bootstrap HOST:PORT] [--out DIR] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *night == "" {
		fs.Usage()
		return errors.New("--night is required")
	}
	n, err := archive.ParseNight(*night)
	if err != nil {
		return err
	}
	job := archive.Job{
		Bootstrap:       archiveBootstrap(*bootstrap),
		Night:           n,
		Program:         archive.Program(*program),
		Topic:           *topic,
		OutDir:          *out,
		Level:           *level,
		CheckpointBytes: *ckpt,
		Workers:         *workers,
		Logger: zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
			zapcore.AddSync(stderr), zapcore.WarnLevel)),
	}
	switch *progress {
	case "auto":
		if archive.IsTerminal(stderr) {
			job.Progress = stderr
		}
	case "always":
		job.Progress = stderr
	case "never":
	default:
		return fmt.Errorf("--progress %q: want auto, always or never", *progress)
	}
	res, err := archive.Build(ctx, job)
	if err != nil {
		return err
	}
	resumed := ""
	if res.Resumed {
		resumed = " (resumed)"
	}
	fmt.Fprintf(stdout, "%s: %d alerts, %.1f MB -> %.1f MB in %s, %.1f MB/s%s\n",
		res.Path, res.Members, float64(res.InputBytes)/1e6, float64(res.Size)/1e6,
		res.Elapsed.Round(1e7), float64(res.InputBytes)/1e6/max(res.Elapsed.Seconds(), 1e-9), resumed)
	if res.NoCandid > 0 {
		fmt.Fprintf(stdout, "%d messages had no readable candid and are kept as nocandid_<partition>_<offset>.avro\n", res.NoCandid)
	}
	return nil
}

func archiveBootstrap(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
