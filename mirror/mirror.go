package mirror

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/alertcat"
)

// OffsetHeader is the header every copied record carries: the record's
// offset upstream, in decimal. Part of the format (doc.go).
const OffsetHeader = "ztfbroker-mirror-offset"

// Backoffs between failed sessions.
const (
	firstBackoff = 500 * time.Millisecond
	maxBackoff   = 30 * time.Second
)

// Mirror copies the selected upstream topics into the destination.
type Mirror struct {
	cfg     Config
	logger  *zap.Logger
	now     func() time.Time
	m       *metrics
	pattern *regexp.Regexp // nil: cfg.Topics is a name
	src     []kgo.Opt
	dst     []kgo.Opt
}

// New checks cfg and builds a mirror; logger nil logs nothing, reg nil
// registers no metrics, now nil is time.Now. It connects to nothing until
// Run.
func New(cfg Config, logger *zap.Logger, reg prometheus.Registerer, now func() time.Time) (*Mirror, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Dest) == 0 {
		return nil, errors.New("mirror: no destination")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	pattern, _ := alertcat.TopicPattern(cfg.Topics)
	up, err := cfg.Security.KafkaOpts()
	if err != nil {
		return nil, fmt.Errorf("mirror: upstream: %w", err)
	}
	down, err := cfg.DestSecurity.KafkaOpts()
	if err != nil {
		return nil, fmt.Errorf("mirror: destination: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	common := []kgo.Opt{kgo.DialTimeout(cfg.Timeout), kgo.RequestTimeoutOverhead(cfg.Timeout), kgo.ClientID("ztfbroker-mirror")}
	mr := &Mirror{cfg: cfg, logger: logger, now: now, m: m, pattern: pattern}
	mr.src = append(append([]kgo.Opt{kgo.SeedBrokers(cfg.Bootstrap...)}, common...), up...)
	mr.dst = append(append(append([]kgo.Opt{kgo.SeedBrokers(cfg.Dest...)}, common...), down...), cfg.DestKafkaOpts...)
	return mr, nil
}

// Run mirrors until ctx ends. A session that fails (a record the
// destination refuses, a destination topic that cannot be made) is logged
// and started again, after a backoff, from the positions stored in the
// destination. Unreachable clusters are retried by the clients themselves.
func (mr *Mirror) Run(ctx context.Context) error {
	backoff := firstBackoff
	for {
		start := mr.now()
		err := mr.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		mr.m.restarts.Inc()
		if mr.now().Sub(start) > maxBackoff {
			backoff = firstBackoff // it ran well for a while
		}
		mr.logger.Error("mirror session failed; starting again from the destination's positions",
			zap.Error(err), zap.Duration("after", backoff))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// tp is a topic-partition.
type tp struct {
	topic     string
	partition int32
}

// session is one run of the mirror: a consumer of the upstream and a
// producer to the destination, positions read from the destination at its
// start and for every partition found later.
func (mr *Mirror) session(ctx context.Context) error {
	// The metadata of a topic found (consumed upstream, produced to
	// downstream) is fetched at once, not after kgo's 5 s minimum age.
	fresh := kgo.MetadataMinAge(min(mr.cfg.Refresh, time.Second))
	src, err := kgo.NewClient(append(slices.Clone(mr.src), kgo.FetchMaxWait(500*time.Millisecond), fresh)...)
	if err != nil {
		return fmt.Errorf("upstream client: %w", err)
	}
	defer src.Close()
	dst, err := kgo.NewClient(append(slices.Clone(mr.dst), fresh,
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		// A shutdown may cancel a round whose requests are in flight;
		// the next start reads the positions again (doc.go).
		kgo.AllowIdempotentProduceCancellation(),
	)...)
	if err != nil {
		return fmt.Errorf("destination client: %w", err)
	}
	defer dst.Close()
	s := &session{mr: mr, src: src, dst: dst, srcAdm: kadm.NewClient(src), dstAdm: kadm.NewClient(dst),
		partitions: map[string]int32{}, next: map[tp]int64{}, hwm: map[tp]int64{}}
	if err := s.discover(ctx); err != nil {
		return err
	}
	refreshed := mr.now()
	for {
		pctx, cancel := context.WithTimeout(ctx, mr.cfg.Refresh)
		fetches := src.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				mr.logger.Warn("upstream fetch (retried)", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
			}
		})
		if err := s.copy(ctx, fetches); err != nil {
			return err
		}
		if mr.now().Sub(refreshed) >= mr.cfg.Refresh {
			if err := s.discover(ctx); err != nil {
				return err
			}
			refreshed = mr.now()
		}
	}
}

type session struct {
	mr             *Mirror
	src, dst       *kgo.Client
	srcAdm, dstAdm *kadm.Client
	// partitions is how many partitions of each topic are consumed.
	partitions map[string]int32
	// next is the upstream offset after the last record copied; hwm the
	// upstream's high watermark as last fetched.
	next, hwm map[tp]int64
	recs      []*kgo.Record
}

// copy produces one poll's records and waits until every one is
// acknowledged: one round (doc.go).
func (s *session) copy(ctx context.Context, fetches kgo.Fetches) error {
	s.recs = s.recs[:0]
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		s.hwm[tp{fp.Topic, fp.Partition}] = fp.HighWatermark
		for _, r := range fp.Records {
			headers := make([]kgo.RecordHeader, len(r.Headers), len(r.Headers)+1)
			copy(headers, r.Headers)
			headers = append(headers, kgo.RecordHeader{Key: OffsetHeader, Value: strconv.AppendInt(nil, r.Offset, 10)})
			s.recs = append(s.recs, &kgo.Record{Topic: r.Topic, Partition: r.Partition, Key: r.Key, Value: r.Value,
				Timestamp: r.Timestamp, Headers: headers})
		}
	})
	if len(s.recs) > 0 {
		t0 := time.Now()
		results := s.dst.ProduceSync(ctx, s.recs...)
		s.mr.logger.Debug("round", zap.Int("records", len(s.recs)), zap.Duration("took", time.Since(t0)))
		acked := s.mr.now()
		for i, res := range results {
			if res.Err != nil {
				r := s.recs[i]
				return fmt.Errorf("produce %s-%d (upstream offset %s): %w", r.Topic, r.Partition, r.Headers[len(r.Headers)-1].Value, res.Err)
			}
		}
		var n int64
		for _, r := range s.recs {
			n += int64(len(r.Key) + len(r.Value))
			s.mr.m.latency.Observe(acked.Sub(r.Timestamp).Seconds())
			up, _ := strconv.ParseInt(string(r.Headers[len(r.Headers)-1].Value), 10, 64)
			s.next[tp{r.Topic, r.Partition}] = up + 1
		}
		s.mr.m.records.Add(float64(len(s.recs)))
		s.mr.m.bytes.Add(float64(n))
	}
	var lag int64
	for k, hw := range s.hwm {
		if next, ok := s.next[k]; ok && hw > next {
			lag += hw - next
		}
	}
	s.mr.m.lag.Set(float64(lag))
	return nil
}

// matches says whether an upstream topic is mirrored.
func (mr *Mirror) matches(topic string) bool {
	if mr.pattern == nil {
		return topic == mr.cfg.Topics
	}
	return mr.pattern.MatchString(topic)
}
