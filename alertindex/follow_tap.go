package alertindex

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// How the follower reads a partition from its Tap: every partition starts
// fetched; it is handed to the Tap (its fetching paused) once the Tap holds
// its next record, or once it is read to its high watermark with nothing
// marked missed since; it goes back to fetching, from the offset the index
// stands at, as soon as the Tap does not continue it exactly: a record
// marked missed, a gap that lasts tapGapGrace (requests to one partition
// from two connections may be handed over out of order for a moment), a
// prefix too short, or, checked every tapCheck, a high watermark past the
// index while the Tap holds nothing.
const (
	tapGapGrace = time.Second
	tapCheck    = 5 * time.Second
	// tapLinger gathers a Tap's records into fewer, larger batches (each
	// a synced pebble batch and an offset commit).
	tapLinger = 200 * time.Millisecond
)

// partState is the follower's view of one partition assigned to it.
type partState struct {
	pos    int64 // the next offset to index; -1: not known yet
	hw     int64 // the high watermark last fetched; -1: none
	hwAt   time.Time
	paused bool // read from the Tap, not fetched
	// short: a Tap's prefix was too short; missedAt: the Tap last marked
	// the partition, so a high watermark fetched before does not show
	// it read to the end.
	short    bool
	tapped   bool // records were taken from the Tap this round
	missedAt time.Time
	gapSince time.Time
	checkPos int64 // pos at the last tapCheck that found it behind; -1: none
}

// UseTap makes the follower read the partitions the Tap continues from it
// rather than fetch them (serve's index; call before Run).
func (f *Follower) UseTap(t *Tap) { f.tap = t }

// assigned and revoked track the group's assignment (kgo callbacks).
func (f *Follower) assigned(_ context.Context, cl *kgo.Client, parts map[string][]int32) {
	f.partsMu.Lock()
	defer f.partsMu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			f.parts[topicPartition{t, p}] = &partState{pos: -1, hw: -1, checkPos: -1}
		}
	}
	// A partition paused before it was revoked is fetched again.
	cl.ResumeFetchPartitions(parts)
}

func (f *Follower) revoked(_ context.Context, cl *kgo.Client, parts map[string][]int32) {
	f.partsMu.Lock()
	defer f.partsMu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			tp := topicPartition{t, p}
			delete(f.parts, tp)
			if f.tap != nil {
				f.tap.forget(tp)
			}
		}
	}
	cl.ResumeFetchPartitions(parts)
}

// poll waits for fetched records or, with a Tap, for records handed over
// (then tapLinger more), or for the next tapCheck.
func (f *Follower) poll(ctx context.Context) kgo.Fetches {
	if f.tap == nil {
		return f.cl.PollRecords(ctx, 2000)
	}
	pctx, cancel := context.WithTimeout(ctx, tapCheck)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-f.tap.wake:
		case <-done:
			return
		}
		select {
		case <-time.After(tapLinger):
			cancel()
		case <-done:
			f.tap.signal() // the poll ended first: the next one takes them
		}
	}()
	return f.cl.PollRecords(pctx, 2000)
}

// fetched reports whether a fetched record is to be indexed, and moves
// the partition's position past it. A partition read from the Tap takes
// only its next record from a fetch still under way when it was paused;
// one fetched takes every record (a seek back indexes again, which changes
// nothing).
func (f *Follower) fetched(st *partState, offset int64) bool {
	if st == nil {
		return true
	}
	if st.paused && st.pos >= 0 && offset != st.pos {
		return false
	}
	st.pos = offset + 1
	return true
}

// takeTap decodes the records the Tap holds that continue partitions
// exactly where the index stands, and notes the offsets to commit.
func (f *Follower) takeTap(sums []Summary, commits map[topicPartition]int64) ([]Summary, int) {
	read := 0
	for tp, ts := range f.tap.partitions() {
		st := f.parts[tp]
		if st == nil {
			// Not this member's (or not yet): kept unless they crowd
			// the buffer.
			if f.tap.halfFull() {
				f.tap.forget(tp)
			}
			continue
		}
		if st.pos < 0 {
			f.resolvePos(tp, st, ts.head)
		}
		if st.pos < 0 || ts.head < 0 || ts.head > st.pos {
			continue // not known, or a gap: fetched
		}
		for _, r := range f.tap.take(tp, st.pos, math.MaxInt) {
			var s Summary
			var err error
			if len(r.value) == r.valueLen {
				s, err = f.dec.Decode(r.value)
			} else {
				var needed int
				s, needed, err = f.dec.DecodePrefix(r.value)
				if err == nil {
					f.tap.noteNeeded(needed)
				}
			}
			f.tap.recycle(r.value) // the summary keeps none of it
			if errors.Is(err, ErrShort) {
				// Fetched instead, with the rest taken: whole
				// prefixes from now on.
				st.short = true
				f.tap.askAll()
				break
			}
			read++
			f.m.tapped.Inc()
			if err != nil {
				f.undecodable(tp.topic, tp.partition, r.offset, err)
			} else {
				s.Topic, s.Partition, s.Offset = tp.topic, tp.partition, r.offset
				sums = append(sums, s)
			}
			st.pos, st.tapped = r.offset+1, true
			commits[tp] = st.pos
		}
	}
	return sums, read
}

// resolvePos finds where the index stands in a partition no record was
// read of since it was assigned: the group's committed offset, or 0 when
// there is none and the Tap holds the partition from its first record.
func (f *Follower) resolvePos(tp topicPartition, st *partState, head int64) {
	if o, ok := f.cl.CommittedOffsets()[tp.topic][tp.partition]; ok && o.Offset >= 0 {
		st.pos = o.Offset
	} else if head == 0 {
		st.pos = 0
	}
}

// steer hands partitions to the Tap or back to fetching (see tapGapGrace).
func (f *Follower) steer(ctx context.Context) {
	now := time.Now()
	held := f.tap.partitions()
	var pause, resume map[string][]int32
	var seek map[string]map[int32]kgo.EpochOffset
	add := func(m *map[string][]int32, tp topicPartition) {
		if *m == nil {
			*m = map[string][]int32{}
		}
		(*m)[tp.topic] = append((*m)[tp.topic], tp.partition)
	}
	checkDue := now.Sub(f.lastCheck) >= tapCheck
	var ends map[topicPartition]int64
	if checkDue {
		f.lastCheck = now
		ends = f.endOffsets(ctx)
	}
	for tp, st := range f.parts {
		ts, ok := held[tp]
		if ok && ts.missed {
			st.missedAt = now
			f.tap.clearMissed(tp)
		}
		if st.pos < 0 {
			continue
		}
		if !st.paused {
			// Read to the end as fetched after the last mark, or
			// continued by the Tap: the Tap takes over.
			caughtUp := st.hw >= 0 && st.pos >= st.hw && st.hwAt.After(st.missedAt)
			continued := (st.tapped || (ok && ts.head == st.pos)) && !st.hwAt.Before(st.missedAt)
			st.tapped = false
			if !st.short && (caughtUp || continued) {
				st.paused, st.gapSince, st.checkPos = true, time.Time{}, -1
				add(&pause, tp)
			}
			st.short = false
			continue
		}
		gap := ok && ts.head > st.pos
		switch {
		case !gap:
			st.gapSince = time.Time{}
		case st.gapSince.IsZero():
			st.gapSince = now
		}
		behind := false
		if end, ok := ends[tp]; ok && end > st.pos {
			behind = st.checkPos == st.pos // no progress over a whole check
			st.checkPos = st.pos
		} else if ok {
			st.checkPos = -1
		}
		if st.short || st.missedAt.Equal(now) || (gap && now.Sub(st.gapSince) >= tapGapGrace) || behind {
			st.paused, st.short, st.hw = false, false, -1
			add(&resume, tp)
			if seek == nil {
				seek = map[string]map[int32]kgo.EpochOffset{}
			}
			if seek[tp.topic] == nil {
				seek[tp.topic] = map[int32]kgo.EpochOffset{}
			}
			seek[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: st.pos}
			f.m.fallbacks.Inc()
		}
	}
	if pause != nil {
		f.cl.PauseFetchPartitions(pause)
	}
	if resume != nil {
		f.cl.SetOffsets(seek)
		f.cl.ResumeFetchPartitions(resume)
	}
}

// endOffsets asks for the high watermarks of the partitions read from the
// Tap (nil when there are none or the cluster does not answer).
func (f *Follower) endOffsets(ctx context.Context) map[topicPartition]int64 {
	var topics []string
	seen := map[string]bool{}
	for tp, st := range f.parts {
		if st.paused && !seen[tp.topic] {
			seen[tp.topic] = true
			topics = append(topics, tp.topic)
		}
	}
	if len(topics) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	listed, err := f.adm.ListEndOffsets(ctx, topics...)
	if err != nil && len(listed) == 0 {
		return nil
	}
	out := map[topicPartition]int64{}
	for t, ps := range listed {
		for p, o := range ps {
			if o.Err == nil {
				out[topicPartition{t, p}] = o.Offset
			}
		}
	}
	return out
}

// commit commits the offsets after the records indexed.
func (f *Follower) commit(ctx context.Context, commits map[topicPartition]int64) {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for tp, o := range commits {
		if offsets[tp.topic] == nil {
			offsets[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	f.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if err = kerr.ErrorForCode(p.ErrorCode); err != nil {
						break
					}
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			f.log.Warn("commit offsets", zap.Error(err))
		}
	})
}

// undecodable counts and logs a message that is not an alert.
func (f *Follower) undecodable(topic string, partition int32, offset int64, err error) {
	f.m.undecodable.Inc()
	f.log.Warn("alert not indexed: it does not decode", zap.String("topic", topic),
		zap.Int32("partition", partition), zap.Int64("offset", offset), zap.Error(err))
}
