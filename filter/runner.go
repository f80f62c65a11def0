package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// Headers a match carries besides the alert's own: where it came from,
// which is also how a restarted runner knows what it already produced.
const (
	HeaderSourceTopic     = "ztf.source.topic"
	HeaderSourcePartition = "ztf.source.partition"
	HeaderSourceOffset    = "ztf.source.offset"
)

// errorWindow is the evaluations over which a filter's errors are
// counted: PauseErrors errors within about this many pause it.
const errorWindow = 1000

// Config is how a Runner reaches the stream and how it treats filters.
// The yaml tags are the settings' names under filter.
type Config struct {
	// Bootstrap is the Kafka cluster; empty inside serve (this broker).
	Bootstrap []string `yaml:"bootstrap"`
	// Group is the consumer group of the runners (run more for more
	// throughput: they share the source partitions).
	Group string `yaml:"group"`
	// InstanceID makes the runner a static member of the group (Kafka's
	// group.instance.id): restarted after a crash it takes its place back
	// at once instead of waiting out the dead member's session. Empty:
	// a dynamic member (serve uses "ztfbroker-serve").
	InstanceID string `yaml:"instance.id"`
	// SpecTopic holds the filters (DefaultSpecTopic, compacted).
	SpecTopic string `yaml:"spec.topic"`
	// MaxPollRecords is the most alerts between two offset commits; a
	// crash replays at most these, and the matches they made are found
	// again in the last RecoveryScanRecords of each filter topic.
	MaxPollRecords int `yaml:"max.poll.records"`
	// RecoveryScanRecords is how many of a filter topic's last records a
	// runner reads at start to skip what it produced before a crash.
	RecoveryScanRecords int `yaml:"recovery.scan.records"`
	// PauseErrors pauses a filter that errors this many times in about
	// the last 1000 alerts it evaluated.
	PauseErrors int `yaml:"pause.errors"`
	// CostLimit is CEL's cost units one evaluation may spend.
	CostLimit int64 `yaml:"cost.limit"`
	// SummaryLink is the link of a summary match, {objectId} and {candid}
	// replaced; empty: none.
	SummaryLink string `yaml:"summary.link"`
	// Declared are the filters of the configuration (its top-level
	// `filters:` list), stored when the runner starts. nil (no list):
	// the declared filters stored before are left as they are; a list,
	// even empty, removes those it does not name.
	Declared []Declared `yaml:"-"`
}

// DefaultConfig is the runner inside serve.
func DefaultConfig() Config {
	return Config{
		Bootstrap:           []string{},
		Group:               "ztfbroker-filters",
		SpecTopic:           DefaultSpecTopic,
		MaxPollRecords:      500,
		RecoveryScanRecords: 10_000,
		PauseErrors:         10,
		CostLimit:           DefaultCostLimit,
		SummaryLink:         "",
	}
}

// Validate names every bad setting.
func (c Config) Validate() error {
	var errs []error
	if c.Group == "" {
		errs = append(errs, errors.New("filter.group: empty"))
	}
	if c.SpecTopic == "" {
		errs = append(errs, errors.New("filter.spec.topic: empty"))
	}
	if c.MaxPollRecords < 1 || c.MaxPollRecords > 100_000 {
		errs = append(errs, fmt.Errorf("filter.max.poll.records %d: out of range: 1 to 100000", c.MaxPollRecords))
	}
	switch {
	case c.RecoveryScanRecords < 1 || c.RecoveryScanRecords > 10_000_000:
		errs = append(errs, fmt.Errorf("filter.recovery.scan.records %d: out of range: 1 to 10000000", c.RecoveryScanRecords))
	case c.RecoveryScanRecords < c.MaxPollRecords:
		errs = append(errs, fmt.Errorf("filter.recovery.scan.records %d: must be at least filter.max.poll.records (%d)",
			c.RecoveryScanRecords, c.MaxPollRecords))
	}
	if c.PauseErrors < 1 || c.PauseErrors > errorWindow {
		errs = append(errs, fmt.Errorf("filter.pause.errors %d: out of range: 1 to %d", c.PauseErrors, errorWindow))
	}
	if c.CostLimit < 100 || c.CostLimit > 1_000_000_000 {
		errs = append(errs, fmt.Errorf("filter.cost.limit %d: out of range: 100 to 1000000000", c.CostLimit))
	} else if len(c.Declared) > 0 {
		comp, err := NewCompiler(uint64(c.CostLimit))
		if err == nil {
			err = checkDeclared(c.Declared, comp)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Access is what the runner asks of the broker's authorization; a nil
// function allows everything (a foreign Kafka cluster's own ACLs then
// apply to the runner's login).
type Access struct {
	// MayRead tells whether owner may read topic.
	MayRead func(owner, topic string) bool
	// Public tells whether every topic the glob matches is public.
	Public func(glob string) bool
	// Grant lets owner, and everyone when public, read a filter topic.
	Grant func(topic, owner string, public bool) error
}

// Runner evaluates the filters over the stream and produces their matches.
type Runner struct {
	cfg      Config
	opts     []kgo.Opt
	access   Access
	compiler *Compiler
	decoder  *Decoder
	logger   *zap.Logger
	m        *metrics

	declared bool // the configuration's filters are stored (declare)
	filters  map[string]*running
	byTopic  map[string][]*running // source topic -> filters reading it
	lag      map[topicPartition]int64

	produceMu  sync.Mutex
	produceErr error

	// The backfills this runner does (backfill.go), by filter name, and
	// the source partitions the group gave it.
	bfMu      sync.Mutex
	backfills map[string]*backfill
	owned     map[topicPartition]bool
	// backfillBatch, for tests, is called after each acknowledged batch
	// of a backfill with its matches so far.
	backfillBatch func(matches int)
}

type topicPartition struct {
	topic     string
	partition int32
}

// running is a filter being evaluated.
type running struct {
	spec   Spec
	expr   *Expression
	public bool
	// done is, per source partition, the last offset whose match a
	// previous run produced (found by recover): records up to it are
	// skipped.
	done map[topicPartition]int64
	// until is the cut-over of a StartEarliest filter: the group
	// evaluates from these offsets on, the backfill below them.
	until   map[topicPartition]int64
	ensured bool
	score   float64 // decaying count of recent errors
	allowed map[string]bool
	m       filterMetrics
}

// NewRunner checks cfg and returns a runner; opts reach the cluster
// (seed brokers, login). logger may be nil.
func NewRunner(cfg Config, access Access, logger *zap.Logger, reg prometheus.Registerer, opts ...kgo.Opt) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	c, err := NewCompiler(uint64(cfg.CostLimit))
	if err != nil {
		return nil, err
	}
	if len(cfg.Bootstrap) > 0 {
		opts = append([]kgo.Opt{kgo.SeedBrokers(cfg.Bootstrap...)}, opts...)
	}
	return &Runner{cfg: cfg, opts: opts, access: access, compiler: c, decoder: NewDecoder(), logger: logger,
		m: newMetrics(reg), filters: map[string]*running{}, lag: map[topicPartition]int64{},
		backfills: map[string]*backfill{}, owned: map[topicPartition]bool{}}, nil
}

// Run evaluates until ctx ends. A failed session (a match that could not
// be produced, a lost broker) starts again from the committed offsets.
func (r *Runner) Run(ctx context.Context) error {
	for {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.logger.Error("filter runner restarting from the committed offsets", zap.Error(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (r *Runner) session(ctx context.Context) error {
	feed, err := followSpecs(ctx, r.cfg.SpecTopic, r.opts...)
	if err != nil {
		return err
	}
	defer feed.close()
	if !r.declared && r.cfg.Declared != nil {
		specs, _ := feed.snapshot()
		if err := r.declare(ctx, specs); err != nil {
			return err
		}
		r.declared = true
	}
	r.filters = map[string]*running{}
	for ctx.Err() == nil {
		if err := r.consume(ctx, feed); err != nil {
			return err
		}
	}
	return nil
}

// consume runs one member of the group over the topics of the filters
// there are, until ctx ends or a filter names topics it does not read
// (then it returns, everything committed, for the next to subscribe).
// Every filter is recovered at its start; a filter topic is recovered
// again whenever the group hands this runner partitions.
func (r *Runner) consume(ctx context.Context, feed *specFeed) error {
	specs, version := feed.snapshot()
	fresh := r.apply(specs)
	globs := r.globs()
	if len(globs) == 0 { // no filter yet: wait for one
		for !feed.changed(version) {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
		}
		return nil
	}
	var reassigned sync.Mutex
	assigned := false
	opts := append([]kgo.Opt{}, r.opts...)
	if r.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(r.cfg.InstanceID))
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.SessionTimeout(15*time.Second),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(globs...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.MetadataMinAge(500*time.Millisecond),
		kgo.MetadataMaxAge(2*time.Second),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			reassigned.Lock()
			assigned = true
			reassigned.Unlock()
			r.own(ps, true)
		}),
		// A backfill runs only while its runner holds the partition that
		// names it (backfillOwner): it stops before the partition goes.
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { r.own(ps, false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { r.own(ps, false) }),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	// Close leaves the group, which waits for a rebalance a poll blocks.
	defer cl.AllowRebalance()
	defer r.stopBackfills()
	adm := kadm.NewClient(cl)
	if err := r.recover(ctx, adm, fresh); err != nil {
		return err
	}

	for ctx.Err() == nil {
		if feed.changed(version) {
			specs, version = feed.snapshot()
			fresh := r.apply(specs)
			if !slices.Equal(r.globs(), globs) {
				return nil
			}
			if err := r.recover(ctx, adm, fresh); err != nil {
				return err
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		fs := cl.PollRecords(pctx, r.cfg.MaxPollRecords)
		cancel()
		if fs.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				r.logger.Warn("filter runner fetch", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
			}
		})
		reassigned.Lock()
		again := assigned
		assigned = false
		reassigned.Unlock()
		if again {
			all := make([]*running, 0, len(r.filters))
			for _, f := range r.filters {
				all = append(all, f)
			}
			if err := r.recover(ctx, adm, all); err != nil {
				return err
			}
		}
		r.steerBackfills(ctx, cl)
		if fs.NumRecords() == 0 {
			cl.AllowRebalance()
			continue
		}
		if err := r.process(ctx, cl, adm, fs); err != nil {
			return err
		}
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		r.produceMu.Lock()
		perr := r.produceErr
		r.produceErr = nil
		r.produceMu.Unlock()
		if perr != nil {
			return fmt.Errorf("produce a match: %w", perr)
		}
		// Only now, with every match acknowledged, are the alerts done.
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		cl.AllowRebalance()
	}
	return nil
}

// globs are the regular expressions of the running filters' topics,
// sorted.
func (r *Runner) globs() []string {
	set := map[string]bool{}
	for _, f := range r.filters {
		set[globRegexp(f.spec.Topics)] = true
	}
	out := make([]string, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

// apply makes the running filters those of specs, keeping the state of
// those unchanged, and returns the new ones (to recover).
func (r *Runner) apply(specs map[string]Spec) []*running {
	var fresh []*running
	next := make(map[string]*running, len(specs))
	for name, s := range specs {
		if f, ok := r.filters[name]; ok && f.spec.offset == s.offset && bytes.Equal(f.spec.Encode(), s.Encode()) {
			next[name] = f
			continue
		}
		old, had := r.filters[name]
		if err := s.Check(); err != nil {
			r.logger.Error("filter refused", zap.String("filter", name), zap.Error(err))
			continue
		}
		e, err := r.compiler.Compile(s.Expression)
		if err != nil {
			r.logger.Error("filter refused", zap.String("filter", name), zap.Error(err))
			continue
		}
		f := &running{spec: s, expr: e, done: map[topicPartition]int64{}, until: s.cutOver(), allowed: map[string]bool{}, m: r.m.of(name)}
		if had {
			f.ensured = old.ensured && old.spec.Owner == s.Owner && old.spec.Topics == s.Topics
		}
		f.public = r.access.Public == nil || r.access.Public(s.Topics)
		if s.Paused {
			f.m.paused.Set(1)
			r.logger.Warn("filter paused", zap.String("filter", name), zap.String("reason", s.Reason))
		} else {
			f.m.paused.Set(0)
			r.logger.Info("filter running", zap.String("filter", name), zap.String("topics", s.Topics),
				zap.String("owner", s.Owner), zap.Bool("public", f.public), zap.Uint64("cost_max", e.Cost))
		}
		next[name] = f
		fresh = append(fresh, f)
	}
	for name := range r.filters {
		if _, ok := next[name]; !ok {
			r.logger.Info("filter removed", zap.String("filter", name))
			r.m.forget(name)
		}
	}
	r.filters = next
	r.byTopic = map[string][]*running{}
	return fresh
}

// sources returns the filters reading topic, working it out once per
// topic and set of filters.
func (r *Runner) sources(topic string) []*running {
	if fs, ok := r.byTopic[topic]; ok {
		return fs
	}
	var fs []*running
	if !strings.HasPrefix(topic, "__") && !strings.HasPrefix(topic, TopicPrefix) {
		for _, f := range r.filters {
			if f.spec.matches(topic) && r.reads(f, topic) {
				fs = append(fs, f)
			}
		}
	}
	r.byTopic[topic] = fs
	return fs
}

// reads tells whether f may read topic, one of its sources.
func (r *Runner) reads(f *running, topic string) bool {
	ok := r.access.MayRead == nil || r.access.MayRead(f.spec.Owner, topic)
	if ok && f.public && r.access.Public != nil && !r.access.Public(topic) {
		ok = false // a public filter's topic never shows a topic that is not public
	}
	if !ok {
		r.logger.Warn("filter skips a topic its owner may not read", zap.String("filter", f.spec.Name),
			zap.String("owner", f.spec.Owner), zap.String("topic", topic))
	}
	return ok
}

// match is the record produced for a match of rec.
func (r *Runner) match(f *running, rec *kgo.Record, a *Alert) *kgo.Record {
	value := rec.Value
	if f.spec.Format == FormatSummary {
		value = summarize(a, f.spec.Name, r.cfg.SummaryLink)
	}
	h := make([]kgo.RecordHeader, 0, len(rec.Headers)+3)
	h = append(h, rec.Headers...)
	h = append(h,
		kgo.RecordHeader{Key: HeaderSourceTopic, Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
		kgo.RecordHeader{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, rec.Offset, 10)})
	return &kgo.Record{Topic: f.spec.Topic(), Partition: 0, Key: rec.Key, Value: value, Timestamp: rec.Timestamp, Headers: h}
}

func (r *Runner) produced(_ *kgo.Record, err error) {
	if err != nil {
		r.produceMu.Lock()
		if r.produceErr == nil {
			r.produceErr = err
		}
		r.produceMu.Unlock()
	}
}

// ensure creates the filter's topic (one partition, the broker's
// retention) and grants its readers, once per session.
func (r *Runner) ensure(ctx context.Context, adm *kadm.Client, f *running) error {
	if f.ensured {
		return nil
	}
	resp, err := adm.CreateTopic(ctx, 1, -1, nil, f.spec.Topic())
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create %s: %w", f.spec.Topic(), err)
	}
	if r.access.Grant != nil {
		if err := r.access.Grant(f.spec.Topic(), f.spec.Owner, f.public); err != nil {
			return fmt.Errorf("grant %s: %w", f.spec.Topic(), err)
		}
	}
	f.ensured = true
	return nil
}

// pause stops evaluating f and stores it paused, with the error, so that
// `filter list` shows why and a restart keeps it paused.
func (r *Runner) pause(ctx context.Context, cl *kgo.Client, f *running, cause error) {
	f.spec.Paused = true
	f.spec.Reason = fmt.Sprintf("paused after %d errors in about %d alerts; last: %v", r.cfg.PauseErrors, errorWindow, cause)
	if len(f.spec.Reason) > 1024 {
		f.spec.Reason = f.spec.Reason[:1024]
	}
	f.m.paused.Set(1)
	r.logger.Warn("filter paused: it errors too often; the others go on", zap.String("filter", f.spec.Name), zap.Error(cause))
	cl.Produce(ctx, stateRecord(r.cfg.SpecTopic, f.spec), r.produced)
}

// recover reads the last RecoveryScanRecords of each filter's topic and
// notes, per source partition, the last offset whose match is there: the
// matches of alerts after the last commit that a crash cut short are not
// produced twice. A filter topic has one partition, written in source
// order by one producer at a time, so what is there of the matches is a
// prefix, and the last source offset per partition is where it ends.
func (r *Runner) recover(ctx context.Context, adm *kadm.Client, fs []*running) error {
	if len(fs) == 0 {
		return nil
	}
	byTopic := map[string]*running{}
	topics := make([]string, 0, len(fs))
	for _, f := range fs {
		byTopic[f.spec.Topic()] = f
		topics = append(topics, f.spec.Topic())
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	from := map[string]map[int32]kgo.Offset{}
	want := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		s, ok := starts.Lookup(o.Topic, o.Partition)
		if o.Err != nil || !ok || s.Err != nil || o.Partition != 0 || o.Offset <= s.Offset {
			return
		}
		at := max(s.Offset, o.Offset-int64(r.cfg.RecoveryScanRecords))
		if byTopic[o.Topic].spec.backfilling() {
			// The backfill's matches come between the group's: read them
			// all (up to maxBackfillScan) not to miss the group's last.
			at = max(s.Offset, o.Offset-maxBackfillScan)
		}
		from[o.Topic] = map[int32]kgo.Offset{0: kgo.NewOffset().At(at)}
		want[o.Topic] = o.Offset
	})
	if len(from) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, r.opts...), kgo.ConsumePartitions(from))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	scanned := 0
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fetches.Err(); err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			scanned++
			if tp, off, ok := source(rec); ok {
				f := byTopic[rec.Topic]
				if d, seen := f.done[tp]; !seen || off > d {
					f.done[tp] = off
				}
			}
			if rec.Offset+1 >= want[rec.Topic] {
				delete(want, rec.Topic)
			}
		})
	}
	r.logger.Info("filter topics read back", zap.Int("filters", len(fs)), zap.Int("records", scanned))
	return nil
}

// source reads a match's source headers.
func source(rec *kgo.Record) (topicPartition, int64, bool) {
	var tp topicPartition
	off, got := int64(0), 0
	for _, h := range rec.Headers {
		switch h.Key {
		case HeaderSourceTopic:
			tp.topic = string(h.Value)
			got |= 1
		case HeaderSourcePartition:
			p, err := strconv.ParseInt(string(h.Value), 10, 32)
			if err == nil {
				tp.partition = int32(p)
				got |= 2
			}
		case HeaderSourceOffset:
			o, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err == nil && o >= 0 && o < math.MaxInt64 {
				off = o
				got |= 4
			}
		}
	}
	return tp, off, got == 7
}
