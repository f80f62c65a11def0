package filter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultSpecTopic holds the filters: one partition, a record per change
// keyed by the filter's name, compacted so that the latest record of each
// name is kept.
const DefaultSpecTopic = "__ztfbroker_filters"

// EnsureSpecTopic creates the specs topic if it is missing: one
// partition, cleanup.policy compact.
func EnsureSpecTopic(ctx context.Context, cl *kgo.Client, topic string) error {
	compact := "compact"
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("filter: create %s: %w", topic, err)
	}
	return nil
}

// Save stores spec after checking it and compiling its expression with
// c: a filter that does not compile is never stored.
func Save(ctx context.Context, cl *kgo.Client, topic string, c *Compiler, spec Spec) error {
	if err := spec.Validate(c); err != nil {
		return err
	}
	spec.BackfillUntil, spec.Backfilled = nil, false
	if spec.Start == StartEarliest {
		until, err := cutOver(ctx, kadm.NewClient(cl), spec)
		if err != nil {
			return err
		}
		spec.BackfillUntil = until
	}
	return put(ctx, cl, topic, spec.Name, spec.Encode())
}

// cutOver is the end offset of every partition of spec's source topics:
// where the backfill of a StartEarliest filter ends and the group takes
// over (a topic created later is the group's from its start).
func cutOver(ctx context.Context, adm *kadm.Client, spec Spec) (map[string]int64, error) {
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("filter: list topics: %w", err)
	}
	var topics []string
	for _, t := range listed.Names() {
		if !strings.HasPrefix(t, "__") && !strings.HasPrefix(t, TopicPrefix) && spec.matches(t) {
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		return nil, nil
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("filter: end offsets: %w", err)
	}
	until := map[string]int64{}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("filter: end of %s/%d: %w", o.Topic, o.Partition, o.Err))
		} else if o.Offset > 0 {
			until[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.Offset
		}
	})
	return until, errors.Join(errs...)
}

// Remove stores the removal of the named filter. Its topic stays, with
// the matches it had, until retention or a topic deletion.
func Remove(ctx context.Context, cl *kgo.Client, topic, name string) error {
	if err := put(ctx, cl, topic, name, nil); err != nil {
		return err
	}
	// The runner's state of it no longer applies (see runnerState);
	// this only lets compaction drop it.
	return put(ctx, cl, topic, name+stateKeySuffix, nil)
}

// stateKeySuffix keys a record of the runner's state of a filter: key
// "<name>#state" (a name has no '#'), value a runnerState.
const stateKeySuffix = "#state"

// runnerState is what a runner stores of a filter, apart from the user's
// spec: paused (and why) and backfilled. It names the offset of the spec
// record it applies to, and a reader applies it only while that record
// is the filter's latest: a state written while a user removed or saved
// the filter again never brings the old filter back, nor pauses the new
// one. (Kafka has no compare-and-set; the single partition's order is
// the arbiter, the same for every reader.)
type runnerState struct {
	Of         int64  `json:"of"`
	Paused     bool   `json:"paused,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Backfilled bool   `json:"backfilled,omitempty"`
}

// stateRecord is the record storing the runner's state of s.
func stateRecord(topic string, s Spec) *kgo.Record {
	v, _ := json.Marshal(runnerState{Of: s.offset, Paused: s.Paused, Reason: s.Reason, Backfilled: s.Backfilled})
	return &kgo.Record{Topic: topic, Partition: 0, Key: []byte(s.Name + stateKeySuffix), Value: v}
}

func put(ctx context.Context, cl *kgo.Client, topic, name string, value []byte) error {
	if err := EnsureSpecTopic(ctx, cl, topic); err != nil {
		return err
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Key: []byte(name), Value: value}).FirstErr(); err != nil {
		return fmt.Errorf("filter: store %s: %w", name, err)
	}
	return nil
}

// List reads every stored filter, sorted by name. opts reach the broker
// (seed brokers, login).
func List(ctx context.Context, topic string, opts ...kgo.Opt) ([]Spec, error) {
	f, err := followSpecs(ctx, topic, opts...)
	if err != nil {
		return nil, err
	}
	defer f.close()
	m, _ := f.snapshot()
	out := make([]Spec, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// specFeed follows the specs topic: the latest Spec of every filter.
type specFeed struct {
	cl   *kgo.Client
	done chan struct{}

	mu      sync.Mutex
	specs   map[string]Spec        // as users stored them, with their offsets
	states  map[string]runnerState // by filter name
	version int
	err     error
}

// followSpecs reads the specs topic to its end and goes on following it
// until close.
func followSpecs(ctx context.Context, topic string, opts ...kgo.Opt) (*specFeed, error) {
	adm, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	// A missing topic is no filters yet: the first Save creates it.
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("filter: end of %s: %w", topic, err)
	}
	end := int64(0)
	if o, ok := ends.Lookup(topic, 0); ok && !errors.Is(o.Err, kerr.UnknownTopicOrPartition) {
		if o.Err != nil {
			return nil, fmt.Errorf("filter: end of %s: %w", topic, o.Err)
		}
		end = o.Offset
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, opts...), kgo.MetadataMinAge(500*time.Millisecond),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		return nil, err
	}
	f := &specFeed{cl: cl, done: make(chan struct{}), specs: map[string]Spec{}, states: map[string]runnerState{}}
	caught := make(chan struct{})
	go f.run(end, caught)
	select {
	case <-caught:
		return f, nil
	case <-ctx.Done():
		f.close()
		return nil, fmt.Errorf("filter: read %s: %w", topic, ctx.Err())
	}
}

func (f *specFeed) run(end int64, caught chan struct{}) {
	defer close(f.done)
	if end == 0 {
		close(caught)
		caught = nil
	}
	for {
		fs := f.cl.PollFetches(context.Background())
		if fs.IsClientClosed() {
			return
		}
		fs.EachError(func(_ string, _ int32, err error) {
			f.mu.Lock()
			f.err = err
			f.mu.Unlock()
		})
		fs.EachRecord(func(r *kgo.Record) {
			f.mu.Lock()
			key := string(r.Key)
			name, isState := strings.CutSuffix(key, stateKeySuffix)
			var st runnerState
			switch {
			case isState && r.Value == nil:
				delete(f.states, name)
			case isState:
				if json.Unmarshal(r.Value, &st) == nil {
					f.states[name] = st
				}
			case r.Value == nil:
				delete(f.specs, key)
			default:
				if s, err := DecodeSpec(r.Value); err == nil && s.Name == key {
					s.offset = r.Offset
					f.specs[s.Name] = s
				}
			}
			f.version++
			f.mu.Unlock()
			if caught != nil && r.Offset+1 >= end {
				close(caught)
				caught = nil
			}
		})
	}
}

// snapshot returns a copy of the specs and their version, which changes
// with every record read.
func (f *specFeed) snapshot() (map[string]Spec, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[string]Spec, len(f.specs))
	for k, v := range f.specs {
		if st, ok := f.states[k]; ok && st.Of == v.offset {
			v.Paused, v.Reason, v.Backfilled = v.Paused || st.Paused, st.Reason, v.Backfilled || st.Backfilled
		}
		m[k] = v
	}
	return m, f.version
}

func (f *specFeed) changed(since int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version != since
}

func (f *specFeed) close() {
	f.cl.Close()
	<-f.done
}
