package alertindex

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// Config is how the index follows the alert topics.
type Config struct {
	// Bootstrap is the Kafka cluster's HOST:PORTs.
	Bootstrap []string `yaml:"-"`
	// Dir is the pebble store's folder.
	Dir string `yaml:"dir"`
	// Group is the consumer group whose committed offsets say how far the
	// index has read.
	Group string `yaml:"group"`
	// Topics is a regular expression of the topics followed.
	Topics string `yaml:"topics"`
	// RetentionCheck is how often the partitions' log start offsets are
	// asked for, to drop the alerts retention deleted.
	RetentionCheck time.Duration `yaml:"retention.check.ms"`
	// MetadataMaxAge is how soon a new topic (tonight's) is found.
	MetadataMaxAge time.Duration `yaml:"metadata.max.age.ms"`
	// CacheBytes is pebble's block cache.
	CacheBytes int64 `yaml:"cache.bytes"`
	// TapBytes bounds the alerts the broker of the same process hands
	// over as it appends them (Tap; serve only), in bytes of their
	// prefixes; 0: no tap, every alert is fetched.
	TapBytes int64 `yaml:"tap.bytes"`
	// ClientOpts are extra franz-go options (a login).
	ClientOpts []kgo.Opt `yaml:"-"`
}

// DefaultConfig follows every ztf_ topic as group ztfbroker-portal.
func DefaultConfig() Config {
	return Config{Group: "ztfbroker-portal", Topics: "^ztf_", RetentionCheck: time.Minute,
		MetadataMaxAge: 10 * time.Second, CacheBytes: 32 << 20, TapBytes: 64 << 20}
}

// Validate names every wrong setting.
func (c Config) Validate() error {
	var errs []error
	if c.Group == "" {
		errs = append(errs, errors.New("portal.group: empty"))
	}
	if _, err := regexp.Compile(c.Topics); err != nil || c.Topics == "" {
		errs = append(errs, fmt.Errorf("portal.topics %q: want a regular expression: %v", c.Topics, err))
	}
	if c.RetentionCheck < time.Second || c.RetentionCheck > 24*time.Hour {
		errs = append(errs, fmt.Errorf("portal.retention.check.ms %d: must be 1000 to 86400000", c.RetentionCheck.Milliseconds()))
	}
	if c.MetadataMaxAge < time.Second || c.MetadataMaxAge > time.Hour {
		errs = append(errs, fmt.Errorf("portal.metadata.max.age.ms %d: must be 1000 to 3600000", c.MetadataMaxAge.Milliseconds()))
	}
	if c.CacheBytes < 1<<20 || c.CacheBytes > 64<<30 {
		errs = append(errs, fmt.Errorf("portal.cache.bytes %d: must be 1048576 to 68719476736", c.CacheBytes))
	}
	if c.TapBytes != 0 && (c.TapBytes < 1<<20 || c.TapBytes > 1<<30) {
		errs = append(errs, fmt.Errorf("portal.tap.bytes %d: must be 0 (no tap) or 1048576 to 1073741824", c.TapBytes))
	}
	return errors.Join(errs...)
}

// clientVersions pins the requests to Kafka 3.0's versions: Fetch v12 is
// the last before topic ids, which the reader's own fetches do not carry.
func clientVersions() kgo.Opt { return kgo.MaxVersions(kversion.V3_0_0()) }

// Follower keeps an Index up to date with the alert topics.
type Follower struct {
	cfg    Config
	idx    *Index
	log    *zap.Logger
	dec    Decoder
	m      *metrics
	cl     *kgo.Client
	rd     *kgo.Client // reads alerts back: apart from cl, whose fetch connections long-poll
	adm    *kadm.Client
	now    func() time.Time
	closed sync.Once

	// With a Tap (follow_tap.go): the partitions assigned, guarded by
	// partsMu (the group's callbacks run on the client's goroutines).
	tap       *Tap
	partsMu   sync.Mutex
	parts     map[topicPartition]*partState
	lastCheck time.Time

	mu        sync.Mutex
	lastJD    float64
	lastAt    time.Time
	perMinute []time.Time // when each of the recent alerts was indexed
}

// NewFollower builds the consumer; it connects when Run starts.
func NewFollower(cfg Config, idx *Index, logger *zap.Logger, reg prometheus.Registerer) (*Follower, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	f := &Follower{cfg: cfg, idx: idx, log: logger, dec: Decoder{Schemas: avrofile.NewSchemas(0)},
		now: time.Now, parts: map[topicPartition]*partState{}}
	opts := append([]kgo.Opt{kgo.SeedBrokers(cfg.Bootstrap...), clientVersions(),
		kgo.OnPartitionsAssigned(f.assigned), kgo.OnPartitionsRevoked(f.revoked), kgo.OnPartitionsLost(f.revoked),
		kgo.ConsumerGroup(cfg.Group), kgo.ConsumeRegex(), kgo.ConsumeTopics(cfg.Topics),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMaxAge(cfg.MetadataMaxAge), kgo.MetadataMinAge(min(cfg.MetadataMaxAge, time.Second)),
		kgo.FetchMaxBytes(16 << 20), kgo.FetchMaxPartitionBytes(4 << 20),
		kgo.WithLogger(kzap{logger.Named("kafka")})}, cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("alertindex: %w", err)
	}
	rd, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Bootstrap...), clientVersions(),
		kgo.WithLogger(kzap{logger.Named("kafka")})}, cfg.ClientOpts...)...)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("alertindex: %w", err)
	}
	f.cl, f.rd, f.adm = cl, rd, kadm.NewClient(rd)
	f.m = newMetrics(reg, idx, f)
	return f, nil
}

// ReadAlert reads the message at a place in the log (see ReadAlert), on
// a client of its own, asking the partition's leader as the follower
// knows it.
func (f *Follower) ReadAlert(ctx context.Context, topic string, partition int32, offset int64) ([]byte, error) {
	leader, _, _ := f.cl.PartitionLeader(topic, partition)
	return ReadAlert(ctx, f.rd, leader, topic, partition, offset)
}

// Admin is the follower's admin client (groups and their lag).
func (f *Follower) Admin() *kadm.Client { return f.adm }

// Close leaves the group and closes the clients.
func (f *Follower) Close() {
	f.closed.Do(func() {
		f.cl.Close()
		f.rd.Close()
	})
}

// Run indexes until ctx ends: poll, index in one synced batch, commit the
// offsets, so that a restart resumes after the last alert indexed (at
// worst indexing again, which changes nothing).
func (f *Follower) Run(ctx context.Context) error {
	// Retention is checked beside the polls, which wait for records.
	ctx, cancel := context.WithCancel(ctx)
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		retention := time.NewTicker(f.cfg.RetentionCheck)
		defer retention.Stop()
		for {
			select {
			case <-retention.C:
				f.pruneRetained(ctx)
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() {
		cancel()
		<-pruned
	}()
	var sums []Summary
	commits := map[topicPartition]int64{}
	for ctx.Err() == nil {
		fs := f.poll(ctx)
		if ctx.Err() != nil {
			f.cl.AllowRebalance()
			break
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				f.log.Warn("fetch", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
			}
		})
		sums = sums[:0]
		clear(commits)
		read := 0
		f.partsMu.Lock()
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			tp := topicPartition{p.Topic, p.Partition}
			st := f.parts[tp]
			for _, r := range p.Records {
				if !f.fetched(st, r.Offset) {
					continue
				}
				read++
				commits[tp] = r.Offset + 1
				s, err := f.dec.Decode(r.Value)
				if err != nil {
					f.undecodable(r.Topic, r.Partition, r.Offset, err)
					continue
				}
				s.Topic, s.Partition, s.Offset = r.Topic, r.Partition, r.Offset
				sums = append(sums, s)
			}
			if st != nil && p.HighWatermark >= 0 {
				st.hw, st.hwAt = p.HighWatermark, time.Now()
			}
		})
		if f.tap != nil {
			var tapped int
			sums, tapped = f.takeTap(sums, commits)
			read += tapped
		}
		f.partsMu.Unlock()
		f.m.read.Add(float64(read))
		if len(sums) > 0 {
			added, err := f.idx.Add(sums)
			if err != nil {
				f.cl.AllowRebalance()
				return err // the offsets stay uncommitted: a restart reads them again
			}
			f.m.indexed.Add(float64(added))
			f.noteIndexed(sums)
		}
		if len(commits) > 0 {
			f.commit(ctx, commits)
		}
		if f.tap != nil {
			f.partsMu.Lock()
			f.steer(ctx)
			f.partsMu.Unlock()
		}
		f.cl.AllowRebalance()
	}
	return nil
}

// noteIndexed keeps the latest exposure's latency and the recent rate.
func (f *Follower) noteIndexed(sums []Summary) {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range sums {
		if sums[i].JD > f.lastJD {
			f.lastJD, f.lastAt = sums[i].JD, now
		}
		f.perMinute = append(f.perMinute, now)
	}
	cut := 0
	for cut < len(f.perMinute) && now.Sub(f.perMinute[cut]) > time.Minute {
		cut++
	}
	f.perMinute = append(f.perMinute[:0], f.perMinute[cut:]...)
	if len(f.perMinute) > 1<<20 {
		f.perMinute = f.perMinute[len(f.perMinute)-1<<20:]
	}
}

// Progress is what the status page shows of the follower.
type Progress struct {
	// LastJD is the newest exposure indexed; LatencySeconds is the time
	// from that exposure to its alerts being indexed.
	LastJD         float64
	LatencySeconds float64
	// LastMinute is the alerts indexed in the last minute.
	LastMinute int
}

// Progress reports the follower's figures.
func (f *Follower) Progress() Progress {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := Progress{LastJD: f.lastJD}
	if f.lastJD > 0 {
		p.LatencySeconds = f.lastAt.Sub(JDTime(f.lastJD)).Seconds()
	}
	now := f.now()
	for _, t := range f.perMinute {
		if now.Sub(t) <= time.Minute {
			p.LastMinute++
		}
	}
	return p
}

// JDTime converts a Julian date to UTC (as packager.JDTime).
func JDTime(jd float64) time.Time {
	const unixEpochJD = 2440587.5
	return time.Unix(0, int64((jd-unixEpochJD)*86400e9)).UTC()
}

// TimeJD converts a time to a Julian date.
func TimeJD(t time.Time) float64 {
	const unixEpochJD = 2440587.5
	return unixEpochJD + float64(t.UnixNano())/86400e9
}

// pruneRetained drops the alerts below each partition's log start offset,
// and those of topics deleted.
func (f *Follower) pruneRetained(ctx context.Context) {
	n, err := Prune(ctx, f.idx, f.adm)
	if err != nil {
		f.log.Warn("retention check", zap.Error(err))
	}
	if n > 0 {
		f.m.removed.Add(float64(n))
		f.log.Info("alerts removed from the index with their segments", zap.Int("alerts", n))
	}
}

// Prune asks the cluster for the log start offset of every partition the
// index holds alerts of and removes those below it.
func Prune(ctx context.Context, idx *Index, adm *kadm.Client) (int, error) {
	topics := idx.Topics()
	if len(topics) == 0 {
		return 0, nil
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	starts, err := adm.ListStartOffsets(ctx, names...)
	if err != nil && len(starts) == 0 {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, t := range names {
		parts, err := idx.Partitions(t)
		if err != nil {
			return removed, err
		}
		for _, p := range parts {
			o, ok := starts.Lookup(t, p)
			var start int64
			switch {
			case ok && o.Err == nil:
				start = o.Offset
			case (ok && errors.Is(o.Err, kerr.UnknownTopicOrPartition)) || (!ok && topicMissing(starts, t)):
				start = -1 // the topic or partition is gone: every alert goes
			default:
				continue
			}
			n, err := idx.Prune(t, p, start)
			removed += n
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return removed, errors.Join(errs...)
}

// topicMissing reports whether the cluster answered for no partition of t.
func topicMissing(starts kadm.ListedOffsets, t string) bool {
	ps, ok := starts[t]
	if !ok {
		return false // no answer at all: say nothing
	}
	for _, o := range ps {
		if !errors.Is(o.Err, kerr.UnknownTopicOrPartition) {
			return false
		}
	}
	return true
}

// kzap passes franz-go's log lines to zap, warnings and errors only.
type kzap struct{ l *zap.Logger }

func (k kzap) Level() kgo.LogLevel { return kgo.LogLevelWarn }
func (k kzap) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	fields := make([]zap.Field, 0, len(keyvals)/2)
	for i := 0; i+1 < len(keyvals); i += 2 {
		fields = append(fields, zap.Any(fmt.Sprint(keyvals[i]), keyvals[i+1]))
	}
	if level == kgo.LogLevelError {
		k.l.Error(msg, fields...)
		return
	}
	k.l.Warn(msg, fields...)
}

// metrics are the index's figures on /metrics; the status page shows the
// same ones.
type metrics struct {
	read, indexed, undecodable, removed prometheus.Counter
	tapped, fallbacks                   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, idx *Index, f *Follower) *metrics {
	m := &metrics{
		read: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztfbroker_portal_records_read_total",
			Help: "Messages the portal's index read from the alert topics."}),
		indexed: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztfbroker_portal_alerts_indexed_total",
			Help: "Alerts added to the portal's index."}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztfbroker_portal_alerts_undecodable_total",
			Help: "Messages on the alert topics that did not decode as alerts, left out of the index."}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztfbroker_portal_alerts_removed_total",
			Help: "Alerts removed from the index because retention deleted their segment or topic."}),
		tapped: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztfbroker_portal_tap_records_total",
			Help: "Messages the index read from the broker's tap (serve) rather than fetched."}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztfbroker_portal_tap_fallbacks_total",
			Help: "Times a partition went back from the broker's tap to fetching (the tap full, a gap, a restart)."}),
	}
	if reg != nil {
		reg.MustRegister(m.read, m.indexed, m.undecodable, m.removed, m.tapped, m.fallbacks,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ztfbroker_portal_tap_dropped",
				Help: "Messages the broker's tap dropped because its buffer (portal.tap.bytes) was full; they are fetched."},
				func() float64 {
					if f.tap == nil {
						return 0
					}
					return float64(f.tap.Dropped())
				}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ztfbroker_portal_index_alerts",
				Help: "Alerts in the portal's index."}, func() float64 { return float64(idx.Count()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ztfbroker_portal_last_exposure_latency_seconds",
				Help: "From the newest exposure indexed (its candidate.jd) to its alerts being in the index."},
				func() float64 { return f.Progress().LatencySeconds }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ztfbroker_portal_alerts_last_minute",
				Help: "Alerts indexed in the last minute."}, func() float64 { return float64(f.Progress().LastMinute) }))
	}
	return m
}
