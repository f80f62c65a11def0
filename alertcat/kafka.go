package alertcat

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicChars are the characters Kafka allows in a topic name; a topic with
// any other character is taken as a regular expression.
var topicChars = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func isRegex(topic string) bool { return !topicChars.MatchString(topic) }

// ErrUnreachable is returned when no broker of a kafka:// address answers.
var ErrUnreachable = errors.New("alertcat: kafka broker unreachable")

// ErrUnknownTopic is returned for a topic that does not exist.
var ErrUnknownTopic = errors.New("alertcat: unknown topic")

func (r *runner) kafkaClient(ep Endpoint, opts ...kgo.Opt) (*kgo.Client, *kadm.Client, error) {
	base := []kgo.Opt{
		kgo.SeedBrokers(ep.Hosts...),
		kgo.DialTimeout(r.cfg.Timeout),
		kgo.RequestTimeoutOverhead(r.cfg.Timeout),
		kgo.ClientID("ztfbroker-cat"),
	}
	cl, err := kgo.NewClient(append(append(base, opts...), r.cfg.KafkaOpts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka %s: %w", ep, err)
	}
	return cl, kadm.NewClient(cl), nil
}

// topics resolves ep's topic (a name or a regular expression) against the
// cluster's metadata, failing clearly on an unreachable broker or a missing
// topic.
func (r *runner) topics(ctx context.Context, ep Endpoint, adm *kadm.Client, mustExist bool) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	td, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, strings.Join(ep.Hosts, ","), err)
	}
	if !isRegex(ep.Topic) {
		if d, ok := td[ep.Topic]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			if mustExist {
				return nil, fmt.Errorf("%w %q on %s (it has %d topics)", ErrUnknownTopic, ep.Topic, strings.Join(ep.Hosts, ","), len(td))
			}
			return nil, nil
		}
		return []string{ep.Topic}, nil
	}
	re, err := regexp.Compile("^(?:" + ep.Topic + ")$")
	if err != nil {
		return nil, fmt.Errorf("topic pattern %q: %w", ep.Topic, err)
	}
	var out []string
	for t := range td {
		if re.MatchString(t) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	if len(out) == 0 && mustExist {
		return nil, fmt.Errorf("%w: no topic on %s matches %q", ErrUnknownTopic, strings.Join(ep.Hosts, ","), ep.Topic)
	}
	return out, nil
}

// readKafka consumes ep. Without a group it starts at the log start offset
// (or --start) and commits nothing; with a group it resumes and commits what
// was written out.
func (r *runner) readKafka(ctx context.Context, ep Endpoint, emit func(*Alert) error) error {
	probe, adm, err := r.kafkaClient(ep)
	if err != nil {
		return err
	}
	topics, err := r.topics(ctx, ep, adm, r.cfg.EOF || !isRegex(ep.Topic))
	if err != nil {
		probe.Close()
		return err
	}
	// remaining holds, under --eof, the end offset of each partition that
	// still has records to read.
	var remaining map[string]map[int32]int64
	if r.cfg.EOF {
		remaining, err = r.endOffsets(ctx, ep, adm, topics)
		if err != nil {
			probe.Close()
			return err
		}
		if len(remaining) == 0 {
			probe.Close()
			return nil
		}
	}
	probe.Close()

	reset := kgo.NewOffset().AtStart()
	if !r.cfg.Start.IsZero() {
		reset = kgo.NewOffset().AfterMilli(r.cfg.Start.UnixMilli())
	}
	opts := []kgo.Opt{kgo.ConsumeResetOffset(reset), kgo.FetchMaxBytes(64 << 20)}
	if r.cfg.EOF || !isRegex(ep.Topic) {
		opts = append(opts, kgo.ConsumeTopics(topics...))
	} else {
		opts = append(opts, kgo.ConsumeRegex(), kgo.ConsumeTopics("^(?:"+ep.Topic+")$"))
	}
	if ep.Group != "" {
		opts = append(opts, kgo.ConsumerGroup(ep.Group), kgo.DisableAutoCommit())
	}
	cl, _, err := r.kafkaClient(ep, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, kgo.ErrClientClosed) {
				return nil
			}
			return fmt.Errorf("kafka %s: fetch %s[%d]: %w", ep, fe.Topic, fe.Partition, fe.Err)
		}
		var done []*kgo.Record
		var stop error
		fs.EachRecord(func(rec *kgo.Record) {
			if stop != nil {
				return
			}
			if remaining != nil {
				end, ok := remaining[rec.Topic][rec.Partition]
				if !ok || rec.Offset >= end {
					return
				}
				if rec.Offset >= end-1 {
					delete(remaining[rec.Topic], rec.Partition)
					if len(remaining[rec.Topic]) == 0 {
						delete(remaining, rec.Topic)
					}
					cl.PauseFetchPartitions(map[string][]int32{rec.Topic: {rec.Partition}})
				}
			}
			alerts, err := r.codec.Decode(rec.Value)
			if err != nil {
				stop = fmt.Errorf("kafka %s: %s[%d] offset %d: %w", ep, rec.Topic, rec.Partition, rec.Offset, err)
				return
			}
			meta := &KafkaMeta{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Timestamp: rec.Timestamp, Key: rec.Key}
			for _, a := range alerts {
				a.Kafka = meta
				if stop = emit(a); stop != nil {
					if errors.Is(stop, errDone) {
						done = append(done, rec)
					}
					return
				}
			}
			done = append(done, rec)
		})
		if ep.Group != "" && len(done) > 0 {
			if err := r.flush(); err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
			err := cl.CommitRecords(cctx, done...)
			cancel()
			if err != nil {
				return fmt.Errorf("kafka %s: commit: %w", ep, err)
			}
		}
		if stop != nil {
			return stop
		}
		if remaining != nil && len(remaining) == 0 {
			return nil
		}
	}
}

// endOffsets returns, per partition with records left to read, the end
// offset as of now.
func (r *runner) endOffsets(ctx context.Context, ep Endpoint, adm *kadm.Client, topics []string) (map[string]map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka %s: list end offsets: %w", ep, err)
	}
	var starts kadm.ListedOffsets
	if !r.cfg.Start.IsZero() {
		starts, err = adm.ListOffsetsAfterMilli(ctx, r.cfg.Start.UnixMilli(), topics...)
	} else {
		starts, err = adm.ListStartOffsets(ctx, topics...)
	}
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka %s: list start offsets: %w", ep, err)
	}
	var committed kadm.OffsetResponses
	if ep.Group != "" {
		if committed, err = adm.FetchOffsets(ctx, ep.Group); err != nil {
			return nil, fmt.Errorf("kafka %s: fetch offsets of group %q: %w", ep, ep.Group, err)
		}
	}
	out := map[string]map[int32]int64{}
	ends.Each(func(lo kadm.ListedOffset) {
		from := int64(0)
		if s, ok := starts.Lookup(lo.Topic, lo.Partition); ok && s.Offset >= 0 {
			from = s.Offset
		}
		if c, ok := committed.Lookup(lo.Topic, lo.Partition); ok && c.Err == nil && c.At >= 0 {
			from = c.At
		}
		if from < lo.Offset {
			if out[lo.Topic] == nil {
				out[lo.Topic] = map[int32]int64{}
			}
			out[lo.Topic][lo.Partition] = lo.Offset
		}
	})
	return out, nil
}

// kafkaSink produces each alert as one message: a one-alert container file
// (or Confluent framing, if it came framed).
type kafkaSink struct {
	ep    Endpoint
	cl    *kgo.Client
	errc  chan error
	first error
}

func (r *runner) openKafkaSink(ctx context.Context, ep Endpoint) (*kafkaSink, error) {
	if isRegex(ep.Topic) {
		return nil, fmt.Errorf("kafka %s: a destination topic must be a name, not a pattern", ep)
	}
	if ep.Group != "" {
		return nil, fmt.Errorf("kafka %s: a group means nothing for a destination", ep)
	}
	cl, adm, err := r.kafkaClient(ep,
		kgo.DefaultProduceTopic(ep.Topic),
		kgo.RecordDeliveryTimeout(r.cfg.Timeout),
		kgo.ProducerBatchMaxBytes(16<<20),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	if err != nil {
		return nil, err
	}
	ts, err := r.topics(ctx, ep, adm, !r.cfg.Create)
	if err == nil && len(ts) == 0 {
		cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		_, err = adm.CreateTopic(cctx, -1, -1, nil, ep.Topic)
		cancel()
		if err != nil {
			err = fmt.Errorf("kafka %s: create topic: %w", ep, err)
		}
	}
	if err != nil {
		cl.Close()
		return nil, err
	}
	return &kafkaSink{ep: ep, cl: cl, errc: make(chan error, 1)}, nil
}

func (s *kafkaSink) Write(a *Alert) error {
	if s.first != nil {
		return s.first
	}
	select {
	case err := <-s.errc:
		s.first = err
		return err
	default:
	}
	v, err := a.Value()
	if err != nil {
		return err
	}
	s.cl.Produce(context.Background(), &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
		if err != nil {
			select {
			case s.errc <- fmt.Errorf("kafka %s: produce: %w", s.ep, err):
			default:
			}
		}
	})
	return nil
}

func (s *kafkaSink) Flush() error {
	if err := s.cl.Flush(context.Background()); err != nil {
		return err
	}
	select {
	case err := <-s.errc:
		s.first = err
	default:
	}
	return s.first
}

func (s *kafkaSink) Close() error {
	err := s.Flush()
	s.cl.Close()
	return err
}
