package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ztfbroker/ztfbroker/archive"
	"github.com/ztfbroker/ztfbroker/packager"
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
		registry  = fs.String("schema-registry", "", "schema registry `URL` of a Confluent-framed topic (GET URL/schemas/ids/<id>; a serve's http listener is one); default: the packager's 4.02 schema under --schema-id")
		schemaID  = fs.Int("schema-id", int(packager.DefaultConfig().SchemaID), "without --schema-registry: the `id` of the packager's 4.02 schema (packager.schema.id)")
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
		Schemas:         packagerSchemas(int32(*schemaID)),
		Logger: zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
			zapcore.AddSync(stderr), zapcore.WarnLevel)),
	}
	if *registry != "" {
		job.Schemas = registrySchemas(*registry, &http.Client{Timeout: 30 * time.Second})
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

// packagerSchemas serves the 4.02 schema the packager writes under id, as
// the packager's own /schemas/ids/<id> does, so that an archive of a
// Confluent-framed topic carries the schema without a registry round trip.
func packagerSchemas(id int32) archive.SchemaLookup {
	if id == 0 {
		id = packager.DefaultConfig().SchemaID
	}
	return func(got int32) ([]byte, error) {
		if got != id {
			return nil, fmt.Errorf("%w: %d (the packager's schema is %d)", archive.ErrUnknownSchema, got, id)
		}
		s, err := packager.LoadSchema()
		if err != nil {
			return nil, err
		}
		return s.Text, nil
	}
}

// registrySchemas asks a Confluent schema registry (or a serve's HTTP
// listener): GET <base>/schemas/ids/<id> answers {"schema": "<JSON>"}, 404
// an unknown id. Anything else fails the archive run, to be tried again.
func registrySchemas(base string, client *http.Client) archive.SchemaLookup {
	base = strings.TrimRight(base, "/")
	return func(id int32) ([]byte, error) {
		url := base + "/schemas/ids/" + strconv.Itoa(int(id))
		resp, err := client.Get(url)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return nil, fmt.Errorf("%w: %d (%s: 404)", archive.ErrUnknownSchema, id, url)
		case resp.StatusCode != http.StatusOK:
			return nil, fmt.Errorf("%s: %s", url, resp.Status)
		}
		var body struct {
			Schema *string `json:"schema"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&body); err != nil || body.Schema == nil {
			return nil, fmt.Errorf("%s: not a schema registry answer (%v)", url, err)
		}
		return []byte(*body.Schema), nil
	}
}
