package packager

import (
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Format is the wire format of the messages on a topic.
type Format string

const (
	// FormatOCF: each message value is one single-alert Avro Object Container
	// File carrying its schema, exactly as ZTF sends alerts (default).
	FormatOCF Format = "ocf"
	// FormatConfluent: magic byte 0, the 4-byte big-endian schema id, then
	// the Avro body; the schema is served at /schemas/ids/<id>. About half
	// the bytes of FormatOCF (the schema text is a third of each ZTF message).
	FormatConfluent Format = "confluent"
)

// DefaultPartitions is the partition count of a nightly topic. Partitions
// bound how many members of one consumer group share a night, and each costs
// the broker an active segment and its index per night. Four lets a group of
// up to four consumers (two per core of a 2-core VM) split a night while a
// night's topics (one per program) stay a few dozen files. A larger
// deployment sets more: Kafka cannot lower a topic's count, but nightly
// topics are new each night.
const DefaultPartitions = 4

// maxPartitions bounds packager.partitions: far above any useful count, low
// enough that a typo does not ask the broker for a million files.
const maxPartitions = 1024

// Source kinds.
const (
	SourceNone     = ""
	SourceSimulate = "simulate"
	SourceIngest   = "ingest"
	SourceReplay   = "replay"
)

// Config configures a Packager. Zero values take the defaults of
// DefaultConfig where noted.
type Config struct {
	// HistoryDir is the pebble folder of per-object history (required).
	HistoryDir string `yaml:"history.dir"`
	// RejectDir receives refused inputs (required).
	RejectDir string `yaml:"reject.dir"`
	// HistoryDays: rows older than this before an exposure are pruned and
	// not attached (30).
	HistoryDays float64 `yaml:"history.days"`
	// Format of every topic this packager writes: "ocf" or "confluent".
	Format Format `yaml:"format"`
	// SchemaID is the id of the 4.02 schema for Confluent framing and the
	// /schemas/ids/<id> endpoint (1).
	SchemaID int32 `yaml:"schema.id"`
	// Topic, when set, replaces the nightly ztf_<YYYYMMDD>_programid<N>.
	Topic string `yaml:"topic"`
	// Publisher is written into each alert ("ztfbroker").
	Publisher string `yaml:"publisher"`
	// Workers encoding alerts in parallel (GOMAXPROCS).
	Workers int `yaml:"workers"`
	// Compression of the produced record batches, as Kafka's producer names
	// it: zstd (default), lz4, snappy, gzip or none. The broker stores and
	// serves batches as sent; consumers decompress them.
	Compression string `yaml:"compression"`
	// CompressionLevel: 0 is the codec's default here (zstd 1, gzip 6);
	// zstd takes 1-22, gzip 1-9, the others none.
	CompressionLevel int `yaml:"compression.level"`
	// Partitions of each topic the packager creates (4); -1 leaves it to
	// the cluster's num.partitions. Alerts are keyed by objectId, so an
	// object's alerts are in one partition, in order.
	Partitions int32 `yaml:"partitions"`
	// Source is what Run reads.
	Source SourceConfig `yaml:"source"`
	// HistoryMemory sizes the history store (serve derives it from its
	// memory budget).
	HistoryMemory HistoryMemory `yaml:"-"`
	// Clock returns the time; nil means time.Now.
	Clock func() time.Time `yaml:"-"`
}

// SourceConfig chooses and configures the source that Run reads.
type SourceConfig struct {
	// Kind: "" (none: Run waits for the context), "simulate", "ingest" or "replay".
	Kind     string         `yaml:"kind"`
	Simulate SimulateConfig `yaml:"simulate"`
	// IngestDir is watched for exposure folders (see the package doc).
	IngestDir string `yaml:"ingest.dir"`
	// IngestPoll is how often IngestDir is scanned (1s).
	IngestPoll time.Duration `yaml:"ingest.poll.ms"`
	// ReplayPaths are .avro files or folders of them.
	ReplayPaths []string `yaml:"replay.paths"`
}

// SimulateConfig configures the synthetic night (see Simulation): sky time
// keeps to the clock, the first night begins at start and lasts Night, then
// the same hours each day.
type SimulateConfig struct {
	// Alerts per exposure (80): the one setting that scales the night. The
	// default makes ~57,600 alerts a night, ~3.6 GB; ZTF sends 0.6-1.2 M.
	Alerts int `yaml:"alerts"`
	// Exposures to make; 0 means until stopped.
	Exposures int `yaml:"exposures"`
	// Interval is the time between exposures (40s, as ZTF takes them), on
	// the wall and on the sky; under a second (tests), exposures come that
	// fast but 40 s apart on the sky.
	Interval time.Duration `yaml:"interval.ms"`
	// Night is how long exposures are taken each day, from the first (8h);
	// 0 means around the clock.
	Night time.Duration `yaml:"night.ms"`
	// Cadence is the time between two visits of a field in a night (45m).
	Cadence time.Duration `yaml:"cadence.ms"`
	// Objects are the variable stars and transients of each field; each
	// exposure detects those that changed enough and makes up the rest of
	// Alerts with artefacts and asteroids (2 * Alerts).
	Objects int `yaml:"objects"`
	// Seed makes the night reproducible (1).
	Seed uint64 `yaml:"seed"`
	// Programid of the alerts (1 = public).
	Programid int `yaml:"programid"`
	// Start is the sky time of the first exposure; zero means the clock's now.
	Start time.Time `yaml:"start"`
}

// maxWorkers bounds packager.workers: more encoders than this only cost
// memory (each holds an alert being built).
const maxWorkers = 1024

// DefaultConfig returns the defaults; HistoryDir and RejectDir still need
// setting.
func DefaultConfig() Config {
	return Config{
		HistoryDays: 30,
		Format:      FormatOCF,
		SchemaID:    1,
		Publisher:   "ztfbroker",
		Workers:     runtime.GOMAXPROCS(0),
		Compression: CompressionZstd,
		Partitions:  DefaultPartitions,
		Source: SourceConfig{
			IngestPoll: time.Second,
			Simulate: SimulateConfig{
				Alerts:    80,
				Interval:  40 * time.Second,
				Night:     8 * time.Hour,
				Cadence:   45 * time.Minute,
				Seed:      1,
				Programid: 1,
			},
		},
	}
}

// withDefaults fills zero values from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.HistoryDays == 0 {
		c.HistoryDays = d.HistoryDays
	}
	if c.Format == "" {
		c.Format = d.Format
	}
	if c.SchemaID == 0 {
		c.SchemaID = d.SchemaID
	}
	if c.Publisher == "" {
		c.Publisher = d.Publisher
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.Compression == "" {
		c.Compression = d.Compression
	}
	if c.Partitions == 0 {
		c.Partitions = d.Partitions
	}
	if c.Source.IngestPoll == 0 {
		c.Source.IngestPoll = d.Source.IngestPoll
	}
	s := &c.Source.Simulate
	if s.Alerts == 0 {
		s.Alerts = d.Source.Simulate.Alerts
	}
	if s.Cadence == 0 {
		s.Cadence = d.Source.Simulate.Cadence
	}
	if s.Objects == 0 {
		s.Objects = 2 * s.Alerts
	}
	if s.Seed == 0 {
		s.Seed = d.Source.Simulate.Seed
	}
	if s.Programid == 0 {
		s.Programid = d.Source.Simulate.Programid
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// Validate reports every problem, naming the setting.
func (c Config) Validate() error {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, fmt.Errorf("packager.%s: %s", setting, fmt.Sprintf(format, args...)))
	}
	if c.HistoryDir == "" {
		bad("history.dir", "required")
	}
	if c.RejectDir == "" {
		bad("reject.dir", "required")
	}
	if !(c.HistoryDays >= 0 && c.HistoryDays <= 3650) { // NaN too
		bad("history.days", "%v is outside 0-3650", c.HistoryDays)
	}
	switch c.Format {
	case "", FormatOCF, FormatConfluent:
	default:
		bad("format", "%q is neither %q nor %q", c.Format, FormatOCF, FormatConfluent)
	}
	if c.SchemaID < 0 {
		bad("schema.id", "%d is negative", c.SchemaID)
	}
	if c.Workers < 0 || c.Workers > maxWorkers {
		bad("workers", "%d is outside 0-%d (0: one per core)", c.Workers, maxWorkers)
	}
	if c.Source.IngestPoll < 0 {
		bad("source.ingest.poll.ms", "%v is negative", c.Source.IngestPoll)
	}
	if err := checkCompression(c.Compression, c.CompressionLevel); err != nil {
		errs = append(errs, err)
	}
	if c.Partitions < -1 || c.Partitions > maxPartitions {
		bad("partitions", "%d is outside 1-%d (or -1: the cluster's num.partitions)", c.Partitions, maxPartitions)
	}
	s := c.Source
	switch s.Kind {
	case SourceNone:
	case SourceSimulate:
		if s.Simulate.Alerts < 0 {
			bad("source.simulate.alerts", "%d is negative", s.Simulate.Alerts)
		}
		if s.Simulate.Objects < 0 {
			bad("source.simulate.objects", "%d is negative", s.Simulate.Objects)
		}
		if s.Simulate.Exposures < 0 {
			bad("source.simulate.exposures", "%d is negative", s.Simulate.Exposures)
		}
		if s.Simulate.Interval < 0 {
			bad("source.simulate.interval.ms", "%v is negative", s.Simulate.Interval)
		}
		if s.Simulate.Cadence < 0 {
			bad("source.simulate.cadence.ms", "%v is negative", s.Simulate.Cadence)
		}
		if s.Simulate.Night < 0 {
			bad("source.simulate.night.ms", "%v is negative", s.Simulate.Night)
		}
		if s.Simulate.Programid < 0 || s.Simulate.Programid > 3 {
			bad("source.simulate.programid", "%d is not one of ZTF's programs 1 (public), 2 (partnership), 3 (Caltech)", s.Simulate.Programid)
		}
		if s.Simulate.Night > 24*time.Hour {
			bad("source.simulate.night.ms", "%v is longer than a day", s.Simulate.Night)
		}
	case SourceIngest:
		if s.IngestDir == "" {
			bad("source.ingest.dir", "required for source kind ingest")
		}
	case SourceReplay:
		if len(s.ReplayPaths) == 0 {
			bad("source.replay.paths", "required for source kind replay")
		}
	default:
		bad("source.kind", "%q is not one of simulate, ingest, replay", s.Kind)
	}
	return errors.Join(errs...)
}
