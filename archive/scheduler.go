package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// Scheduler archives each night once its topic has gone quiet after the end
// of the UTC night, and at start rebuilds the nights of the last Lookback
// days that are missing or that late messages made incomplete. It builds one
// archive at a time: on a small machine the broker comes first. A night's
// topic is deleted TopicRetention after its archive was built complete.
type Scheduler struct {
	cfg     Config
	log     *zap.Logger
	now     func() time.Time
	metrics *schedMetrics
	// seen is when each night's end offsets were last seen to change.
	seen map[nightKey]observation
	// kept are the topics past retention already reported as kept, so the
	// warning comes once, not every poll.
	kept map[string]bool
	// ClientOpts are extra kgo options (TLS, SASL, ...) for every client.
	ClientOpts []kgo.Opt

	passes atomic.Int64 // finished passes, for tests
}

type nightKey struct {
	night   Night
	program Program
}

type observation struct {
	total     int64 // sum of end offsets
	changedAt time.Time
}

// NewScheduler checks cfg and sets up metrics on reg (nil: none). now is the
// clock (nil: time.Now).
func NewScheduler(cfg Config, logger *zap.Logger, reg prometheus.Registerer, now func() time.Time) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	m, err := newSchedMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Scheduler{cfg: cfg, log: logger, now: now, metrics: m, seen: map[nightKey]observation{}, kept: map[string]bool{}}, nil
}

// Run checks the nights every Poll until ctx ends, then returns nil. A run
// cut short by ctx leaves its checkpoint and resumes next time. With
// Enabled false it only waits for ctx.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.cfg.Enabled {
		<-ctx.Done()
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.cfg.Bootstrap...)}, s.ClientOpts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	admin := kadm.NewClient(cl)
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		s.pass(ctx, admin)
		s.passes.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// pass looks at every ended night in the window, oldest first.
func (s *Scheduler) pass(ctx context.Context, admin *kadm.Client) {
	now := s.now()
	today := NightOf(now)
	for d := s.cfg.Lookback; d >= 1; d-- {
		n := today.AddDays(-d)
		for _, p := range s.cfg.Programs {
			if ctx.Err() != nil {
				return
			}
			s.check(ctx, admin, nightKey{n, Program(p)}, now)
		}
	}
	// Forget nights that left the window.
	for k := range s.seen {
		if k.night.End().Before(today.AddDays(-s.cfg.Lookback).t) {
			delete(s.seen, k)
		}
	}
	if s.cfg.TopicRetention > 0 {
		s.expire(ctx, admin)
	}
}

// topicRE matches Topic's names; the program is checked against Programs.
var topicRE = regexp.MustCompile(`^ztf_([0-9]{8})_programid([0-9]+)$`)

// expire deletes the nightly topics of the archived programs whose archive
// was built complete more than TopicRetention ago, whatever the lookback.
// The build time is the archive's mtime: the run writes it last, and a
// rebuild for late messages writes it again.
func (s *Scheduler) expire(ctx context.Context, admin *kadm.Client) {
	topics, err := admin.ListTopics(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("archive: list topics", zap.Error(err))
		}
		return
	}
	archived := map[Program]bool{}
	for _, p := range s.cfg.Programs {
		archived[Program(p)] = true
	}
	for _, topic := range topics.Names() {
		if ctx.Err() != nil {
			return
		}
		m := topicRE.FindStringSubmatch(topic)
		if m == nil {
			continue
		}
		night, err := ParseNight(m[1])
		p, _ := strconv.Atoi(m[2])
		if err != nil || !archived[Program(p)] {
			continue
		}
		s.expireTopic(ctx, admin, topic, nightKey{night, Program(p)})
	}
}

func (s *Scheduler) expireTopic(ctx context.Context, admin *kadm.Client, topic string, k nightKey) {
	now := s.now()
	if !k.night.End().Before(now) {
		return // tonight's (or a later night's) topic is still being written
	}
	paths := pathsFor(filepath.Join(s.cfg.Dir, k.program.Name()), FileName(k.night, k.program))
	fi, err := os.Stat(paths.final)
	if err != nil || now.Sub(fi.ModTime()) < s.cfg.TopicRetention {
		return // not archived, or not for long enough
	}
	// No run may start on this night while its topic goes.
	unlock, err := lockRun(paths)
	if err != nil {
		return // a run is under way: the archive may be about to change
	}
	defer unlock()
	keep := func(reason string) {
		if !s.kept[topic] {
			s.kept[topic] = true
			s.log.Warn("archive: topic past retention kept", zap.String("topic", topic),
				zap.String("archive", paths.final), zap.String("reason", reason))
		}
	}
	var man Manifest
	if err := readJSON(paths.meta, &man); err != nil {
		keep("no manifest: the archive was made elsewhere and may be incomplete")
		return
	}
	ranges, err := listRanges(ctx, admin, topic)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrNoTopic) {
			s.log.Warn("archive: list offsets", zap.String("topic", topic), zap.Error(err))
		}
		return
	}
	if !holdsExactly(man.Ranges, ranges) {
		keep("the topic holds messages the archive does not")
		return
	}
	resp, err := admin.DeleteTopics(ctx, topic)
	if err == nil {
		err = resp[topic].Err
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("archive: delete topic", zap.String("topic", topic), zap.Error(err))
		}
		return
	}
	delete(s.kept, topic)
	delete(s.seen, k)
	s.metrics.topicsDeleted.WithLabelValues(strconv.Itoa(int(k.program))).Inc()
	s.log.Info("archive: deleted topic past retention", zap.String("topic", topic),
		zap.Stringer("night", k.night), zap.String("archive", paths.final), zap.Time("built", fi.ModTime()))
}

// holdsExactly reports whether every partition the topic has now ends where
// the archive's range ends: nothing came after the build. An end below the
// archive's means the topic was deleted and created again since (a late or
// replayed message): its messages are not in the archive either.
func holdsExactly(archived, now []PartitionRange) bool {
	byP := map[int32]PartitionRange{}
	for _, r := range archived {
		byP[r.Partition] = r
	}
	for _, r := range now {
		a, ok := byP[r.Partition]
		if !ok {
			a = PartitionRange{Partition: r.Partition} // a partition added since the build
		}
		if r.End != a.End {
			return false
		}
	}
	return true
}

func (s *Scheduler) check(ctx context.Context, admin *kadm.Client, k nightKey, now time.Time) {
	topic := Topic(k.night, k.program)
	ranges, err := listRanges(ctx, admin, topic)
	if errors.Is(err, ErrNoTopic) {
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("archive: list offsets", zap.String("topic", topic), zap.Error(err))
		}
		return
	}
	var total int64
	for _, r := range ranges {
		total += r.End
	}
	obs, ok := s.seen[k]
	switch {
	case !ok && !now.Before(k.night.End().Add(s.cfg.Idle)):
		// First sight, already past the idle time: the start-up check.
		obs = observation{total: total}
	case !ok || obs.total != total:
		obs = observation{total: total, changedAt: now}
	}
	s.seen[k] = obs
	if now.Before(k.night.End().Add(s.cfg.Idle)) || now.Sub(obs.changedAt) < s.cfg.Idle {
		return
	}
	dir := filepath.Join(s.cfg.Dir, k.program.Name())
	paths := pathsFor(dir, FileName(k.night, k.program))
	if complete(paths, ranges) {
		return
	}
	// A checkpoint for fewer messages than the topic now holds would resume
	// into an archive that is already incomplete.
	var ck checkpoint
	if readJSON(paths.ckpt, &ck) == nil && !covers(ck.Ranges, ranges) {
		_ = removeIfExists(paths.ckpt)
	}
	s.log.Info("archive: building night", zap.String("topic", topic))
	res, err := Build(ctx, Job{
		Bootstrap:       s.cfg.Bootstrap,
		Night:           k.night,
		Program:         k.program,
		OutDir:          dir,
		Level:           s.cfg.Level,
		CheckpointBytes: s.cfg.CheckpointBytes,
		ClientOpts:      s.ClientOpts,
		Schemas:         s.cfg.Schemas,
		Logger:          s.log,
	})
	program := strconv.Itoa(int(k.program))
	if err != nil {
		if ctx.Err() == nil {
			s.metrics.builds.WithLabelValues(program, "error").Inc()
			s.log.Error("archive: build failed", zap.String("topic", topic), zap.Error(err))
		}
		return
	}
	s.metrics.builds.WithLabelValues(program, "ok").Inc()
	s.metrics.members.WithLabelValues(program).Add(float64(res.Members))
	s.metrics.bytes.WithLabelValues(program).Add(float64(res.Size))
	s.metrics.seconds.Observe(res.Elapsed.Seconds())
}

// complete reports whether the final archive exists and holds every message
// the topic has now. An archive without a manifest was made elsewhere and is
// left alone; so is one whose messages retention has since deleted, since a
// rebuild would hold fewer.
func complete(paths runPaths, now []PartitionRange) bool {
	if _, err := os.Stat(paths.final); err != nil {
		return false
	}
	var m Manifest
	if err := readJSON(paths.meta, &m); err != nil {
		return true
	}
	return covers(m.Ranges, now)
}

// covers reports whether have reaches every end offset of now, or now has
// lost messages that have holds (and so cannot do better).
func covers(have, now []PartitionRange) bool {
	byP := map[int32]PartitionRange{}
	for _, r := range have {
		byP[r.Partition] = r
	}
	for _, r := range now {
		h, ok := byP[r.Partition]
		if !ok {
			if r.End > r.Start {
				return false
			}
			continue
		}
		if r.Start > h.Start {
			return true // retention moved on: a rebuild would lose alerts
		}
		if r.End > h.End {
			return false
		}
	}
	return true
}

type schedMetrics struct {
	builds        *prometheus.CounterVec
	members       *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	seconds       prometheus.Histogram
	topicsDeleted *prometheus.CounterVec
}

func newSchedMetrics(reg prometheus.Registerer) (*schedMetrics, error) {
	m := &schedMetrics{
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztfbroker_archive_builds_total",
			Help: "Nightly archive runs, by programid and result (ok, error).",
		}, []string{"program", "result"}),
		members: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztfbroker_archive_members_total",
			Help: "Alerts written into nightly archives, by programid.",
		}, []string{"program"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztfbroker_archive_bytes_total",
			Help: "Bytes of .tar.gz written, by programid.",
		}, []string{"program"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ztfbroker_archive_build_seconds",
			Help:    "Time to build one night's archive.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		topicsDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztfbroker_archive_topics_deleted_total",
			Help: "Nightly topics deleted past archive.topic.retention.ms after their archive was built, by programid.",
		}, []string{"program"}),
	}
	if err := registerMetrics(reg, m.builds, m.members, m.bytes, m.seconds, m.topicsDeleted); err != nil {
		return nil, fmt.Errorf("archive: register metrics: %w", err)
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
