package broker

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ztfbroker/ztfbroker/log"
)

// Config is the broker's configuration. Every field has a Kafka setting name
// (in the comment) under which ApplySettings accepts it.
type Config struct {
	// DataDir holds the metadata store (DataDir/meta) and one folder per
	// partition log (DataDir/<topic>-<partition>). log.dirs; one directory.
	DataDir string
	// ClusterID is reported in Metadata and DescribeCluster. cluster.id;
	// empty means generate one at the first start and keep it in the
	// metadata store.
	ClusterID string
	// NumPartitions is the partition count of auto-created topics and of
	// CreateTopics requests that leave it to the broker. num.partitions.
	NumPartitions int32
	// AutoCreateTopics creates a missing topic on first use, so that ZTF's
	// nightly topics (ztf_YYYYMMDD_programidN) need no set-up.
	// auto.create.topics.enable.
	AutoCreateTopics bool
	// MessageMaxBytes is the largest record batch accepted, header included.
	// message.max.bytes (max.message.bytes per topic).
	MessageMaxBytes int32
	// Topic is every topic's log configuration unless the topic overrides
	// it: retention.ms, retention.bytes, segment.bytes, segment.ms,
	// index.interval.bytes, flush.ms (0: every append is fsynced before it
	// is acknowledged, with group commit; N > 0: every N ms). The broker-wide
	// synonyms (log.retention.ms, log.segment.bytes, log.roll.ms,
	// log.flush.interval.ms, ...) are accepted too.
	Topic log.Config
	// MessageTimestampBeforeMaxMs and MessageTimestampAfterMaxMs bound how
	// far before and after the broker's clock a produced batch's timestamps
	// may lie (KIP-937); a batch outside is refused with INVALID_TIMESTAMP.
	// message.timestamp.before.max.ms and message.timestamp.after.max.ms
	// per topic, log.message.timestamp.* broker-wide.
	MessageTimestampBeforeMaxMs int64
	MessageTimestampAfterMaxMs  int64
	// RetentionCheckInterval is how often retention runs over every
	// partition. log.retention.check.interval.ms.
	RetentionCheckInterval time.Duration
	// MetaCacheBytes is the metadata store's block cache; its memtables
	// take half as much again (pebble holds two). Metadata is small;
	// serve derives this from its memory budget.
	MetaCacheBytes int64
	// LogDirFreeMinBytes is the free space of DataDir's file system below
	// which produce, topic creation and offset commits are refused (reads
	// go on), so that the disk never fills under the metadata store.
	// log.dir.free.min.bytes (ztfbroker's own); 0, the default: 5% of the
	// file system, at most 1 GiB; -1: refuse only once it is full.
	LogDirFreeMinBytes int64
	// RetentionTotalBytes bounds the bytes of every partition log together
	// (log and index files): past it, retention deletes the segments whose
	// newest batch is oldest first, over every topic, an active segment only
	// when that batch is over a day old (retention_total.go). log.retention.total.bytes (ztfbroker's own);
	// 0, the default: nine tenths of the space open to the logs (what they
	// hold plus what is free), less log.dir.free.min.bytes's mark, derived
	// at every check; -1: no bound.
	RetentionTotalBytes int64
	// LogScrubBytesPerSecond is how fast, over every partition together,
	// the logs check the CRCs of their stored batches again in the
	// background, so that damage on disk is found before a read needs it
	// and reads can skip the CRC of batches already checked (log/scrub.go).
	// log.scrub.bytes.per.second (ztfbroker's own); 0, the default:
	// log.DefaultScrubBytesPerSecond (8 MiB/s); -1: no scrub.
	LogScrubBytesPerSecond int64
	// LogJournalBytes is the size of the journal's ring (log/journal.go):
	// under flush.ms 0, batches up to 256 KiB are made durable by one
	// fdatasync of the journal for all partitions, and the segments are
	// fsynced as the ring turns over. log.journal.bytes (ztfbroker's own);
	// 0, the default: log.DefaultJournalBytes (64 MiB), or 1/64 of a smaller
	// file system; -1: no journal,
	// each partition fsyncs its own segment.
	LogJournalBytes int64
	// CleanerMapBytes bounds the log cleaner's key->offset map, the memory
	// one clean of a compacted topic holds (compact.go); a log with more
	// keys is cleaned in passes. serve carves it from memory.budget.bytes;
	// 0: DefaultCleanerMapBytes.
	CleanerMapBytes int64
	// CleanerInterval is how often the cleaner looks for a compacted log
	// to clean. log.cleaner.backoff.ms.
	CleanerInterval time.Duration
}

const (
	// defaultMessageMaxBytes is 10 MiB rather than Kafka's 1 MiB: a ZTF
	// alert with its three cutouts and 30 days of history is 60-500 kB, and
	// producers batch (librdkafka's batch.size is 1 MB, the Java client
	// lingers), so 1 MiB refuses real nights; 10 MiB still bounds what one
	// batch costs in memory on a 4 GB machine.
	defaultMessageMaxBytes = 10 << 20
	// flushAlwaysInterval is kept in log.Config.FlushInterval under
	// FlushAlways, where the store does not use it, so that the value stays
	// valid if a topic later switches policy.
	flushAlwaysInterval = log.DefaultFlushInterval
	// DefaultMetaCacheBytes: 8 MiB, a 128th of serve's default budget.
	DefaultMetaCacheBytes = 8 << 20
	// defaultTimestampBeforeMaxMs is 7 days, the default retention, where
	// Kafka leaves it unbounded: a batch older than retention would be
	// deleted at the next retention check and, its timestamp far from the
	// last one, roll a segment by itself; a producer sending those rolls a
	// segment (and its files) per batch. ZTF's records carry their
	// produce time, so a night's alerts are never that old.
	defaultTimestampBeforeMaxMs = 7 * 24 * 60 * 60 * 1000
	// defaultTimestampAfterMaxMs is Kafka 4.0's: one hour of clock skew.
	defaultTimestampAfterMaxMs = 60 * 60 * 1000
	// DefaultLogDirFreeMinBytes (0) makes the mark 5% of the data
	// directory's file system, at most 1 GiB: room for the metadata
	// store's memtable flushes and compactions whatever the disk's size.
	DefaultLogDirFreeMinBytes = 0
	// maxPartitions bounds one topic: every partition holds open files.
	maxPartitions = 10000
)

// DefaultConfig returns the configuration used for every setting left unset.
func DefaultConfig() Config {
	return Config{
		DataDir:                     "data",
		NumPartitions:               1,
		AutoCreateTopics:            true,
		MessageMaxBytes:             defaultMessageMaxBytes,
		MessageTimestampBeforeMaxMs: defaultTimestampBeforeMaxMs,
		MessageTimestampAfterMaxMs:  defaultTimestampAfterMaxMs,
		// The store's defaults are the broker's: one home for each.
		Topic:                  log.DefaultConfig(),
		RetentionCheckInterval: 5 * time.Minute,
		CleanerInterval:        defaultCleanerInterval,
		MetaCacheBytes:         DefaultMetaCacheBytes,
		LogDirFreeMinBytes:     DefaultLogDirFreeMinBytes,
		RetentionTotalBytes:    DefaultRetentionTotalBytes,
	}
}

// Validate returns every problem of c, each naming its setting.
func (c Config) Validate() error {
	var errs []error
	for _, k := range brokerOnly {
		if err := k.check(&c); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", k.name, k.get(&c), err))
		}
	}
	tc := c.topicDefaults()
	for _, k := range topicKeys {
		if err := k.check(&tc); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", k.name, k.get(&tc), err))
		}
	}
	return errors.Join(errs...)
}

// ApplySettings sets the Kafka-named settings onto c, so that a YAML file's
// keys can be passed straight through. Every unknown key, unparsable value or
// value out of range is named in the joined error; c is changed only when
// there is none.
func (c *Config) ApplySettings(settings map[string]string) error {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	next := *c
	tc := next.topicDefaults()
	var errs []error
	seen := map[string]string{} // canonical name -> key that set it
	for _, key := range keys {
		val := strings.TrimSpace(settings[key])
		canon, apply := brokerSetting(key)
		if apply == nil {
			errs = append(errs, fmt.Errorf("%s: unknown setting", key))
			continue
		}
		if prev, dup := seen[canon]; dup {
			errs = append(errs, fmt.Errorf("%s: set twice, also as %s", key, prev))
			continue
		}
		seen[canon] = key
		if err := apply(&next, &tc, val); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", key, val, err))
		}
	}
	next.Topic, next.MessageMaxBytes = tc.log, tc.maxMessageBytes
	next.MessageTimestampBeforeMaxMs, next.MessageTimestampAfterMaxMs = tc.timestampBeforeMaxMs, tc.timestampAfterMaxMs
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := next.Validate(); err != nil {
		return err
	}
	*c = next
	return nil
}

// brokerSetting resolves a settings key to its canonical name and a setter.
func brokerSetting(key string) (string, func(*Config, *topicConfig, string) error) {
	for _, k := range topicKeys {
		if k.broker == "" && key == k.name {
			return k.name, func(*Config, *topicConfig, string) error {
				return errors.New("a topic config only: set it when the topic is created")
			}
		}
		if key == k.name || (key == k.broker && k.broker != "") {
			return k.name, func(_ *Config, tc *topicConfig, v string) error {
				if err := k.set(tc, v); err != nil {
					return err
				}
				return k.check(tc)
			}
		}
	}
	switch key {
	case "log.retention.minutes", "log.retention.hours":
		unit := time.Minute
		if key == "log.retention.hours" {
			unit = time.Hour
		}
		return "retention.ms", func(_ *Config, tc *topicConfig, v string) error {
			d, err := parseDuration(v, unit, true)
			tc.log.RetentionAge = d
			return err
		}
	}
	for _, s := range brokerOnly {
		if key == s.name {
			return s.name, func(c *Config, _ *topicConfig, v string) error {
				if err := s.set(c, v); err != nil {
					return err
				}
				return s.check(c)
			}
		}
	}
	return "", nil
}

// NumericSettings lists the names ApplySettings takes for a number, sorted,
// so that a caller's test can check each one is range-checked.
func NumericSettings() []string {
	numeric := func(t kmsg.ConfigType) bool { return t == kmsg.ConfigTypeInt || t == kmsg.ConfigTypeLong }
	names := []string{"log.retention.minutes", "log.retention.hours"}
	for _, k := range topicKeys {
		if k.broker != "" && numeric(k.typ) {
			names = append(names, k.broker)
		}
	}
	for _, k := range brokerOnly {
		if numeric(k.typ) {
			names = append(names, k.name)
		}
	}
	sort.Strings(names)
	return names
}

// topicConfig is what a topic may override: its log, its batch size cap, and
// what it says about its alerts (recorded, never acted on).
type topicConfig struct {
	log             log.Config
	maxMessageBytes int32
	alertFormat     string
	alertSchemaID   int32
	// KIP-937's bounds, in ms (Kafka's default for before is Long.MAX).
	timestampBeforeMaxMs, timestampAfterMaxMs int64 // The log cleaner's, for a compacted topic (compact.go).
	deleteRetention, minCompactionLag         time.Duration
	minCleanableRatio                         float64
}

func (c Config) topicDefaults() topicConfig {
	return topicConfig{log: c.Topic, maxMessageBytes: c.MessageMaxBytes,
		timestampBeforeMaxMs: c.MessageTimestampBeforeMaxMs, timestampAfterMaxMs: c.MessageTimestampAfterMaxMs}
}

// topicKey is one topic-level config: its Kafka name, the broker-wide synonym
// that sets its default (empty for a topic-only key, which the broker file
// cannot set), and how it reads, parses and checks.
type topicKey struct {
	name   string
	broker string
	typ    kmsg.ConfigType
	doc    string
	get    func(*topicConfig) string
	set    func(*topicConfig, string) error // parse only
	check  func(*topicConfig) error         // range
	// readOnly: only one value is served (fixed), so DescribeConfigs
	// reports the key read-only.
	readOnly bool
}

func noCheck(*topicConfig) error { return nil }

// defaultName is the name DescribeConfigs gives the key's default.
func (k *topicKey) defaultName() string {
	if k.broker == "" {
		return k.name
	}
	return k.broker
}

// The values of ztf.alert.format, the wire formats of the packager.
const (
	alertFormatOCF       = "ocf"
	alertFormatConfluent = "confluent"
)

// fixed is a config the broker reports but serves only one way.
func fixed(name, broker, value, doc string) topicKey {
	return topicKey{
		name: name, broker: broker, typ: kmsg.ConfigTypeString, doc: doc, readOnly: true,
		get: func(*topicConfig) string { return value },
		set: func(_ *topicConfig, v string) error {
			if v != value {
				return fmt.Errorf("only %q is supported", value)
			}
			return nil
		},
		check: noCheck,
	}
}

// cleanerDuration is a count of ms, 0 or more, the log cleaner's
// (compact.go).
func cleanerDuration(name, broker, doc string, field func(*topicConfig) *time.Duration) topicKey {
	return topicKey{
		name: name, broker: broker, typ: kmsg.ConfigTypeLong, doc: doc,
		get: func(tc *topicConfig) string { return ms(*field(tc)) },
		set: func(tc *topicConfig, v string) error {
			d, err := parseDuration(v, time.Millisecond, false)
			*field(tc) = d
			return err
		},
		check: func(tc *topicConfig) error {
			if *field(tc) < 0 {
				return outOfRange(fmt.Sprintf("0 to %d", maxMs))
			}
			return nil
		},
	}
}

// timestampBound is message.timestamp.before.max.ms or after.max.ms: a
// count of ms, 0 or more (9223372036854775807, Kafka's Long.MAX: no bound).
func timestampBound(name, broker, doc string, field func(*topicConfig) *int64) topicKey {
	return topicKey{
		name: name, broker: broker, typ: kmsg.ConfigTypeLong, doc: doc,
		get: func(tc *topicConfig) string { return strconv.FormatInt(*field(tc), 10) },
		set: func(tc *topicConfig, v string) error {
			n, err := parseInt(v, 64)
			*field(tc) = n
			return err
		},
		check: func(tc *topicConfig) error {
			return atLeast(*field(tc), 0, "0 to 9223372036854775807 (Kafka's Long.MAX: no bound)")
		},
	}
}

func parseInt(v string, bits int) (int64, error) {
	n, err := strconv.ParseInt(v, 10, bits)
	if errors.Is(err, strconv.ErrRange) {
		return 0, outOfRange(fmt.Sprintf("a %d-bit integer", bits))
	}
	if err != nil {
		return 0, errors.New("not an integer")
	}
	return n, nil
}

// parseInt32 is parseInt of an int32 setting whose range starts at lo.
func parseInt32(v string, lo int64) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 32)
	if errors.Is(err, strconv.ErrRange) {
		return 0, outOfRange(rangeInt32(lo))
	}
	if err != nil {
		return 0, errors.New("not an integer")
	}
	return n, nil
}

// maxMs is the most milliseconds a time.Duration holds (292 years); a
// larger .ms setting would wrap around.
const maxMs = math.MaxInt64 / int64(time.Millisecond)

// Allowed ranges, as the errors word them.
var (
	rangeMs    = fmt.Sprintf("1 to %d", maxMs)
	rangeInt32 = func(lo int64) string { return fmt.Sprintf("%d to %d", lo, math.MaxInt32) }
)

// outOfRange says a value is outside what its setting allows; the caller
// names the setting and the value.
func outOfRange(allowed string) error { return fmt.Errorf("out of range: %s", allowed) }

// atLeast checks n >= lo.
func atLeast(n, lo int64, allowed string) error {
	if n < lo {
		return outOfRange(allowed)
	}
	return nil
}

// parseDuration parses a count of unit (a Kafka .ms, .minutes or .hours
// setting), refusing what a time.Duration cannot hold. With forever, -1
// (any negative, which is refused by the check) is Kafka's "unlimited".
func parseDuration(v string, unit time.Duration, forever bool) (time.Duration, error) {
	n, err := parseInt(v, 64)
	if err != nil {
		return 0, err
	}
	most := math.MaxInt64 / int64(unit)
	allowed := fmt.Sprintf("1 to %d", most)
	if forever {
		allowed = fmt.Sprintf("-1 (forever) or 0 to %d", most)
	}
	switch {
	case n > most:
		return 0, outOfRange(allowed)
	case n < 0 && forever && n != -1:
		return 0, outOfRange(allowed)
	case n == -1 && forever:
		return -1, nil
	}
	return time.Duration(n) * unit, nil
}

func ms(d time.Duration) string {
	if d < 0 {
		return "-1"
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// topicKeys are sorted by name, the order DescribeConfigs lists them in.
var topicKeys = []topicKey{
	{
		name: "cleanup.policy", broker: "log.cleanup.policy", typ: kmsg.ConfigTypeList,
		doc: "delete: segments past retention.ms or retention.bytes are deleted; compact: the log cleaner keeps the last " +
			"record of every key (log/compact.go) and retention deletes nothing; compact,delete: both.",
		get: func(tc *topicConfig) string { return tc.log.Cleanup.String() },
		set: func(tc *topicConfig, v string) error {
			p, err := log.ParseCleanupPolicy(v)
			tc.log.Cleanup = p
			return err
		},
		check: noCheck,
	},
	fixed("compression.type", "compression.type", "producer",
		"Batches are stored and served as the producer compressed them."),
	cleanerDuration("delete.retention.ms", "log.cleaner.delete.retention.ms",
		"How long a tombstone (a null value) stays on a compacted topic after the clean that first kept it (KIP-534's delete horizon).",
		func(tc *topicConfig) *time.Duration { return &tc.log.DeleteRetention }),
	{
		name: "flush.ms", broker: "log.flush.interval.ms", typ: kmsg.ConfigTypeLong,
		doc: "0: every append is fsynced before it is acknowledged (group commit); N > 0: fsync every N ms.",
		get: func(tc *topicConfig) string {
			if tc.log.Flush == log.FlushAlways {
				return "0"
			}
			return ms(tc.log.FlushInterval)
		},
		set: func(tc *topicConfig, v string) error {
			d, err := parseDuration(v, time.Millisecond, false)
			if err != nil {
				return err
			}
			if d == 0 {
				tc.log.Flush, tc.log.FlushInterval = log.FlushAlways, flushAlwaysInterval
				return nil
			}
			tc.log.Flush, tc.log.FlushInterval = log.FlushInterval, d
			return nil
		},
		check: func(tc *topicConfig) error {
			if tc.log.Flush != log.FlushAlways && tc.log.FlushInterval < time.Millisecond {
				return outOfRange(fmt.Sprintf("0 (fsync every append) or 1 to %d", maxMs))
			}
			return nil
		},
	},
	{
		name: "index.interval.bytes", broker: "log.index.interval.bytes", typ: kmsg.ConfigTypeInt,
		doc: "Bytes of log between two entries of the sparse offset and time index.",
		get: func(tc *topicConfig) string { return strconv.Itoa(tc.log.IndexIntervalBytes) },
		set: func(tc *topicConfig, v string) error {
			n, err := parseInt32(v, 1)
			tc.log.IndexIntervalBytes = int(n)
			return err
		},
		check: func(tc *topicConfig) error { return atLeast(int64(tc.log.IndexIntervalBytes), 1, rangeInt32(1)) },
	},
	{
		name: "max.message.bytes", broker: "message.max.bytes", typ: kmsg.ConfigTypeInt,
		doc: "Largest record batch accepted, header included (MESSAGE_TOO_LARGE above).",
		get: func(tc *topicConfig) string { return strconv.Itoa(int(tc.maxMessageBytes)) },
		set: func(tc *topicConfig, v string) error {
			n, err := parseInt32(v, batchHeaderLen)
			tc.maxMessageBytes = int32(n)
			return err
		},
		check: func(tc *topicConfig) error {
			return atLeast(int64(tc.maxMessageBytes), batchHeaderLen, rangeInt32(batchHeaderLen)+" (at least an empty record batch)")
		},
	},
	timestampBound("message.timestamp.after.max.ms", "log.message.timestamp.after.max.ms",
		"Most a batch's timestamps may lie after the broker's clock (INVALID_TIMESTAMP beyond; KIP-937).",
		func(tc *topicConfig) *int64 { return &tc.timestampAfterMaxMs }),
	timestampBound("message.timestamp.before.max.ms", "log.message.timestamp.before.max.ms",
		"Most a batch's timestamps may lie before the broker's clock (INVALID_TIMESTAMP beyond; KIP-937). "+
			"7 days, the default retention, where Kafka leaves it unbounded: older batches would be deleted at once, "+
			"each after rolling a segment of its own.",
		func(tc *topicConfig) *int64 { return &tc.timestampBeforeMaxMs }),
	fixed("message.timestamp.type", "log.message.timestamp.type", "CreateTime",
		"Record timestamps are the producer's; LogAppendTime is not supported."),
	{
		name: "min.cleanable.dirty.ratio", broker: "log.cleaner.min.cleanable.ratio", typ: kmsg.ConfigTypeDouble,
		doc: "Share of a compacted log's cleanable bytes not yet cleaned at or above which the cleaner cleans it (0 to 1).",
		get: func(tc *topicConfig) string { return strconv.FormatFloat(tc.log.MinCleanableDirtyRatio, 'g', -1, 64) },
		set: func(tc *topicConfig, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return errors.New("not a number")
			}
			tc.log.MinCleanableDirtyRatio = f
			return nil
		},
		check: func(tc *topicConfig) error {
			if !(tc.log.MinCleanableDirtyRatio >= 0 && tc.log.MinCleanableDirtyRatio <= 1) {
				return outOfRange("0 to 1")
			}
			return nil
		},
	},
	{
		name: "max.compaction.lag.ms", broker: "log.cleaner.max.compaction.lag.ms", typ: kmsg.ConfigTypeLong,
		doc: "Most time a record stays uncompacted: a compacted log whose dirty records are older is cleaned whatever " +
			"its dirty ratio, and its active segment is sealed at this age. 9223372036854775807: no bound.",
		get: func(tc *topicConfig) string {
			if tc.log.MaxCompactionLag == 0 {
				return strconv.FormatInt(math.MaxInt64, 10)
			}
			return ms(tc.log.MaxCompactionLag)
		},
		set: func(tc *topicConfig, v string) error {
			if v == strconv.FormatInt(math.MaxInt64, 10) {
				tc.log.MaxCompactionLag = 0
				return nil
			}
			d, err := parseDuration(v, time.Millisecond, false)
			if err == nil && d < time.Millisecond {
				err = outOfRange(fmt.Sprintf("1 to %d, or %d (no bound)", maxMs, int64(math.MaxInt64)))
			}
			tc.log.MaxCompactionLag = d
			return err
		},
		check: func(tc *topicConfig) error {
			if tc.log.MaxCompactionLag < 0 {
				return outOfRange(fmt.Sprintf("1 to %d, or %d (no bound)", maxMs, int64(math.MaxInt64)))
			}
			return nil
		},
	},
	cleanerDuration("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms",
		"Least time a record stays uncompacted: a segment holding a batch newer than this is not cleaned yet.",
		func(tc *topicConfig) *time.Duration { return &tc.log.MinCompactionLag }),
	{
		name: "preallocate", broker: "log.preallocate", typ: kmsg.ConfigTypeBoolean,
		doc: "true: under flush.ms 0, a busy partition's active segment is written ahead in fsynced zeros, so an " +
			"acknowledged append's fsync overwrites blocks instead of journaling a new file size (log/doc.go); the " +
			"zeros are cut at roll and close. Kafka's preallocate sizes whole segments, for Windows.",
		get: func(tc *topicConfig) string { return strconv.FormatBool(tc.log.PreallocateBytes >= 0) },
		set: func(tc *topicConfig, v string) error {
			on, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("want true or false")
			}
			tc.log.PreallocateBytes = -1
			if on {
				tc.log.PreallocateBytes = log.DefaultPreallocateBytes
			}
			return nil
		},
		check: noCheck,
	},
	{
		name: "retention.bytes", broker: "log.retention.bytes", typ: kmsg.ConfigTypeLong,
		doc: "Size a partition may reach before its oldest segments are deleted; -1: no limit.",
		get: func(tc *topicConfig) string { return strconv.FormatInt(tc.log.RetentionBytes, 10) },
		set: func(tc *topicConfig, v string) error {
			n, err := parseInt(v, 64)
			tc.log.RetentionBytes = n
			return err
		},
		check: func(tc *topicConfig) error {
			return atLeast(tc.log.RetentionBytes, -1, "-1 (no limit) or 0 and above")
		},
	},
	{
		name: "retention.ms", broker: "log.retention.ms", typ: kmsg.ConfigTypeLong,
		doc: "Age after which a sealed segment is deleted; -1: keep forever.",
		get: func(tc *topicConfig) string { return ms(tc.log.RetentionAge) },
		set: func(tc *topicConfig, v string) error {
			d, err := parseDuration(v, time.Millisecond, true)
			tc.log.RetentionAge = d
			return err
		},
		// -1 ns is the only negative set; a Config built in code may hold
		// another, which log reads as forever too.
		check: noCheck,
	},
	{
		name: "segment.bytes", broker: "log.segment.bytes", typ: kmsg.ConfigTypeInt,
		doc: "Size at which the active segment is sealed and a new one started.",
		get: func(tc *topicConfig) string { return strconv.FormatInt(tc.log.SegmentBytes, 10) },
		set: func(tc *topicConfig, v string) error {
			n, err := parseInt32(v, 1<<20)
			tc.log.SegmentBytes = n
			return err
		},
		check: func(tc *topicConfig) error {
			// Kafka 4 raised the minimum to 1 MiB: smaller segments
			// mean a file (and an index) per few batches.
			if tc.log.SegmentBytes < 1<<20 || tc.log.SegmentBytes > math.MaxInt32 {
				return outOfRange(rangeInt32(1 << 20))
			}
			return nil
		},
	},
	{
		name: "segment.ms", broker: "log.roll.ms", typ: kmsg.ConfigTypeLong,
		doc: "Age at which the active segment is sealed even when not full.",
		get: func(tc *topicConfig) string { return ms(tc.log.SegmentAge) },
		set: func(tc *topicConfig, v string) error {
			d, err := parseDuration(v, time.Millisecond, false)
			tc.log.SegmentAge = d
			return err
		},
		check: func(tc *topicConfig) error {
			if tc.log.SegmentAge < time.Millisecond {
				return outOfRange(rangeMs)
			}
			return nil
		},
	},
	// The ztf.* keys are ztfbroker's own: a topic records how its alerts
	// are framed so that consumers and tools need not sniff the bytes. The
	// broker stores and reports them and never reads them.
	{
		name: "ztf.alert.format", typ: kmsg.ConfigTypeString,
		doc: "ztfbroker's own key, not Kafka's: the wire format of the topic's alerts. " +
			"ocf: each message is a single-alert Avro Object Container File carrying its schema, as ZTF sends them; " +
			"confluent: magic byte 0, a 4-byte big-endian schema id (ztf.alert.schema.id), then the Avro body, " +
			"the schema served at /schemas/ids/<id>; empty: not stated. Recorded for consumers, not acted on.",
		get: func(tc *topicConfig) string { return tc.alertFormat },
		set: func(tc *topicConfig, v string) error { tc.alertFormat = v; return nil },
		check: func(tc *topicConfig) error {
			switch tc.alertFormat {
			case "", alertFormatOCF, alertFormatConfluent:
				return nil
			}
			return fmt.Errorf("must be %q, %q or empty", alertFormatOCF, alertFormatConfluent)
		},
	},
	{
		name: "ztf.alert.schema.id", typ: kmsg.ConfigTypeInt,
		doc: "ztfbroker's own key, not Kafka's: the schema id in the confluent framing of the topic's alerts " +
			"(see ztf.alert.format), served at /schemas/ids/<id>; 0: not stated. Recorded for consumers, not acted on.",
		get: func(tc *topicConfig) string { return strconv.Itoa(int(tc.alertSchemaID)) },
		set: func(tc *topicConfig, v string) error {
			n, err := parseInt32(v, 0)
			tc.alertSchemaID = int32(n)
			return err
		},
		check: func(tc *topicConfig) error { return atLeast(int64(tc.alertSchemaID), 0, rangeInt32(0)) },
	},
}

func findTopicKey(name string) *topicKey {
	for i := range topicKeys {
		if topicKeys[i].name == name {
			return &topicKeys[i]
		}
	}
	return nil
}

// resolveTopic applies a topic's overrides onto the broker's defaults.
func (c Config) resolveTopic(overrides map[string]string) (topicConfig, error) {
	tc := c.topicDefaults()
	var errs []error
	for _, name := range sortedKeys(overrides) {
		v := overrides[name]
		k := findTopicKey(name)
		if k == nil {
			errs = append(errs, fmt.Errorf("%s: unknown topic config", name))
			continue
		}
		if err := k.set(&tc, v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, v, err))
			continue
		}
		if err := k.check(&tc); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, v, err))
		}
	}
	return tc, errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// brokerKey is a broker-only setting.
type brokerKey struct {
	name  string
	typ   kmsg.ConfigType
	doc   string
	get   func(*Config) string
	set   func(*Config, string) error
	check func(*Config) error
}

var brokerOnly = []brokerKey{
	{
		name: "auto.create.topics.enable", typ: kmsg.ConfigTypeBoolean,
		doc: "Create a missing topic with num.partitions on first use.",
		get: func(c *Config) string { return strconv.FormatBool(c.AutoCreateTopics) },
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("not true or false")
			}
			c.AutoCreateTopics = b
			return nil
		},
		check: func(*Config) error { return nil },
	},
	{
		name: "cluster.id", typ: kmsg.ConfigTypeString,
		doc: "Cluster id reported to clients; empty: generated once and kept.",
		get: func(c *Config) string { return c.ClusterID },
		set: func(c *Config, v string) error { c.ClusterID = v; return nil },
		check: func(c *Config) error {
			if strings.ContainsAny(c.ClusterID, " \t\r\n") {
				return errors.New("contains white space")
			}
			return nil
		},
	},
	{
		name: "log.dir.free.min.bytes", typ: kmsg.ConfigTypeLong,
		doc: "ztfbroker's own: free space of the data directory's file system below which produce, topic creation " +
			"and offset commits are refused (reads go on); 0: 5% of the file system, at most 1 GiB; -1: only when full.",
		get: func(c *Config) string { return strconv.FormatInt(c.LogDirFreeMinBytes, 10) },
		set: func(c *Config, v string) error {
			n, err := parseInt(v, 64)
			c.LogDirFreeMinBytes = n
			return err
		},
		check: func(c *Config) error {
			return atLeast(c.LogDirFreeMinBytes, -1, "-1 (only when full), 0 (5% of the file system, at most 1 GiB) or more")
		},
	},
	{
		name: "log.dirs", typ: kmsg.ConfigTypeString,
		doc: "Directory of the metadata store and the partition logs (one only).",
		get: func(c *Config) string { return c.DataDir },
		set: func(c *Config, v string) error {
			if strings.Contains(v, ",") {
				return errors.New("one directory only")
			}
			c.DataDir = v
			return nil
		},
		check: func(c *Config) error {
			if strings.TrimSpace(c.DataDir) == "" {
				return errors.New("empty")
			}
			return nil
		},
	},
	{
		name: "log.cleaner.backoff.ms", typ: kmsg.ConfigTypeLong,
		doc: "How often the log cleaner looks for a compacted partition to clean.",
		get: func(c *Config) string { return ms(c.CleanerInterval) },
		set: func(c *Config, v string) error {
			d, err := parseDuration(v, time.Millisecond, false)
			c.CleanerInterval = d
			return err
		},
		check: func(c *Config) error {
			if c.CleanerInterval < time.Millisecond {
				return outOfRange(rangeMs)
			}
			return nil
		},
	},
	{
		name: "log.retention.check.interval.ms", typ: kmsg.ConfigTypeLong,
		doc: "How often retention runs over every partition.",
		get: func(c *Config) string { return ms(c.RetentionCheckInterval) },
		set: func(c *Config, v string) error {
			d, err := parseDuration(v, time.Millisecond, false)
			c.RetentionCheckInterval = d
			return err
		},
		check: func(c *Config) error {
			if c.RetentionCheckInterval < time.Millisecond {
				return outOfRange(rangeMs)
			}
			return nil
		},
	},
	{
		name: "log.retention.total.bytes", typ: kmsg.ConfigTypeLong,
		doc: "ztfbroker's own: bytes all partition logs together may take; past it the segments whose newest " +
			"batch is oldest, over every topic, are deleted first (an active one only when that batch is over a day old); " +
			"0: nine tenths of the space open to the logs (what they hold plus what is free), less log.dir.free.min.bytes's mark; " +
			"-1: no bound.",
		get: func(c *Config) string { return strconv.FormatInt(c.RetentionTotalBytes, 10) },
		set: func(c *Config, v string) error {
			n, err := parseInt(v, 64)
			c.RetentionTotalBytes = n
			return err
		},
		check: func(c *Config) error {
			return atLeast(c.RetentionTotalBytes, -1, "-1 (no bound), 0 (derived from the disk) or more")
		},
	},
	{
		name: "log.scrub.bytes.per.second", typ: kmsg.ConfigTypeLong,
		doc: "ztfbroker's own: bytes per second, over all partitions, of the background check of every stored " +
			"batch's CRC, which finds damage on disk and lets reads skip the CRC of batches already checked; " +
			"0: 8 MiB/s; -1: no scrub (every batch is still checked before it is first served).",
		get: func(c *Config) string { return strconv.FormatInt(c.LogScrubBytesPerSecond, 10) },
		set: func(c *Config, v string) error {
			n, err := parseInt(v, 64)
			c.LogScrubBytesPerSecond = n
			return err
		},
		check: func(c *Config) error {
			return atLeast(c.LogScrubBytesPerSecond, -1, "-1 (no scrub), 0 (8 MiB/s) or more")
		},
	},
	{
		name: "log.journal.bytes", typ: kmsg.ConfigTypeLong,
		doc: "ztfbroker's own: size of the journal's ring, which makes batches up to 256 KiB durable under " +
			"flush.ms 0 with one fdatasync for every partition written at once (the segments are fsynced as " +
			"the ring turns over); 0: 64 MiB (1/64 of a smaller file system); -1: no journal (each partition fsyncs its own segment).",
		get: func(c *Config) string { return strconv.FormatInt(c.LogJournalBytes, 10) },
		set: func(c *Config, v string) error {
			n, err := parseInt(v, 64)
			c.LogJournalBytes = n
			return err
		},
		check: func(c *Config) error {
			allowed := fmt.Sprintf("-1 (no journal), 0 (64 MiB) or at least %d", log.MinJournalBytes)
			if c.LogJournalBytes > 0 && c.LogJournalBytes < log.MinJournalBytes {
				return outOfRange(allowed)
			}
			return atLeast(c.LogJournalBytes, -1, allowed)
		},
	},
	{
		name: "num.partitions", typ: kmsg.ConfigTypeInt,
		doc: "Partition count of auto-created topics and of CreateTopics without one.",
		get: func(c *Config) string { return strconv.Itoa(int(c.NumPartitions)) },
		set: func(c *Config, v string) error {
			n, err := parseInt(v, 64)
			if err == nil && (n < 1 || n > maxPartitions) {
				err = outOfRange(fmt.Sprintf("1 to %d", maxPartitions))
			}
			c.NumPartitions = int32(n)
			return err
		},
		check: func(c *Config) error {
			if c.NumPartitions < 1 || c.NumPartitions > maxPartitions {
				return outOfRange(fmt.Sprintf("1 to %d", maxPartitions))
			}
			return nil
		},
	},
}
