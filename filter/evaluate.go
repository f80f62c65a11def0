package filter

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// alertJob is one polled alert and what its filters made of it.
type alertJob struct {
	rec     *kgo.Record
	filters []*running // those to evaluate, in order
	parts   Parts
	alert   Alert
	bad     bool // not decodable
	results []evaluation
}

type evaluation struct {
	match   bool
	err     error
	seconds float64
}

// process evaluates the polled alerts and produces their matches: alerts
// are decoded and evaluated on every core, then their matches produced in
// the order polled, so each filter topic receives them in source order
// (recover depends on it).
func (r *Runner) process(ctx context.Context, cl *kgo.Client, adm *kadm.Client, fetches kgo.Fetches) error {
	r.noteLag(fetches)
	var jobs []*alertJob
	fetches.EachRecord(func(rec *kgo.Record) {
		j := &alertJob{rec: rec}
		tp := topicPartition{rec.Topic, rec.Partition}
		for _, f := range r.sources(rec.Topic) {
			if f.spec.Paused {
				continue
			}
			if u, ok := f.until[tp]; ok && rec.Offset < u {
				continue // the backfill's
			}
			if d, ok := f.done[tp]; ok && rec.Offset <= d {
				r.m.skipped.Inc()
				continue
			}
			j.filters = append(j.filters, f)
			j.parts.Cutouts = j.parts.Cutouts || f.expr.Cutouts
			j.parts.History = j.parts.History || f.expr.History
			j.parts.Forced = j.parts.Forced || f.expr.Forced
		}
		if len(j.filters) > 0 {
			jobs = append(jobs, j)
		}
	})
	r.evaluate(jobs)

	for _, j := range jobs {
		if j.bad {
			r.m.undecodable.Inc()
			continue
		}
		for i, f := range j.filters {
			if f.spec.Paused { // paused by an earlier alert of this poll
				continue
			}
			res := j.results[i]
			f.m.seconds.Add(res.seconds)
			f.m.evaluated.Inc()
			f.score *= 1 - 1.0/errorWindow
			if res.err != nil {
				f.m.errors.Inc()
				f.score++
				if f.score >= float64(r.cfg.PauseErrors) {
					r.pause(ctx, cl, f, res.err)
				}
				continue
			}
			if !res.match {
				continue
			}
			if err := r.ensure(ctx, adm, f); err != nil {
				return err
			}
			f.m.matched.Inc()
			cl.Produce(ctx, r.match(f, j.rec, &j.alert), r.produced)
		}
	}
	return nil
}

// evaluate decodes and evaluates the jobs on every core.
func (r *Runner) evaluate(jobs []*alertJob) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(jobs)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				j := jobs[i]
				j.alert.Topic = j.rec.Topic
				if err := r.decoder.Decode(j.rec.Value, j.parts, &j.alert); err != nil {
					j.bad = true
					continue
				}
				j.results = make([]evaluation, len(j.filters))
				for k, f := range j.filters {
					start := time.Now()
					m, err := f.expr.Eval(&j.alert)
					j.results[k] = evaluation{match: m, err: err, seconds: time.Since(start).Seconds()}
				}
			}
		}()
	}
	wg.Wait()
}

// noteLag sets the lag gauge from the high watermarks of a fetch.
func (r *Runner) noteLag(fetches kgo.Fetches) {
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 {
			last := p.Records[len(p.Records)-1].Offset
			r.lag[topicPartition{p.Topic, p.Partition}] = max(p.HighWatermark-last-1, 0)
		}
	})
	var lag int64
	for _, l := range r.lag {
		lag += l
	}
	r.m.lag.Set(float64(lag))
}
