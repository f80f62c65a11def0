package alertcat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// Config is one run of `ztfbroker cat`.
type Config struct {
	Sources []string
	Dest    string
	// From and To force the format ("avro" or "json") of files and "-".
	From, To string
	// EOF stops each Kafka source at the end offsets taken when it starts.
	EOF bool
	// Count stops after that many alerts (0: no limit).
	Count int64
	// Start reads Kafka sources from the first record at or after it.
	Start time.Time
	// Progress reports counts and rates on Stderr every ProgressEvery.
	Progress      bool
	ProgressEvery time.Duration
	// Registry is the base URL of a schema registry, for framed messages.
	Registry string
	// Bytes is how bytes fields are written in JSON.
	Bytes BytesStyle
	// SchemaFiles are .avsc files, in dependency order, for JSON alerts
	// that carry no "$avro" schema.
	SchemaFiles []string
	// Timestamps chooses the timestamp of produced records: TimestampsKeep
	// (the default, ""), TimestampsJD or TimestampsNow.
	Timestamps string
	// Create creates a missing destination topic with the broker's defaults.
	Create bool
	// Timeout bounds connecting, metadata requests and delivery.
	Timeout time.Duration
	// KafkaOpts are added to every Kafka client (tests, TLS, SASL).
	KafkaOpts []kgo.Opt

	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// The timestamps a record produced by cat can carry (--timestamp).
const (
	// TimestampsKeep: an alert read from Kafka keeps its record's
	// timestamp; one read from a file is stamped with the send time, as
	// ZTF's and the packager's records carry their produce time.
	TimestampsKeep = "keep"
	// TimestampsJD: every alert with a candidate.jd gets its observation
	// time, converted as packager.JDTime does; others as keep.
	TimestampsJD = "jd"
	// TimestampsNow: every alert gets the send time (to replay old alerts
	// into a topic whose message.timestamp.before.max.ms or retention
	// would refuse or delete them).
	TimestampsNow = "now"
)

// Validate joins every problem with the configuration.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Sources) == 0 {
		errs = append(errs, errors.New("cat: need at least one SOURCE and a DEST"))
	}
	if c.Dest == "" {
		errs = append(errs, errors.New("cat: need a DEST"))
	}
	for name, v := range map[string]string{"--from": c.From, "--to": c.To} {
		if v != "" && v != "avro" && v != "json" {
			errs = append(errs, fmt.Errorf("cat: %s must be avro or json, not %q", name, v))
		}
	}
	switch c.Timestamps {
	case "", TimestampsKeep, TimestampsJD, TimestampsNow:
	default:
		errs = append(errs, fmt.Errorf("cat: --timestamp must be keep, jd or now, not %q", c.Timestamps))
	}
	if c.Count < 0 {
		errs = append(errs, errors.New("cat: --count must not be negative"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("cat: --timeout must be positive"))
	}
	for _, s := range c.Sources {
		if ep, err := ParseEndpoint(s); err != nil {
			errs = append(errs, err)
		} else if ep.Kafka && ep.Topic == "" {
			errs = append(errs, fmt.Errorf("cat: source %q: name a topic or a pattern (kafka://host:port/ztf_*_programid1)", s))
		}
	}
	if c.Dest != "" {
		if _, err := ParseEndpoint(c.Dest); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Endpoint is a parsed SOURCE or DEST.
type Endpoint struct {
	Raw   string
	Kafka bool
	Group string
	Hosts []string
	// Topic is a name or a pattern; empty in a destination, it keeps the
	// topic each alert was read from.
	Topic string
	// Pattern is Topic compiled when it is a pattern (see topicPattern).
	Pattern *regexp.Regexp
	// Path is a file or directory; "-" is stdin or stdout.
	Path string
}

func (e Endpoint) String() string { return e.Raw }

// ParseEndpoint parses kafka://[group@]host:port[,host:port]/[topic], a
// path, or "-". The topic may be a glob (ztf_*_programid1) or, starting
// with ^, a regular expression; with none, a destination keeps the topic of
// each alert.
func ParseEndpoint(s string) (Endpoint, error) {
	rest, ok := strings.CutPrefix(s, "kafka://")
	if !ok {
		if s == "" {
			return Endpoint{}, errors.New("cat: empty path")
		}
		return Endpoint{Raw: s, Path: s}, nil
	}
	ep := Endpoint{Raw: s, Kafka: true}
	hosts, topic, ok := strings.Cut(rest, "/")
	if !ok {
		return ep, fmt.Errorf("cat: %q: want kafka://[group@]host:port/topic", s)
	}
	if at := strings.LastIndexByte(hosts, '@'); at >= 0 {
		ep.Group, hosts = hosts[:at], hosts[at+1:]
	}
	for _, h := range strings.Split(hosts, ",") {
		if !strings.Contains(h, ":") {
			return ep, fmt.Errorf("cat: %q: broker %q needs a port", s, h)
		}
		ep.Hosts = append(ep.Hosts, h)
	}
	ep.Topic = topic
	if topic != "" {
		re, err := topicPattern(topic)
		if err != nil {
			return ep, fmt.Errorf("cat: %q: %w", s, err)
		}
		ep.Pattern = re
	}
	return ep, nil
}

// errDone stops the sources once --count alerts went out.
var errDone = errors.New("alertcat: count reached")

type sink interface {
	Write(*Alert) error
	Flush() error
	Close() error
}

type runner struct {
	cfg      Config
	codec    *Codec
	sink     sink
	fallback string
	n        atomic.Int64
	bytes    atomic.Int64
}

// Run copies every alert of the sources, in order, to the destination.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.ProgressEvery == 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.Stdin == nil {
		cfg.Stdin = os.Stdin
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	r := &runner{cfg: cfg, codec: &Codec{Schemas: avrofile.NewSchemas(0), Registry: &Registry{URL: cfg.Registry}, Bytes: cfg.Bytes}}
	if len(cfg.SchemaFiles) > 0 {
		sc, err := avrofile.ParseSchemaFiles(cfg.SchemaFiles...)
		if err != nil {
			return fmt.Errorf("cat: --schema: %w", err)
		}
		r.fallback = sc.String()
	}
	dest, _ := ParseEndpoint(cfg.Dest)
	sk, err := r.openSink(ctx, dest)
	if err != nil {
		return err
	}
	r.sink = sk
	start := time.Now()
	stopProgress := r.progress(start)
	err = r.copyAll(ctx)
	if errors.Is(err, errDone) {
		err = nil
	}
	if cerr := sk.Close(); err == nil {
		err = cerr
	}
	stopProgress()
	return err
}

func (r *runner) copyAll(ctx context.Context) error {
	emit := func(a *Alert) error {
		if r.cfg.Count > 0 && r.n.Load() >= r.cfg.Count {
			return errDone
		}
		if err := r.sink.Write(a); err != nil {
			return err
		}
		r.bytes.Add(int64(len(a.Body)))
		if r.n.Add(1) == r.cfg.Count {
			return errDone
		}
		return nil
	}
	for _, s := range r.cfg.Sources {
		ep, _ := ParseEndpoint(s)
		var err error
		switch {
		case ep.Kafka:
			err = r.readKafka(ctx, ep, emit)
		case ep.Path == "-":
			err = r.readStream(r.cfg.Stdin, "stdin", r.cfg.From, emit)
		default:
			err = r.readPath(ep.Path, emit)
		}
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

func (r *runner) flush() error { return r.sink.Flush() }

func (r *runner) progress(start time.Time) func() {
	if !r.cfg.Progress {
		return func() {}
	}
	report := func() {
		el := time.Since(start).Seconds()
		n, b := r.n.Load(), r.bytes.Load()
		fmt.Fprintf(r.cfg.Stderr, "cat: %d alerts, %.1f MB in %.1fs (%.0f alerts/s, %.1f MB/s)\n",
			n, float64(b)/1e6, el, float64(n)/max(el, 1e-9), float64(b)/1e6/max(el, 1e-9))
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(r.cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				report()
			case <-stop:
				return
			}
		}
	}()
	return func() { close(stop); <-done; report() }
}

func formatOf(path, forced string) string {
	if forced != "" {
		return forced
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json", ".jsonl", ".ndjson":
		return "json"
	case ".avro":
		return "avro"
	}
	return ""
}

// readPath reads a file, or every .avro and .json(l) file of a directory
// in name order.
func (r *runner) readPath(path string, emit func(*Alert) error) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("cat: %w", err)
	}
	paths := []string{path}
	if fi.IsDir() {
		paths = nil
		err := filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && formatOf(p, "") != "" {
				paths = append(paths, p)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("cat: %w", err)
		}
		sort.Strings(paths)
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("cat: %w", err)
		}
		err = r.readStream(f, p, formatOf(p, r.cfg.From), emit)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// readStream reads Avro container files (one or several, concatenated) or
// JSON alerts (one object per line, concatenated, or an array); an unknown
// format is sniffed from the first byte.
func (r *runner) readStream(rd io.Reader, name, format string, emit func(*Alert) error) error {
	br := bufio.NewReaderSize(rd, 1<<20)
	if format == "" {
		p, _ := br.Peek(4)
		switch {
		case bytes.HasPrefix(p, []byte(avrofile.Magic)):
			format = "avro"
		case len(bytes.TrimLeft(p, " \t\r\n")) > 0 && (bytes.TrimLeft(p, " \t\r\n")[0] == '{' || bytes.TrimLeft(p, " \t\r\n")[0] == '['):
			format = "json"
		case len(p) == 0:
			return nil
		default:
			return fmt.Errorf("cat: %s: %w: starts with % x, neither an Avro container file nor JSON (use --from)", name, ErrNotAvro, p)
		}
	}
	var err error
	if format == "json" {
		err = r.readJSONStream(br, emit)
	} else {
		err = r.readAvroStream(br, emit)
	}
	if err != nil && !errors.Is(err, errDone) {
		return fmt.Errorf("cat: %s: %w", name, err)
	}
	return err
}

func (r *runner) readAvroStream(br *bufio.Reader, emit func(*Alert) error) error {
	for {
		if _, err := br.Peek(1); errors.Is(err, io.EOF) {
			return nil
		}
		cr, err := avrofile.NewReader(br)
		if errors.Is(err, avrofile.ErrNotContainer) {
			return fmt.Errorf("%w: %w", ErrNotAvro, err)
		}
		if err != nil {
			return err
		}
		for {
			p, _ := br.Peek(4)
			if len(p) == 0 || bytes.HasPrefix(p, []byte(avrofile.Magic)) {
				break
			}
			blk, err := cr.Next()
			if err != nil {
				return err
			}
			alerts, err := r.codec.splitBlock(cr.Header, blk)
			if err != nil {
				return err
			}
			for _, a := range alerts {
				if err := emit(a); err != nil {
					return err
				}
			}
		}
	}
}

func (r *runner) readJSONStream(br *bufio.Reader, emit func(*Alert) error) error {
	dec := json.NewDecoder(br)
	dec.UseNumber()
	one := func(v any) error {
		a, err := r.codec.FromJSON(v, r.fallback)
		if err != nil {
			return err
		}
		return emit(a)
	}
	for i := 0; ; i++ {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok && d == '[' && i == 0 {
			for dec.More() {
				v, err := readJSON(dec)
				if err != nil {
					return err
				}
				if err := one(v); err != nil {
					return err
				}
			}
			_, err := dec.Token()
			return err
		}
		v, err := readJSONFrom(dec, tok)
		if err != nil {
			return err
		}
		if err := one(v); err != nil {
			return err
		}
	}
}
