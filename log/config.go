package log

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// FlushPolicy says when appended batches reach stable storage.
type FlushPolicy int

const (
	// FlushAlways makes Append return only after fdatasync; concurrent
	// appends share one fsync (group commit). The zero value: an
	// acknowledged record survives a power cut unless asked otherwise.
	FlushAlways FlushPolicy = iota
	// FlushInterval fsyncs every Config.FlushInterval, on roll and on close.
	FlushInterval
)

func (p FlushPolicy) String() string {
	switch p {
	case FlushInterval:
		return "interval"
	case FlushAlways:
		return "always"
	}
	return fmt.Sprintf("FlushPolicy(%d)", int(p))
}

// Defaults, as Kafka's and ZTF's.
const (
	DefaultSegmentBytes       = 256 << 20
	DefaultSegmentAge         = 7 * 24 * time.Hour
	DefaultRetentionAge       = 7 * 24 * time.Hour
	DefaultIndexIntervalBytes = 4096
	DefaultFlushInterval      = 200 * time.Millisecond
	DefaultPreallocateBytes   = 8 << 20
	// Kafka's delete.retention.ms and min.cleanable.dirty.ratio.
	DefaultDeleteRetention        = 24 * time.Hour
	DefaultMinCleanableDirtyRatio = 0.5

	// maxSegmentBytes keeps positions inside the 32-bit index fields.
	maxSegmentBytes = math.MaxInt32
	// maxBatchSize bounds one batch (the broker enforces message.max.bytes,
	// far lower); larger length fields are damage.
	maxBatchSize = 1 << 30
	// maxSegmentOffsets keeps relative offsets inside the 32-bit index fields.
	maxSegmentOffsets = math.MaxInt32
)

// Config is the per-partition configuration. Names in comments are Kafka's.
// Zero values mean the default.
type Config struct {
	SegmentBytes       int64         // segment.bytes; default 256 MiB
	SegmentAge         time.Duration // segment.ms; default 7 days
	RetentionAge       time.Duration // retention.ms; default 7 days; < 0 keeps forever
	RetentionBytes     int64         // retention.bytes; default -1 (no limit)
	IndexIntervalBytes int           // index.interval.bytes; default 4096
	Flush              FlushPolicy   // flush.ms 0; default FlushAlways
	FlushInterval      time.Duration // flush.ms; default 200 ms
	// PreallocateBytes is how far ahead of the writer the active segment's
	// file is zero-filled and fsynced (prealloc.go), so that the fdatasync
	// of an append has no file size or extent to journal; default 8 MiB,
	// < 0 off. Only under FlushAlways, and for a partition that writes
	// a sixteenth of it within 10-20 s (it then preallocates what it
	// writes in that time, up to this), while its fsyncs average under
	// 128 KiB (above that the zeros cost more than they save); never past
	// segment.bytes.
	PreallocateBytes int64
	// LeaderEpoch is written into every batch's partitionLeaderEpoch (which
	// the CRC does not cover); stored batches with an epoch outside
	// [0, LeaderEpoch] are reported as damage. Default 0 (one node).
	LeaderEpoch int32
	// Cleanup is cleanup.policy: delete (the zero value), compact or both.
	// Without delete, retention removes nothing by age or size; compaction
	// is Log.Clean's, which the broker's cleaner calls (compact.go).
	Cleanup CleanupPolicy
	// What the broker's cleaner passes to Clean for a compacted log
	// (delete.retention.ms, min.compaction.lag.ms) and decides by
	// (min.cleanable.dirty.ratio); the log itself does not read them.
	// DefaultConfig sets Kafka's defaults; zero is a valid value of each.
	DeleteRetention        time.Duration
	MinCompactionLag       time.Duration
	MinCleanableDirtyRatio float64
	// MaxCompactionLag is max.compaction.lag.ms: a compacted log whose
	// dirty records are older is cleaned whatever its dirty ratio, and its
	// active segment is sealed at that age (the broker makes it SegmentAge
	// when shorter). 0: none (Kafka's Long.MAX).
	MaxCompactionLag time.Duration
}

// DefaultConfig is every partition's configuration unless the broker or the
// topic says otherwise: the one home of the store's defaults.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:           DefaultSegmentBytes,
		SegmentAge:             DefaultSegmentAge,
		RetentionAge:           DefaultRetentionAge,
		RetentionBytes:         -1,
		IndexIntervalBytes:     DefaultIndexIntervalBytes,
		Flush:                  FlushAlways,
		FlushInterval:          DefaultFlushInterval,
		PreallocateBytes:       DefaultPreallocateBytes,
		Cleanup:                CleanupDelete,
		DeleteRetention:        DefaultDeleteRetention,
		MinCleanableDirtyRatio: DefaultMinCleanableDirtyRatio,
	}
}

func (c Config) withDefaults() Config {
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	if c.SegmentAge == 0 {
		c.SegmentAge = DefaultSegmentAge
	}
	if c.RetentionAge == 0 {
		c.RetentionAge = DefaultRetentionAge
	}
	if c.RetentionBytes == 0 {
		c.RetentionBytes = -1
	}
	if c.IndexIntervalBytes == 0 {
		c.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.PreallocateBytes == 0 {
		c.PreallocateBytes = DefaultPreallocateBytes
	}
	return c
}

// Validate reports every setting that is out of range (zero means default).
func (c Config) Validate() error {
	var errs []error
	if c.SegmentBytes < 0 || c.SegmentBytes > maxSegmentBytes {
		errs = append(errs, fmt.Errorf("segment.bytes %d: want 1..%d", c.SegmentBytes, int64(maxSegmentBytes)))
	}
	if c.SegmentAge < 0 {
		errs = append(errs, fmt.Errorf("segment.ms %v: want > 0", c.SegmentAge))
	}
	if c.IndexIntervalBytes < 0 {
		errs = append(errs, fmt.Errorf("index.interval.bytes %d: want > 0", c.IndexIntervalBytes))
	}
	if c.Flush != FlushInterval && c.Flush != FlushAlways {
		errs = append(errs, fmt.Errorf("flush policy %v: want interval or always", c.Flush))
	}
	if c.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("flush.ms %v: want > 0", c.FlushInterval))
	}
	if c.PreallocateBytes > maxSegmentBytes {
		errs = append(errs, fmt.Errorf("preallocate bytes %d: want at most %d (< 0 turns it off)", c.PreallocateBytes, int64(maxSegmentBytes)))
	}
	if c.Cleanup > CleanupDelete|CleanupCompact {
		errs = append(errs, fmt.Errorf("cleanup policy %d: want delete, compact or both", c.Cleanup))
	}
	if c.DeleteRetention < 0 {
		errs = append(errs, fmt.Errorf("delete.retention.ms %v: want >= 0", c.DeleteRetention))
	}
	if c.MaxCompactionLag < 0 {
		errs = append(errs, fmt.Errorf("max.compaction.lag.ms %v: want > 0", c.MaxCompactionLag))
	}
	if c.MinCompactionLag < 0 {
		errs = append(errs, fmt.Errorf("min.compaction.lag.ms %v: want >= 0", c.MinCompactionLag))
	}
	if !(c.MinCleanableDirtyRatio >= 0 && c.MinCleanableDirtyRatio <= 1) {
		errs = append(errs, fmt.Errorf("min.cleanable.dirty.ratio %v: want 0 to 1", c.MinCleanableDirtyRatio))
	}
	if c.LeaderEpoch < 0 {
		errs = append(errs, fmt.Errorf("leader epoch %d: want >= 0", c.LeaderEpoch))
	}
	return errors.Join(errs...)
}

// Options carries the dependencies of a Log.
type Options struct {
	FS      FS               // nil means the operating system's file system
	Logger  *zap.Logger      // nil means no logging
	Now     func() time.Time // nil means time.Now
	Metrics *Metrics         // nil means no metrics; one Metrics is shared by all logs
	// FileCache bounds the descriptors of sealed segments; one is shared
	// by all logs. nil means a cache of the log's own, of the default
	// capacity.
	FileCache *FileCache
	// Scrub paces the log's background CRC checks of all its batches
	// (scrub.go); one is shared by all logs. nil means no scrub: every
	// batch is still checked once by this process before it is served.
	Scrub *Scrubber
	// Journal, shared by all logs of a data directory, makes small
	// batches durable under FlushAlways with one fdatasync of its ring
	// for all of them (journal.go); JournalKey is the log's topic id
	// there. nil means each log fsyncs its own segment.
	Journal    *Journal
	JournalKey JournalKey
}

func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = OSFS{}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FileCache == nil {
		o.FileCache = NewFileCache(0)
	}
	return o
}

// Metrics are the store's Prometheus collectors, shared by every partition
// log. Per-partition gauges (size, segments) are the broker's: it reads
// Size and Segments.
type Metrics struct {
	FsyncSeconds        prometheus.Histogram
	RecoveryTruncations prometheus.Counter
	RecoveryBytesLost   prometheus.Counter
	ScrubBytes          prometheus.Counter // bytes the scrub checked (scrub.go)
	ScrubDamage         prometheus.Counter // damaged batches the scrub found
	WarmedBytes         prometheus.Counter // bytes read ahead of writers into the page cache (warm.go)
	// The journal (journal.go): its ring's fdatasyncs, the batch bytes
	// it made durable, and its checkpoints.
	JournalFsyncSeconds prometheus.Histogram
	JournalBytes        prometheus.Counter
	JournalCheckpoints  prometheus.Counter
}

// Collectors lists every collector of m, for whoever registers them.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.FsyncSeconds, m.RecoveryTruncations, m.RecoveryBytesLost, m.ScrubBytes, m.ScrubDamage, m.WarmedBytes,
		m.JournalFsyncSeconds, m.JournalBytes, m.JournalCheckpoints}
}

// NewMetrics creates the collectors and registers them with reg (nil
// means do not register); a name already on reg is an error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		FsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "ztfbroker", Subsystem: "log", Name: "fsync_seconds",
			Help:    "Latency of fdatasync on segment files.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
		RecoveryTruncations: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ztfbroker", Subsystem: "log", Name: "recovery_truncations_total",
			Help: "Torn segment tails truncated when opening a log.",
		}),
		RecoveryBytesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ztfbroker", Subsystem: "log", Name: "recovery_bytes_lost_total",
			Help: "Bytes of torn segment tails dropped when opening a log.",
		}),
		ScrubBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ztfbroker", Subsystem: "log", Name: "scrub_bytes_total",
			Help: "Bytes of stored batches whose CRCs the background scrub checked.",
		}),
		ScrubDamage: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ztfbroker", Subsystem: "log", Name: "scrub_damage_total",
			Help: "Damaged batches the background scrub found (each once); reads of them answer KAFKA_STORAGE_ERROR.",
		}),
		WarmedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ztfbroker", Subsystem: "log", Name: "warmed_bytes_total",
			Help: "Bytes ahead of busy partitions' writers read into the page cache between bursts, so that their next writes find cached pages.",
		}),
		JournalFsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "ztfbroker", Subsystem: "log", Name: "journal_fsync_seconds",
			Help:    "Latency of fdatasync on the journal's ring, one for every partition's batches written meanwhile.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
		JournalBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ztfbroker", Subsystem: "log", Name: "journal_bytes_total",
			Help: "Batch bytes written to the journal's ring, acknowledged once it is fsynced (log.journal.bytes).",
		}),
		JournalCheckpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ztfbroker", Subsystem: "log", Name: "journal_checkpoints_total",
			Help: "Halves of the journal's ring checkpointed: their partitions' segments fsynced, the half free again.",
		}),
	}
	if err := registerMetrics(reg, m.Collectors()...); err != nil {
		return nil, fmt.Errorf("log: register metrics: %w", err)
	}
	return m, nil
}

// registerMetrics adds cs to reg, all or none; a nil reg exports nothing.
// A name already registered, as by a second instance on one registry, is
// an error, never a panic, and the old collector is not adopted: it would
// report the other instance. This function is repeated word for word in
// every package with metrics (log, broker, protocol, packager, archive).
func registerMetrics(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, added := range cs[:i] {
				reg.Unregister(added)
			}
			return err
		}
	}
	return nil
}

// AppendInfo describes a batch once it has an offset.
type AppendInfo struct {
	BaseOffset   int64
	LastOffset   int64
	MaxTimestamp int64 // milliseconds, from the batch header
	Records      int32
}

// Range is a stretch of whole record batches in one segment file.
// The file may be renamed to Segment+".deleted" and removed by retention
// after Ranges returns; a caller that opens it by path must treat a missing
// file as ErrOffsetOutOfRange.
type Range struct {
	Segment    string // file path, for errors and logs
	Pos        int64  // byte position in the segment file
	Len        int64
	BaseOffset int64 // offset of the first batch in the range
}
