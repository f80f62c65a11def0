package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// maxBackfillScan is the most records of a filter topic read back to
// resume a backfill (all of them: the backfill's matches are anywhere in
// it); a backfill of a filter whose topic holds more fails with an error.
const maxBackfillScan = 10_000_000

// backfillRetry is how long a failed backfill waits to start again.
const backfillRetry = 5 * time.Second

// backfill is one filter's backfill, run by the runner that holds owner.
type backfill struct {
	spec     []byte // the Spec it started with, encoded
	owner    topicPartition
	cancel   context.CancelFunc
	done     chan struct{}
	err      error // once done
	ended    time.Time
	finished bool // done, and the Backfilled marker sent
}

// backfillOwner is the source partition whose holder in the group
// backfills f: partition 0 of the first topic (by name) of f's cut-over
// that the group still reads.
func backfillOwner(f *running, reading []string) (topicPartition, bool) {
	var first string
	for tp := range f.until {
		if (first == "" || tp.topic < first) && slices.Contains(reading, tp.topic) {
			first = tp.topic
		}
	}
	return topicPartition{first, 0}, first != ""
}

// own notes the source partitions the group gave (got) or took from this
// runner; the backfills whose owner partition goes stop first.
func (r *Runner) own(ps map[string][]int32, got bool) {
	r.bfMu.Lock()
	var stop []*backfill
	for t, parts := range ps {
		for _, p := range parts {
			tp := topicPartition{t, p}
			if got {
				r.owned[tp] = true
				continue
			}
			delete(r.owned, tp)
			for name, b := range r.backfills {
				if b.owner == tp {
					stop = append(stop, b)
					delete(r.backfills, name)
				}
			}
		}
	}
	r.bfMu.Unlock()
	for _, b := range stop {
		b.cancel()
		<-b.done
	}
}

// stopBackfills stops every backfill, at the end of a session.
func (r *Runner) stopBackfills() {
	r.bfMu.Lock()
	all := r.backfills
	r.backfills, r.owned = map[string]*backfill{}, map[topicPartition]bool{}
	r.bfMu.Unlock()
	for _, b := range all {
		b.cancel()
		<-b.done
	}
}

// steerBackfills starts the backfills this runner owns, stops those of
// filters changed or removed, and marks the finished ones Backfilled in
// the specs topic (so that no runner does them again).
func (r *Runner) steerBackfills(ctx context.Context, cl *kgo.Client) {
	r.bfMu.Lock()
	defer r.bfMu.Unlock()
	for name, b := range r.backfills {
		if f, ok := r.filters[name]; ok && bytes.Equal(b.spec, f.spec.Encode()) {
			continue
		}
		b.cancel()
		<-b.done
		delete(r.backfills, name)
	}
	reading := cl.GetConsumeTopics()
	for name, f := range r.filters {
		if !f.spec.backfilling() {
			continue
		}
		if b := r.backfills[name]; b != nil {
			select {
			case <-b.done:
			default:
				continue // running
			}
			switch {
			case b.finished, b.err != nil && time.Since(b.ended) < backfillRetry:
				continue
			case b.err == nil:
				spec := f.spec
				spec.Backfilled = true
				cl.Produce(ctx, stateRecord(r.cfg.SpecTopic, spec), r.produced)
				b.finished = true
				continue
			}
			delete(r.backfills, name) // failed: again
		}
		owner, ok := backfillOwner(f, reading)
		if !ok || !r.owned[owner] {
			continue
		}
		bctx, cancel := context.WithCancel(ctx)
		b := &backfill{spec: f.spec.Encode(), owner: owner, cancel: cancel, done: make(chan struct{})}
		r.backfills[name] = b
		// Its own copy: the session changes f (pause).
		g := &running{spec: f.spec, expr: f.expr, public: f.public, until: f.until, m: f.m}
		go func() {
			defer close(b.done)
			n, err := r.backfill(bctx, g)
			b.err, b.ended = err, time.Now()
			switch {
			case bctx.Err() != nil:
				r.logger.Info("filter backfill stopped", zap.String("filter", name), zap.Int("matches", n))
			case err != nil:
				r.logger.Error("filter backfill failed; it starts again", zap.String("filter", name), zap.Error(err))
			default:
				r.logger.Info("filter backfilled", zap.String("filter", name), zap.Int("matches", n))
			}
			if err == nil && bctx.Err() != nil {
				b.err = bctx.Err()
			}
		}()
	}
}

// backfill evaluates f over every retained alert below its cut-over and
// produces the matches, with its own client (so its own idempotent
// producer), partition by partition in source order. It starts after the
// greatest source offset below the cut-over already in f's topic: the
// group writes only at or above the cut-over, so what is there below it
// is what an earlier backfill sent, a prefix per source partition.
func (r *Runner) backfill(ctx context.Context, f *running) (int, error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, r.opts...),
		kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := r.ensure(ctx, adm, f); err != nil {
		return 0, err
	}
	done, err := r.backfilled(ctx, adm, f)
	if err != nil {
		return 0, err
	}
	var topics []string
	for tp := range f.until {
		if !slices.Contains(topics, tp.topic) {
			topics = append(topics, tp.topic)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return 0, fmt.Errorf("backfill: %w", err)
	}
	from := map[string]map[int32]kgo.Offset{}
	left := map[topicPartition]bool{}
	for tp, until := range f.until {
		s, ok := starts.Lookup(tp.topic, tp.partition)
		if !ok || s.Err != nil { // the topic is gone
			continue
		}
		at := s.Offset
		if d, ok := done[tp]; ok {
			at = max(at, d+1)
		}
		if at < until {
			if from[tp.topic] == nil {
				from[tp.topic] = map[int32]kgo.Offset{}
			}
			from[tp.topic][tp.partition] = kgo.NewOffset().At(at)
			left[tp] = true
		}
	}
	if len(left) == 0 {
		return 0, nil
	}
	cl.AddConsumePartitions(from)
	parts := Parts{Cutouts: f.expr.Cutouts, History: f.expr.History, Forced: f.expr.Forced}
	reads := map[string]bool{}
	var mu sync.Mutex
	var produceErr error
	produced := func(_ *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if produceErr == nil {
			produceErr = err
		}
	}
	matches := 0
	for len(left) > 0 {
		fs := cl.PollRecords(ctx, r.cfg.MaxPollRecords)
		if ctx.Err() != nil {
			return matches, ctx.Err()
		}
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, kerr.UnknownTopicOrPartition) { // deleted meanwhile
				delete(left, topicPartition{t, p})
				cl.RemoveConsumePartitions(map[string][]int32{t: {p}})
				return
			}
			r.logger.Warn("filter backfill fetch", zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
		})
		finished := map[string][]int32{}
		fs.EachRecord(func(rec *kgo.Record) {
			tp := topicPartition{rec.Topic, rec.Partition}
			until := f.until[tp]
			if !left[tp] || rec.Offset >= until {
				return
			}
			if rec.Offset+1 >= until {
				delete(left, tp)
				finished[tp.topic] = append(finished[tp.topic], tp.partition)
			}
			ok, seen := reads[rec.Topic]
			if !seen {
				ok = r.reads(f, rec.Topic)
				reads[rec.Topic] = ok
			}
			if !ok {
				return
			}
			a := Alert{Topic: rec.Topic}
			if err := r.decoder.Decode(rec.Value, parts, &a); err != nil {
				r.m.undecodable.Inc()
				return
			}
			start := time.Now()
			m, err := f.expr.Eval(&a)
			f.m.seconds.Add(time.Since(start).Seconds())
			f.m.evaluated.Inc()
			if err != nil {
				f.m.errors.Inc() // a backfill skips what errors; it does not pause
				return
			}
			if m {
				f.m.matched.Inc()
				matches++
				cl.Produce(context.Background(), r.match(f, rec, &a), produced)
			}
		})
		if len(finished) > 0 {
			cl.RemoveConsumePartitions(finished)
		}
		// Stopping waits for this batch: no produce is left in flight
		// when another runner takes the backfill over.
		fctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := cl.Flush(fctx)
		cancel()
		mu.Lock()
		err = errors.Join(err, produceErr)
		mu.Unlock()
		if err != nil {
			return matches, fmt.Errorf("backfill: produce a match: %w", err)
		}
		if r.backfillBatch != nil {
			r.backfillBatch(matches)
		}
	}
	return matches, nil
}

// backfilled reads all of f's topic and returns, per source partition,
// the greatest source offset below the cut-over there.
func (r *Runner) backfilled(ctx context.Context, adm *kadm.Client, f *running) (map[topicPartition]int64, error) {
	topic := f.spec.Topic()
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("backfill: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("backfill: %w", err)
	}
	s, _ := starts.Lookup(topic, 0)
	e, _ := ends.Lookup(topic, 0)
	if err := errors.Join(s.Err, e.Err); err != nil {
		return nil, fmt.Errorf("backfill: offsets of %s: %w", topic, err)
	}
	done := map[topicPartition]int64{}
	if e.Offset <= s.Offset {
		return done, nil
	}
	if e.Offset-s.Offset > maxBackfillScan {
		return nil, fmt.Errorf("backfill: %s holds %d records, more than the %d a backfill reads back",
			topic, e.Offset-s.Offset, maxBackfillScan)
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, r.opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(s.Offset)}}))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for at := s.Offset; at < e.Offset; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := fs.Err(); err != nil {
			return nil, fmt.Errorf("backfill: read %s: %w", topic, err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			at = rec.Offset + 1
			if tp, off, ok := source(rec); ok && off < f.until[tp] {
				if d, seen := done[tp]; !seen || off > d {
					done[tp] = off
				}
			}
		})
	}
	return done, nil
}
