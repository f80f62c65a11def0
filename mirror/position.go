package mirror

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// discover lists the upstream's topics and starts consuming every matching
// partition not yet consumed, from the position its destination partition
// holds (doc.go), creating or growing the destination topic first.
func (s *session) discover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.mr.cfg.Timeout)
	defer cancel()
	topics, err := s.srcAdm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list upstream topics: %w", err)
	}
	add := map[string]map[int32]kgo.Offset{}
	for _, name := range topics.Names() {
		td := topics[name]
		n := int32(len(td.Partitions))
		if td.IsInternal || td.Err != nil || !s.mr.matches(name) || n <= s.partitions[name] {
			continue
		}
		if err := s.ensureTopic(ctx, name, n); err != nil {
			return err
		}
		offsets, err := s.positions(ctx, name, s.partitions[name], n)
		if err != nil {
			return err
		}
		add[name] = offsets
		s.partitions[name] = n
		s.mr.logger.Info("mirroring topic", zap.String("topic", name), zap.Int32("partitions", n))
	}
	if len(add) > 0 {
		s.src.AddConsumePartitions(add)
	}
	var total int32
	for _, n := range s.partitions {
		total += n
	}
	s.mr.m.partitions.Set(float64(total))
	return nil
}

// ensureTopic makes the destination topic hold at least n partitions. A
// topic it creates takes the upstream topic's own configs (its overrides:
// cleanup.policy, retention.ms, ztf.alert.format, ...); when the
// destination refuses them, it is created without them and a warning names
// them.
func (s *session) ensureTopic(ctx context.Context, name string, n int32) error {
	configs := s.upstreamConfigs(ctx, name)
	// Kafka's own default, where ztfbroker refuses batches over 7 days
	// old: a mirror copies what the upstream still holds, however old.
	before := strconv.FormatInt(math.MaxInt64, 10)
	configs["message.timestamp.before.max.ms"] = &before
	resp, err := s.dstAdm.CreateTopic(ctx, n, -1, configs, name)
	if errors.Is(err, kerr.InvalidConfig) && len(configs) > 1 {
		s.mr.logger.Warn("destination refused the upstream topic's configs; creating the topic without them",
			zap.String("topic", name), zap.Any("configs", configs), zap.String("why", resp.ErrMessage))
		resp, err = s.dstAdm.CreateTopic(ctx, n, -1, map[string]*string{"message.timestamp.before.max.ms": &before}, name)
	}
	switch {
	case err == nil:
		s.mr.logger.Info("destination topic created", zap.String("topic", name), zap.Int32("partitions", n), zap.Any("configs", configs))
		return nil
	case !errors.Is(err, kerr.TopicAlreadyExists):
		if resp.ErrMessage != "" {
			err = fmt.Errorf("%w: %s", err, resp.ErrMessage)
		}
		return fmt.Errorf("create destination topic %s: %w", name, err)
	}
	details, err := s.dstAdm.ListTopics(ctx, name)
	if err != nil {
		return fmt.Errorf("destination topic %s: %w", name, err)
	}
	have := int32(len(details[name].Partitions))
	if have >= n {
		return nil
	}
	grown, err := s.dstAdm.UpdatePartitions(ctx, int(n), name)
	if err == nil {
		err = grown.Error()
	}
	if err != nil {
		return fmt.Errorf("grow destination topic %s from %d to %d partitions: %w", name, have, n, err)
	}
	s.mr.logger.Info("destination topic grown", zap.String("topic", name), zap.Int32("from", have), zap.Int32("to", n))
	return nil
}

// upstreamConfigs returns the upstream topic's overrides (configs whose
// source is the topic itself), or none when they cannot be read.
func (s *session) upstreamConfigs(ctx context.Context, name string) map[string]*string {
	out := map[string]*string{}
	rcs, err := s.srcAdm.DescribeTopicConfigs(ctx, name)
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		s.mr.logger.Warn("upstream topic configs unreadable; the destination topic takes its defaults",
			zap.String("topic", name), zap.Error(errors.Join(err, firstErr(rcs))))
		return out
	}
	for _, c := range rcs[0].Configs {
		if c.Source == kmsg.ConfigSourceDynamicTopicConfig && c.Value != nil && !c.Sensitive {
			out[c.Key] = c.Value
		}
	}
	return out
}

func firstErr(rcs kadm.ResourceConfigs) error {
	for _, rc := range rcs {
		if rc.Err != nil {
			return rc.Err
		}
	}
	return nil
}

// positions returns where the upstream partitions [from, to) of topic
// resume: after the offset named by the last record of each destination
// partition (doc.go).
func (s *session) positions(ctx context.Context, topic string, from, to int32) (map[int32]kgo.Offset, error) {
	starts, err := s.dstAdm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("destination %s start offsets: %w", topic, err)
	}
	ends, err := s.dstAdm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("destination %s end offsets: %w", topic, err)
	}
	out := map[int32]kgo.Offset{}
	last := map[int32]int64{} // partitions whose last record says where
	atEnd := map[int32]bool{} // the others: from the upstream's end (true) or start
	for p := from; p < to; p++ {
		start, _ := starts.Lookup(topic, p)
		end, _ := ends.Lookup(topic, p)
		switch {
		case end.Offset <= 0:
			out[p] = kgo.NewOffset().AtStart()
			atEnd[p] = s.mr.cfg.Start == StartLatest
			if atEnd[p] {
				out[p] = kgo.NewOffset().AtEnd()
			}
		case start.Offset >= end.Offset:
			s.mr.logger.Warn("destination partition emptied by its retention: its position is lost; mirroring from the upstream's end",
				zap.String("topic", topic), zap.Int32("partition", p), zap.Int64("destination_end", end.Offset))
			out[p] = kgo.NewOffset().AtEnd()
			atEnd[p] = true
		default:
			last[p] = end.Offset - 1
		}
	}
	s.noteFresh(ctx, topic, atEnd)
	if len(last) == 0 {
		return out, nil
	}
	upstream, err := s.lastMirrored(ctx, topic, last)
	if err != nil {
		return nil, err
	}
	for p, o := range upstream {
		out[p] = kgo.NewOffset().At(o + 1)
		s.next[tp{topic, p}] = o + 1
		s.mr.logger.Info("mirror resumes", zap.String("topic", topic), zap.Int32("partition", p),
			zap.Int64("upstream_offset", o+1), zap.Int64("destination_offset", last[p]+1))
	}
	return out, nil
}

// lastMirrored reads the destination records at the offsets given, one
// per partition, and returns the upstream offsets their OffsetHeader names.
func (s *session) lastMirrored(ctx context.Context, topic string, at map[int32]int64) (map[int32]int64, error) {
	want := map[int32]kgo.Offset{}
	for p, o := range at {
		want[p] = kgo.NewOffset().At(o)
	}
	cl, err := kgo.NewClient(append(slices.Clone(s.mr.dst), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: want}))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	out := map[int32]int64{}
	for len(out) < len(at) {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read the last records of destination topic %s: %w", topic, ctx.Err())
		}
		var bad error
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset != at[r.Partition] {
				return
			}
			up, err := upstreamOffset(r)
			if err != nil && bad == nil {
				bad = fmt.Errorf("destination %s-%d at offset %d: %w: it holds records the mirror did not write, so it is not mirrored into",
					topic, r.Partition, r.Offset, err)
			}
			out[r.Partition] = up
		})
		if bad != nil {
			return nil, bad
		}
	}
	return out, nil
}

// upstreamOffset reads a copied record's OffsetHeader.
func upstreamOffset(r *kgo.Record) (int64, error) {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if h := r.Headers[i]; h.Key == OffsetHeader {
			n, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("header %s %q is not an offset", OffsetHeader, h.Value)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no %s header", OffsetHeader)
}

// noteFresh records where the partitions starting at the upstream's start
// or end (atEnd) begin, so that the lag counts them before their first
// record is copied. Best effort: the lag is a metric, the position is the
// consumer's.
func (s *session) noteFresh(ctx context.Context, topic string, atEnd map[int32]bool) {
	if len(atEnd) == 0 {
		return
	}
	starts, err := s.srcAdm.ListStartOffsets(ctx, topic)
	if err != nil {
		return
	}
	ends, err := s.srcAdm.ListEndOffsets(ctx, topic)
	if err != nil {
		return
	}
	for p, end := range atEnd {
		o, ok := starts.Lookup(topic, p)
		if end {
			o, ok = ends.Lookup(topic, p)
		}
		if ok && o.Err == nil {
			s.next[tp{topic, p}] = o.Offset
		}
	}
}
