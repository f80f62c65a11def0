package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/log"
)

// ErrClosed is returned by every method once Close has begun.
var ErrClosed = errors.New("broker: closed")

// Broker owns the topics of one node: their metadata in pebble and one
// partition log each. It implements protocol.Backend.
type Broker struct {
	cfg       Config
	clusterID string
	logger    *zap.Logger
	now       func() time.Time
	reg       prometheus.Registerer
	logMetric *log.Metrics
	// files bounds the descriptors of every partition's sealed segments.
	files *log.FileCache
	// journal makes small batches durable for all partitions at once; nil
	// under log.journal.bytes -1.
	journal *log.Journal
	// scrub paces every partition's background CRC check; nil: none.
	scrub     *log.Scrubber
	collector *collector
	offline   prometheus.GaugeFunc
	db        *pebble.DB
	// disk is the data directory's free space, shared with the group
	// coordinator: writes stop under log.dir.free.min.bytes.
	disk *diskSpace
	// retention counts what retention deleted and holds the total bound
	// (retention_total.go).
	retention *retentionState
	// cleaner is the log cleaner's state and metrics (compact.go).
	cleaner *cleanerMetrics
	// unlock releases the data directory's lock (recover.go).
	unlock func() error

	// adminMu serializes topic creation, deletion and growth, which do
	// slow I/O (synced metadata, opening logs) outside mu.
	adminMu sync.Mutex
	// mu guards topics and closed. Held briefly: lookups take it for
	// reading, admin operations swap entries under it.
	mu     sync.RWMutex
	topics map[string]*topic
	closed bool

	orphans []string
	// corruptSeen holds "<segment>@<position>" of damage already logged.
	corruptSeen sync.Map
	// producers is the idempotent producer check of issue 4, if installed.
	producers atomic.Pointer[ProducerCheck]
	// tap is told of appended records (tap.go), if installed.
	tap atomic.Pointer[Tap]

	quit      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// topic is immutable once published in Broker.topics: growth and config
// changes publish a new *topic sharing the existing partitions.
type topic struct {
	name       string
	id         [16]byte
	created    time.Time
	overrides  map[string]string
	cfg        topicConfig
	partitions []*partition
}

// partition is one topic-partition and its log.
type partition struct {
	topic string
	index int32
	log   *log.Log
	// offline is why the log failed to open at Open (damage, EIO); an
	// offline partition has no log and answers KAFKA_STORAGE_ERROR
	// (recover.go). Set before the partition is published, never after.
	offline error
	// mu orders writes to the log (issue 4 checks producer sequences
	// under it, between splitting and log.Write); reads take no lock.
	mu sync.Mutex
	// removed is set under mu when the topic is deleted, so that a
	// producer racing the deletion gets UNKNOWN_TOPIC_OR_PARTITION.
	removed bool
	// end is the log end offset (written, maybe not yet durable), under mu.
	end int64
}

// Open opens the broker in cfg.DataDir: the metadata store, then every
// topic's partition logs (recovering each), and starts retention. logger nil
// means no logging, reg nil means no metrics, now nil means time.Now.
func Open(cfg Config, logger *zap.Logger, reg prometheus.Registerer, now func() time.Time) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	// One broker per data dir: a second would write the same logs.
	unlock, err := LockDataDir(cfg.DataDir, true)
	if err != nil {
		return nil, err
	}
	metaDir := filepath.Join(cfg.DataDir, "meta")
	db, err := openMetaChecked(metaDir, cfg.MetaCacheBytes, logger)
	if err != nil {
		// Never a new, empty store beside the logs: refuse, naming the
		// folders the damage would hide.
		unowned, _ := unownedRecords(cfg.DataDir, nil)
		return nil, errors.Join(&MetadataError{Dir: metaDir, Err: err, Unowned: unowned}, unlock())
	}
	b := &Broker{
		cfg:       cfg,
		logger:    logger,
		now:       now,
		reg:       reg,
		db:        db,
		disk:      newDiskSpace(cfg.DataDir, cfg.LogDirFreeMinBytes, logger),
		retention: newRetentionState(),
		cleaner:   newCleanerMetrics(),
		unlock:    unlock,
		topics:    map[string]*topic{},
		quit:      make(chan struct{}),
		files:     log.NewFileCache(0),
	}
	if cfg.LogScrubBytesPerSecond >= 0 {
		b.scrub = log.NewScrubber(cfg.LogScrubBytesPerSecond, 0)
	}
	fail := func(err error) (*Broker, error) {
		b.closeLogs()
		if b.journal != nil {
			b.journal.Close()
		}
		return nil, errors.Join(err, db.Close(), unlock())
	}
	if reg != nil {
		// Registered below with the broker's collector, once Open can no
		// longer fail, so a failed Open leaves reg as it found it.
		b.logMetric, _ = log.NewMetrics(nil)
	}
	if cfg.LogJournalBytes >= 0 {
		size := cfg.LogJournalBytes
		if size == 0 {
			size = defaultJournalBytes(cfg.DataDir)
		}
		// Opened before the logs, which replay their records from it.
		if b.journal, err = log.OpenJournal(filepath.Join(cfg.DataDir, journalDir), size, log.Options{Logger: logger, Metrics: b.logMetric}); err != nil {
			err = fmt.Errorf("broker: %w (with the folder %s moved away the broker starts without the "+
				"records acknowledged since the journal's last checkpoint that their segments lack)", err, filepath.Join(cfg.DataDir, journalDir))
			return fail(err)
		}
	}
	if err := b.load(); err != nil {
		return fail(err)
	}
	if b.journal != nil {
		// Every log replayed its records: the journal starts over.
		if err := b.journal.Start(); err != nil {
			return fail(err)
		}
	}
	if err := b.ensureConsumerOffsetsTopic(); err != nil {
		return fail(err)
	}
	b.reportOrphans()
	if reg != nil {
		b.collector = &collector{b: b}
		b.offline = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ztfbroker_partitions_offline",
			Help: "Partitions whose log failed to open at start; they answer KAFKA_STORAGE_ERROR.",
		}, b.offlineCount)
		m := b.logMetric
		cs := append(append([]prometheus.Collector{b.collector, b.offline}, m.Collectors()...),
			append(b.retention.collectors(), b.cleaner.collectors()...)...)
		if err := registerMetrics(reg, cs...); err != nil {
			return fail(fmt.Errorf("broker: register metrics: %w", err))
		}
	}
	b.goroutine(b.retentionLoop)
	b.goroutine(b.cleanerLoop)
	parts := 0
	for _, t := range b.topics {
		parts += len(t.partitions)
	}
	logger.Info("broker opened", zap.String("dir", cfg.DataDir), zap.String("cluster_id", b.clusterID),
		zap.Int("topics", len(b.topics)), zap.Int("partitions", parts), zap.Int("offline", int(b.offlineCount())))
	return b, nil
}

func (b *Broker) load() error {
	if err := b.finishDeletions(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	// Checked before anything is written: a store that lost its topics
	// must not get a new cluster id or __consumer_offsets either.
	records, err := checkMeta(b.cfg.DataDir, b.db)
	if err != nil {
		return err
	}
	id, err := clusterID(b.db, b.cfg.ClusterID, b.logger)
	if err != nil {
		return fmt.Errorf("broker: cluster id: %w", err)
	}
	b.clusterID = id
	var errs []error
	for _, name := range sortedKeys(records) {
		t, err := b.openTopic(name, records[name], 0, false)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b.topics[name] = t
	}
	return errors.Join(errs...)
}

// openTopic builds a topic from its record, opening partitions from first
// (earlier ones are the caller's) up to r.Partitions. fresh means the
// partitions are being created: a folder already there belongs to no topic;
// it is adopted if it holds records (its offsets go on) and moved aside if
// not. Otherwise (Open) a partition whose log fails to open goes offline
// alone instead of failing the topic.
func (b *Broker) openTopic(name string, r topicRecord, first int32, fresh bool) (*topic, error) {
	id, err := r.id()
	if err != nil {
		return nil, fmt.Errorf("topic %q: %w", name, err)
	}
	cfg, err := b.cfg.resolveTopic(r.Configs)
	if err != nil {
		return nil, fmt.Errorf("topic %q: %w", name, err)
	}
	t := &topic{name: name, id: id, created: r.Created, overrides: r.Configs, cfg: cfg}
	for i := first; i < r.Partitions; i++ {
		dir := b.partitionDir(name, i)
		if fresh && holdsRecords(dir) {
			b.logger.Warn("adopting a partition folder that holds records but no topic owned",
				zap.String("dir", dir), zap.String("topic", name))
		} else if fresh {
			if err := b.moveAside(dir); err != nil {
				closePartitions(t.partitions)
				return nil, err
			}
		}
		p, err := b.openPartition(t, i)
		if err != nil && !fresh {
			fields := []zap.Field{zap.String("dir", dir), zap.String("topic", name), zap.Int32("partition", i), zap.Error(err)}
			b.logger.Error("partition offline: its log did not open; the other partitions are served",
				append(fields, corruptionFields(err)...)...)
			p, err = &partition{topic: name, index: i, offline: err}, nil
		}
		if err != nil {
			closePartitions(t.partitions)
			return nil, err
		}
		t.partitions = append(t.partitions, p)
	}
	return t, nil
}

func (b *Broker) openPartition(t *topic, i int32) (*partition, error) {
	l, err := log.Open(b.partitionDir(t.name, i), logConfig(t.cfg.log), log.Options{
		Logger:     b.logger.With(zap.String("topic", t.name), zap.Int32("partition", i)),
		Now:        b.now,
		Metrics:    b.logMetric,
		FileCache:  b.files,
		Scrub:      b.scrub,
		Journal:    b.journal,
		JournalKey: log.JournalKey(t.id),
	})
	if err != nil {
		return nil, fmt.Errorf("open %s-%d: %w", t.name, i, err)
	}
	// After recovery everything in the log is durable: its end is the
	// high watermark.
	return &partition{topic: t.name, index: i, log: l, end: l.HighWatermark()}, nil
}

// journalDir is the journal's folder in the data directory.
const journalDir = "journal"

// defaultJournalBytes is log.journal.bytes 0: log.DefaultJournalBytes, or
// 1/64 of a smaller file system, at least log.MinJournalBytes.
func defaultJournalBytes(dataDir string) int64 {
	_, total, err := statfs(dataDir)
	if err != nil || total/64 >= log.DefaultJournalBytes {
		return log.DefaultJournalBytes
	}
	return max(total/64, log.MinJournalBytes)
}

func (b *Broker) moveAside(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	aside := fmt.Sprintf("%s.orphan-%d", dir, b.now().UnixMilli())
	if err := os.Rename(dir, aside); err != nil {
		return fmt.Errorf("move aside %s: %w", dir, err)
	}
	// The rename is durable only once the data folder is fsynced; before,
	// a crash could bring the old folder back under the topic's name.
	if err := (log.OSFS{}).SyncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("move aside %s: sync dir: %w", dir, err)
	}
	b.logger.Warn("folder with no topic metadata moved aside", zap.String("dir", dir), zap.String("to", aside))
	return nil
}

// logConfig adapts Kafka's meaning of 0 to package log, where a zero field
// means its default: retention.ms=0 and retention.bytes=0 delete everything
// sealed, so they become the smallest non-zero value.
func logConfig(c log.Config) log.Config {
	if c.Cleanup.Compacts() && c.MaxCompactionLag > 0 && c.MaxCompactionLag < c.SegmentAge {
		c.SegmentAge = c.MaxCompactionLag // the active segment is never cleaned
	}
	if c.RetentionAge == 0 {
		c.RetentionAge = time.Millisecond
	}
	if c.RetentionBytes == 0 {
		c.RetentionBytes = 1
	}
	return c
}

func (b *Broker) partitionDir(topic string, i int32) string {
	return filepath.Join(b.cfg.DataDir, topic+"-"+strconv.Itoa(int(i)))
}

// ParsePartitionDir splits a data-directory folder name `<topic>-<partition>`
// (the naming partitionDir uses); ok is false for any other folder.
func ParsePartitionDir(name string) (topic string, partition int32, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil || n < 0 {
		return "", 0, false
	}
	return name[:i], int32(n), true
}

func closePartitions(ps []*partition) error {
	var errs []error
	for _, p := range ps {
		if p.offline != nil {
			continue
		}
		if err := p.log.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s-%d: %w", p.topic, p.index, err))
		}
	}
	return errors.Join(errs...)
}

// reportOrphans logs folders in DataDir that no topic owns: left by a crash
// between deleting a topic's metadata and its logs, or copied in by hand.
// They are kept, not deleted.
func (b *Broker) reportOrphans() {
	entries, err := os.ReadDir(b.cfg.DataDir)
	if err != nil {
		b.logger.Error("list data dir", zap.Error(err))
		return
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "meta" || e.Name() == journalDir {
			continue
		}
		// Only `<topic>-<partition>` folders are the broker's; others beside
		// them (the packager's history, the archive) belong to their owners.
		name := e.Name()
		topic, n, ok := ParsePartitionDir(name)
		if !ok {
			continue
		}
		if t := b.topics[topic]; t != nil && int(n) < len(t.partitions) {
			continue
		}
		b.orphans = append(b.orphans, name)
		b.logger.Warn("directory with no topic metadata; left in place", zap.String("dir", filepath.Join(b.cfg.DataDir, name)))
	}
}

// Orphans lists the folders of DataDir found at Open that no topic owns.
func (b *Broker) Orphans() []string { return append([]string(nil), b.orphans...) }

// Meta is the metadata store, for the group coordinator and producer ids
// (issue 4), which keep their keys under their own prefixes (see meta.go).
func (b *Broker) Meta() *pebble.DB { return b.db }

// Logger is the broker's logger, for the parts of issue 4 built on it.
func (b *Broker) Logger() *zap.Logger { return b.logger }

// ClusterID is the cluster id reported to clients.
func (b *Broker) ClusterID() string { return b.clusterID }

// Config returns the configuration the broker runs with.
func (b *Broker) Config() Config { return b.cfg }

// goroutine starts f tracked by Close.
func (b *Broker) goroutine(f func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
}

func (b *Broker) retentionLoop() {
	t := time.NewTicker(b.cfg.RetentionCheckInterval)
	defer t.Stop()
	total := time.NewTicker(totalCheckEvery)
	defer total.Stop()
	for {
		select {
		case <-b.quit:
			return
		case <-t.C:
			b.EnforceRetention()
		case <-total.C:
			// A derived bound follows the free space, which others'
			// writes (a night's tarball) may take fast (retention_total.go).
			if b.cfg.RetentionTotalBytes == DefaultRetentionTotalBytes {
				b.enforceTotalBytes()
			}
		}
	}
}

// EnforceRetention runs retention once over every partition (the background
// loop calls it every log.retention.check.interval.ms), each by its own
// retention.ms and retention.bytes, then over all of them by
// log.retention.total.bytes (retention_total.go), and returns the number of
// segments deleted.
func (b *Broker) EnforceRetention() int {
	total := 0
	for _, p := range b.allPartitions() {
		byAge, bySize, err := p.log.Retain()
		if errors.Is(err, log.ErrClosed) {
			continue // its topic was deleted meanwhile
		}
		b.retention.count(reasonTime, byAge)
		b.retention.count(reasonSize, bySize)
		if err != nil {
			b.logger.Error("retention", zap.String("topic", p.topic), zap.Int32("partition", p.index), zap.Error(err))
			continue
		}
		for _, d := range []struct {
			reason string
			segs   []log.SegmentInfo
		}{{"retention.ms", byAge}, {"retention.bytes", bySize}} {
			if len(d.segs) == 0 {
				continue
			}
			var n int64
			for _, s := range d.segs {
				n += s.Bytes
			}
			total += len(d.segs)
			b.logger.Info("retention deleted segments", zap.String("topic", p.topic), zap.Int32("partition", p.index),
				zap.String("reason", d.reason), zap.Int("segments", len(d.segs)), zap.Int64("bytes", n),
				zap.Int64("log_start_offset", p.log.LogStartOffset()))
		}
	}
	return total + b.enforceTotalBytes()
}

// allPartitions lists every online partition, sorted by topic then index.
func (b *Broker) allPartitions() []*partition {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil
	}
	var out []*partition
	for _, name := range sortedKeys(b.topics) {
		for _, p := range b.topics[name].partitions {
			if p.offline == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// Close stops retention, then flushes and closes every log and the metadata
// store. It is safe to call twice; the second call returns the first's error.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		close(b.quit)
		b.wg.Wait()
		// Wait out topic admin in progress, then refuse new calls.
		b.adminMu.Lock()
		defer b.adminMu.Unlock()
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		if b.collector != nil {
			b.reg.Unregister(b.collector)
			b.reg.Unregister(b.offline)
			for _, c := range b.retention.collectors() {
				b.reg.Unregister(c)
			}
		}
		if m := b.logMetric; m != nil {
			for _, c := range m.Collectors() {
				if c != nil {
					b.reg.Unregister(c)
				}
			}
		}
		errs := []error{b.closeLogs()}
		if b.journal != nil {
			errs = append(errs, b.journal.Close())
		}
		if err := b.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close metadata: %w", err))
		}
		errs = append(errs, b.unlock())
		b.closeErr = errors.Join(errs...)
		b.logger.Info("broker closed", zap.Error(b.closeErr))
	})
	return b.closeErr
}

func (b *Broker) closeLogs() error {
	var errs []error
	for _, name := range sortedKeys(b.topics) {
		ps := b.topics[name].partitions
		for _, p := range ps {
			p.mu.Lock()
		}
		errs = append(errs, closePartitions(ps))
		for _, p := range ps {
			p.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// topicNames lists topic names sorted; it is TopicNames without the lock.
func (b *Broker) topicNamesLocked() []string {
	names := make([]string, 0, len(b.topics))
	for n := range b.topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
