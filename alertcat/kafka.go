package alertcat

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicChars are the characters Kafka allows in a topic name.
var topicChars = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// topicPattern compiles the topic of a kafka:// address: nil for a topic
// name; a regular expression (Go syntax, as written) for one that starts
// with ^, as librdkafka and kcat take it; otherwise a glob when it holds *,
// ? or [ (path.Match, as authz.public.topics: ztf_2026*_programid1).
func topicPattern(topic string) (*regexp.Regexp, error) {
	switch {
	case strings.HasPrefix(topic, "^"):
		re, err := regexp.Compile(topic)
		if err != nil {
			return nil, fmt.Errorf("topic pattern %q: %w", topic, err)
		}
		return re, nil
	case strings.ContainsAny(topic, "*?["):
		if _, err := path.Match(topic, ""); err != nil {
			return nil, fmt.Errorf("topic glob %q: %w", topic, err)
		}
		return regexp.Compile(globRegexp(topic))
	case !topicChars.MatchString(topic):
		return nil, fmt.Errorf("%q is not a topic name (letters, digits, . _ -); a pattern is a glob (ztf_*_programid1) or a regular expression starting with ^", topic)
	}
	return nil, nil
}

// globRegexp turns a path.Match glob into the anchored regular expression
// franz-go's ConsumeRegex takes, so a running copy also picks up topics
// created later (tomorrow's ztf_*_programid1).
func globRegexp(g string) string {
	var b strings.Builder
	b.WriteString("^(?:")
	for i := 0; i < len(g); i++ {
		switch c := g[i]; c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '\\':
			if i+1 < len(g) {
				i++
				b.WriteString(regexp.QuoteMeta(g[i : i+1]))
			}
		case '[':
			// A character class: ^ negates in both syntaxes, ranges are
			// the same; an escaped character is taken literally.
			b.WriteByte('[')
			i++
			if i < len(g) && g[i] == '^' {
				b.WriteByte('^')
				i++
			}
			for ; i < len(g) && g[i] != ']'; i++ {
				switch {
				case g[i] == '\\' && i+1 < len(g):
					i++
					b.WriteString(classChar(g[i]))
				case g[i] == '-':
					b.WriteByte('-')
				default:
					b.WriteString(classChar(g[i]))
				}
			}
			b.WriteByte(']')
		default:
			b.WriteString(regexp.QuoteMeta(g[i : i+1]))
		}
	}
	b.WriteString(")$")
	return b.String()
}

func classChar(c byte) string {
	if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80 {
		return string(c)
	}
	return `\` + string(c)
}

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

// topics resolves ep's topic (a name or a pattern) against the
// cluster's metadata, failing clearly on an unreachable broker or a missing
// topic.
func (r *runner) topics(ctx context.Context, ep Endpoint, adm *kadm.Client, mustExist bool) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	td, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, strings.Join(ep.Hosts, ","), err)
	}
	if ep.Pattern == nil {
		if d, ok := td[ep.Topic]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			if mustExist {
				return nil, fmt.Errorf("%w %q on %s (it has %d topics)", ErrUnknownTopic, ep.Topic, strings.Join(ep.Hosts, ","), len(td))
			}
			return nil, nil
		}
		return []string{ep.Topic}, nil
	}
	var out []string
	for t := range td {
		if ep.Pattern.MatchString(t) {
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
	topics, err := r.topics(ctx, ep, adm, r.cfg.EOF || ep.Pattern == nil)
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
	if r.cfg.EOF || ep.Pattern == nil {
		opts = append(opts, kgo.ConsumeTopics(topics...))
	} else {
		opts = append(opts, kgo.ConsumeRegex(), kgo.ConsumeTopics(ep.Pattern.String()))
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
			meta := &KafkaMeta{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Timestamp: rec.Timestamp, Key: rec.Key, Headers: rec.Headers}
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
// (or Confluent framing, if it came framed), with the key, timestamp and
// headers of Alert.Key, Alert.Timestamp and the record it was read from.
// A refused timestamp (INVALID_TIMESTAMP: the topic's
// message.timestamp.before.max.ms) says which --timestamp would pass.
// Without a topic in the address (kafka://host:port/) each alert goes to
// the topic it was read from.
type kafkaSink struct {
	r     *runner
	ctx   context.Context
	ep    Endpoint
	cl    *kgo.Client
	adm   *kadm.Client
	known map[string]bool
	errc  chan error
	first error

	// Delivery is bounded by a watchdog, not kgo.RecordDeliveryTimeout:
	// franz-go measures that from each record's Timestamp, which for an
	// alert is the observation, years ago. stall is canceled when records
	// are outstanding and none was delivered for --timeout.
	stall       context.Context
	stop        context.CancelCauseFunc
	outstanding atomic.Int64
	progress    atomic.Int64 // unix nanoseconds of the last delivery
	watchDone   chan struct{}
}

func (r *runner) openKafkaSink(ctx context.Context, ep Endpoint) (*kafkaSink, error) {
	if ep.Pattern != nil {
		return nil, fmt.Errorf("kafka %s: a destination topic must be a name, not a pattern (end the address with / to keep each source topic's name)", ep)
	}
	if ep.Group != "" {
		return nil, fmt.Errorf("kafka %s: a group means nothing for a destination", ep)
	}
	cl, adm, err := r.kafkaClient(ep,
		kgo.ProducerBatchMaxBytes(16<<20),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	if err != nil {
		return nil, err
	}
	s := &kafkaSink{r: r, ctx: ctx, ep: ep, cl: cl, adm: adm, known: map[string]bool{}, errc: make(chan error, 1),
		watchDone: make(chan struct{})}
	s.stall, s.stop = context.WithCancelCause(context.Background())
	go s.watch(r.cfg.Timeout)
	if ep.Topic != "" {
		err = s.ensureTopic(ep.Topic)
	} else {
		// Fail on an unreachable cluster now rather than at the first alert.
		_, err = r.topics(ctx, ep, adm, false)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// watch cancels s.stall once records wait and nothing was delivered for
// timeout, which fails them (franz-go checks a record's context before
// each produce request) and ends Flush.
func (s *kafkaSink) watch(timeout time.Duration) {
	defer close(s.watchDone)
	t := time.NewTicker(max(timeout/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stall.Done():
			return
		case <-t.C:
			if s.outstanding.Load() > 0 && time.Since(time.Unix(0, s.progress.Load())) > timeout {
				s.stop(fmt.Errorf("nothing delivered for %v", timeout))
				return
			}
		}
	}
}

// ensureTopic checks, once per topic, that it exists, or creates it with
// the broker's defaults under --create.
func (s *kafkaSink) ensureTopic(topic string) error {
	if s.known[topic] {
		return nil
	}
	ep := s.ep
	ep.Topic = topic
	ts, err := s.r.topics(s.ctx, ep, s.adm, !s.r.cfg.Create)
	if err == nil && len(ts) == 0 {
		cctx, cancel := context.WithTimeout(s.ctx, s.r.cfg.Timeout)
		_, err = s.adm.CreateTopic(cctx, -1, -1, nil, topic)
		cancel()
		if err != nil {
			err = fmt.Errorf("kafka %s: create topic %s: %w", s.ep, topic, err)
		}
	}
	if err != nil {
		return err
	}
	s.known[topic] = true
	return nil
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
	topic := s.ep.Topic
	if topic == "" {
		if a.Kafka == nil || a.Kafka.Topic == "" {
			return fmt.Errorf("kafka %s: keeps each alert's source topic, but an alert read from a file has none: name the destination topic", s.ep)
		}
		topic = a.Kafka.Topic
		if err := s.ensureTopic(topic); err != nil {
			return err
		}
	}
	v, err := a.Value()
	if err != nil {
		return err
	}
	rec := &kgo.Record{Topic: topic, Key: a.Key(), Value: v, Timestamp: a.Timestamp(s.r.cfg.Timestamps)}
	if a.Kafka != nil {
		rec.Headers = a.Kafka.Headers
	}
	if s.outstanding.Add(1) == 1 {
		s.progress.Store(time.Now().UnixNano())
	}
	s.cl.Produce(s.stall, rec, func(rec *kgo.Record, err error) {
		s.progress.Store(time.Now().UnixNano())
		s.outstanding.Add(-1)
		if err != nil {
			if errors.Is(err, context.Canceled) && context.Cause(s.stall) != nil {
				err = context.Cause(s.stall)
			}
			if errors.Is(err, kerr.InvalidTimestamp) {
				err = fmt.Errorf("%w (record timestamp %s; --timestamp now stamps the send time)", err, rec.Timestamp.UTC().Format(time.RFC3339))
			}
			select {
			case s.errc <- fmt.Errorf("kafka %s: produce to %s: %w", s.ep, topic, err):
			default:
			}
		}
	})
	return nil
}

func (s *kafkaSink) Flush() error {
	// An idempotent producer never fails a request it sent and got no
	// answer to, so the stall watchdog must end the wait itself; Close
	// then fails what is left.
	if err := s.cl.Flush(s.stall); err != nil {
		if cause := context.Cause(s.stall); cause != nil && s.first == nil {
			s.first = fmt.Errorf("kafka %s: produce: %w", s.ep, cause)
		}
		if s.first != nil {
			return s.first
		}
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
	s.stop(nil)
	<-s.watchDone
	s.cl.Close()
	return err
}
