package log

// This file fixes the public surface of package log so that the broker can be
// written against it while the store is being built. The bodies are
// placeholders that the log implementation replaces; the signatures are the
// contract (change them only together with the callers in broker/).

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// FlushPolicy says when appended batches reach stable storage.
type FlushPolicy int

const (
	// FlushInterval fsyncs every Config.FlushInterval, on roll and on close.
	FlushInterval FlushPolicy = iota
	// FlushAlways makes Append return only after fdatasync; concurrent
	// appends share one fsync (group commit).
	FlushAlways
)

// Config is the per-partition configuration. Names in comments are Kafka's.
type Config struct {
	SegmentBytes       int64         // segment.bytes; default 256 MiB
	SegmentAge         time.Duration // segment.ms; default 7 days
	RetentionAge       time.Duration // retention.ms; default 7 days; < 0 keeps forever
	RetentionBytes     int64         // retention.bytes; default -1 (no limit)
	IndexIntervalBytes int           // index.interval.bytes; default 4096
	Flush              FlushPolicy   // default FlushInterval
	FlushInterval      time.Duration // flush.ms; default 200 ms
}

// Options carries the dependencies of a Log.
type Options struct {
	FS      FS               // nil means the operating system's file system
	Logger  *zap.Logger      // nil means no logging
	Now     func() time.Time // nil means time.Now
	Metrics *Metrics         // nil means no metrics; one Metrics is shared by all logs
}

// Metrics are the store's Prometheus collectors, shared by every partition log.
type Metrics struct {
	FsyncSeconds        prometheus.Histogram
	RecoveryTruncations prometheus.Counter
	RecoveryBytesLost   prometheus.Counter
}

// AppendInfo describes a batch once it has an offset.
type AppendInfo struct {
	BaseOffset   int64
	LastOffset   int64
	MaxTimestamp int64 // milliseconds, from the batch header
	Records      int32
}

// Range is a stretch of whole record batches in one segment file.
type Range struct {
	Segment    string // file path, for errors and logs
	Pos        int64  // byte position in the segment file
	Len        int64
	BaseOffset int64 // offset of the first batch in the range
}

// FS is the file-system seam; see fs.go.
type FS interface{}

var errUnimplemented = errors.New("log: not built yet")

// Log is one topic-partition's log.
type Log struct{}

func NewMetrics(reg prometheus.Registerer) *Metrics { return &Metrics{} }

// Open opens or creates the log in dir (a `<topic>-<partition>` folder),
// recovering the tail of the active segment.
func Open(dir string, cfg Config, opts Options) (*Log, error) { return nil, errUnimplemented }

// Append validates one v2 record batch (CRC, magic), assigns its offsets by
// patching baseOffset in place, writes it verbatim and, under FlushAlways,
// waits until it is durable. Equivalent to Write then WaitDurable.
func (l *Log) Append(batch []byte) (AppendInfo, error) { return AppendInfo{}, errUnimplemented }

// Write is Append without waiting for durability, so that a caller can hold
// its own lock (idempotent producer sequences) only around the write.
func (l *Log) Write(batch []byte) (AppendInfo, error) { return AppendInfo{}, errUnimplemented }

// WaitDurable blocks until every offset below end is durable per the flush
// policy (immediately under FlushInterval).
func (l *Log) WaitDurable(end int64) error { return errUnimplemented }

// Ranges returns the batches starting with the whole batch that contains
// offset, below the high watermark, up to maxBytes (at least one batch).
func (l *Log) Ranges(offset int64, maxBytes int) ([]Range, error) { return nil, errUnimplemented }

// Read is Ranges followed by reading the bytes into dst (appended), checking
// every batch's CRC; damage is a *CorruptionError and is never returned as data.
func (l *Log) Read(offset int64, maxBytes int, dst []byte) ([]byte, error) {
	return dst, errUnimplemented
}

// Changed returns a channel closed the next time the high watermark moves
// (or the log closes), for long-polling fetches.
func (l *Log) Changed() <-chan struct{} { return nil }

func (l *Log) LogStartOffset() int64 { return 0 }

// HighWatermark is the next offset visible to consumers: durable data under
// FlushAlways, written data under FlushInterval.
func (l *Log) HighWatermark() int64 { return 0 }

// OffsetForTime returns the base offset and max timestamp of the first batch
// whose max timestamp is >= ts; ok is false when there is none.
func (l *Log) OffsetForTime(ts int64) (offset, maxTimestamp int64, ok bool, err error) {
	return 0, 0, false, errUnimplemented
}

// MaxTimestamp returns the largest timestamp in the log and the last offset
// of the batch carrying it (-1, -1 when empty).
func (l *Log) MaxTimestamp() (ts, offset int64) { return -1, -1 }

// DeleteRecords advances the log start offset to before (clamped to the high
// watermark) and deletes segments wholly below it.
func (l *Log) DeleteRecords(before int64) (logStart int64, err error) { return 0, errUnimplemented }

// EnforceRetention deletes sealed segments past retention by age or size and
// rolls the active segment by age; it returns the number deleted.
func (l *Log) EnforceRetention() (deleted int, err error) { return 0, errUnimplemented }

func (l *Log) Sync() error { return errUnimplemented }

// Err returns the sticky error that made the log read-only, or nil.
func (l *Log) Err() error { return nil }

func (l *Log) Size() int64   { return 0 }
func (l *Log) Segments() int { return 0 }
func (l *Log) Close() error  { return nil }

// Remove closes the log and deletes its folder (topic deletion).
func (l *Log) Remove() error { return errUnimplemented }

// Verify checks every batch of every segment in dir.
func Verify(dir string) error { return errUnimplemented }
