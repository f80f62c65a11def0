package protocol

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// memBackend is a small in-memory Backend for the listener's tests: batches
// kept as sent with their base offset patched in, like the real log.
type memBackend struct {
	mu          sync.Mutex
	topics      map[string]*memTopic
	defaultPart int32
	maxBatch    int // message.max.bytes; 0 = unlimited
	// stuck makes Produce wait for its context, like a log whose disk hangs.
	stuck bool
}

type memTopic struct {
	id     [16]byte
	parts  []*memPartition
	config map[string]*string
}

type memPartition struct {
	batches  [][]byte // each a whole v2 batch
	hw       int64
	start    int64
	changed  chan struct{}
	maxTS    int64
	maxTSOff int64
}

func newMemBackend() *memBackend {
	return &memBackend{topics: make(map[string]*memTopic), defaultPart: 1}
}

func (m *memBackend) ClusterID() string { return "test-cluster" }

func (m *memBackend) TopicNames(ctx context.Context) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.topics))
	for n := range m.topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (m *memBackend) createLocked(name string, n int32, cfg map[string]*string) *memTopic {
	t := &memTopic{config: cfg}
	rand.Read(t.id[:])
	for range n {
		t.parts = append(t.parts, &memPartition{changed: make(chan struct{}), maxTS: -1, maxTSOff: -1})
	}
	m.topics[name] = t
	return t
}

func validName(name string) bool {
	return name != "" && len(name) < 250 && !strings.ContainsAny(name, " /\\\x00") && name != "." && name != ".."
}

func (m *memBackend) Topic(ctx context.Context, name string, autoCreate bool) ([16]byte, int32, error) {
	if !validName(name) {
		return [16]byte{}, 0, kerr.InvalidTopicException
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.topics[name]
	if !ok {
		if !autoCreate {
			return [16]byte{}, 0, kerr.UnknownTopicOrPartition
		}
		t = m.createLocked(name, m.defaultPart, nil)
	}
	return t.id, int32(len(t.parts)), nil
}

func (m *memBackend) CreateTopic(ctx context.Context, name string, partitions int32, configs map[string]*string, validateOnly bool) error {
	if !validName(name) {
		return kerr.InvalidTopicException
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.topics[name]; ok {
		return kerr.TopicAlreadyExists
	}
	if partitions < 0 {
		partitions = m.defaultPart
	}
	if partitions > 1000 {
		return kerr.InvalidPartitions
	}
	if !validateOnly {
		m.createLocked(name, partitions, configs)
	}
	return nil
}

func (m *memBackend) DeleteTopic(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.topics[name]; !ok {
		return kerr.UnknownTopicOrPartition
	}
	delete(m.topics, name)
	return nil
}

func (m *memBackend) CreatePartitions(ctx context.Context, name string, count int32, validateOnly bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.topics[name]
	if !ok {
		return kerr.UnknownTopicOrPartition
	}
	if int(count) <= len(t.parts) || count > 1000 {
		return kerr.InvalidPartitions
	}
	if !validateOnly {
		for len(t.parts) < int(count) {
			t.parts = append(t.parts, &memPartition{changed: make(chan struct{}), maxTS: -1, maxTSOff: -1})
		}
	}
	return nil
}

func (m *memBackend) TopicConfigs(ctx context.Context, name string, keys []string) ([]kmsg.DescribeConfigsResponseResourceConfig, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.topics[name]
	if !ok {
		return nil, kerr.UnknownTopicOrPartition
	}
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, k := range []string{"retention.ms", "segment.bytes"} {
		if keys != nil && !contains(keys, k) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = k
		c.Value = kmsg.StringPtr("604800000")
		c.Source = kmsg.ConfigSourceDefaultConfig
		if v, ok := t.config[k]; ok {
			c.Value, c.Source = v, kmsg.ConfigSourceDynamicTopicConfig
		}
		out = append(out, c)
	}
	return out, nil
}

func (m *memBackend) BrokerConfigs(ctx context.Context, keys []string) []kmsg.DescribeConfigsResponseResourceConfig {
	c := kmsg.NewDescribeConfigsResponseResourceConfig()
	c.Name, c.Value, c.Source = "num.partitions", kmsg.StringPtr("1"), kmsg.ConfigSourceDefaultConfig
	if keys != nil && !contains(keys, c.Name) {
		return nil
	}
	return []kmsg.DescribeConfigsResponseResourceConfig{c}
}

// AlterTopicConfigs knows retention.ms and segment.bytes, as TopicConfigs.
func (m *memBackend) AlterTopicConfigs(ctx context.Context, name string, changes []kmsg.IncrementalAlterConfigsRequestResourceConfig, replace, validateOnly bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.topics[name]
	if !ok {
		return kerr.UnknownTopicOrPartition
	}
	next := map[string]*string{}
	if !replace {
		maps.Copy(next, t.config)
	}
	for _, c := range changes {
		if c.Name != "retention.ms" && c.Name != "segment.bytes" {
			return fmt.Errorf("%s: unknown topic config: %w", c.Name, kerr.InvalidConfig)
		}
		switch c.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			next[c.Name] = c.Value
		case kmsg.IncrementalAlterConfigOpDelete:
			delete(next, c.Name)
		default:
			return fmt.Errorf("%s: %s: %w", c.Name, c.Op, kerr.InvalidConfig)
		}
	}
	if !validateOnly {
		t.config = next
	}
	return nil
}

func (m *memBackend) LogDir(ctx context.Context, topics []kmsg.DescribeLogDirsRequestTopic) kmsg.DescribeLogDirsResponseDir {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := kmsg.NewDescribeLogDirsResponseDir()
	d.Dir = "/mem"
	for _, name := range slices.Sorted(maps.Keys(m.topics)) {
		dt := kmsg.NewDescribeLogDirsResponseDirTopic()
		dt.Topic = name
		for i := range m.topics[name].parts {
			dp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
			dp.Partition = int32(i)
			dt.Partitions = append(dt.Partitions, dp)
		}
		d.Topics = append(d.Topics, dt)
	}
	return d
}

func (m *memBackend) Producers(ctx context.Context, topic string, partition int32) ([]kmsg.DescribeProducersResponseTopicPartitionActiveProducer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.topics[topic]
	if !ok || partition < 0 || int(partition) >= len(t.parts) {
		return nil, kerr.UnknownTopicOrPartition
	}
	return nil, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (m *memBackend) partLocked(topic string, partition int32) (*memPartition, error) {
	t, ok := m.topics[topic]
	if !ok || partition < 0 || int(partition) >= len(t.parts) {
		return nil, kerr.UnknownTopicOrPartition
	}
	return t.parts[partition], nil
}

func (m *memBackend) Produce(ctx context.Context, topic string, partition int32, batches []byte) (int64, int64, error) {
	m.mu.Lock()
	if m.stuck {
		m.mu.Unlock()
		<-ctx.Done()
		return 0, 0, ctx.Err()
	}
	defer m.mu.Unlock()
	p, err := m.partLocked(topic, partition)
	if err != nil {
		return 0, 0, err
	}
	base := p.hw
	for b := batches; len(b) > 0; {
		n := 12 + int(binary.BigEndian.Uint32(b[8:]))
		if m.maxBatch > 0 && n > m.maxBatch {
			return 0, 0, kerr.MessageTooLarge
		}
		b = b[n:]
	}
	for b := batches; len(b) > 0; {
		n := 12 + int(binary.BigEndian.Uint32(b[8:]))
		batch := append([]byte(nil), b[:n]...)
		binary.BigEndian.PutUint64(batch, uint64(p.hw))
		if ts := int64(binary.BigEndian.Uint64(batch[35:])); ts > p.maxTS {
			p.maxTS, p.maxTSOff = ts, p.hw+int64(binary.BigEndian.Uint32(batch[23:]))
		}
		p.hw += int64(binary.BigEndian.Uint32(batch[23:])) + 1
		p.batches = append(p.batches, batch)
		b = b[n:]
	}
	close(p.changed)
	p.changed = make(chan struct{})
	return base, p.start, nil
}

func (m *memBackend) Fetch(ctx context.Context, topic string, partition int32, offset int64, maxBytes int, dst []byte) ([]byte, int64, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.partLocked(topic, partition)
	if err != nil {
		return dst, 0, 0, err
	}
	if offset < p.start || offset > p.hw {
		return dst, p.hw, p.start, kerr.OffsetOutOfRange
	}
	for _, b := range p.batches {
		base := int64(binary.BigEndian.Uint64(b))
		last := base + int64(binary.BigEndian.Uint32(b[23:]))
		if last < offset || last < p.start {
			continue
		}
		if len(dst) > 0 && len(dst)+len(b) > maxBytes {
			break
		}
		dst = append(dst, b...)
	}
	return dst, p.hw, p.start, nil
}

func (m *memBackend) Changed(ctx context.Context, topic string, partition int32) (<-chan struct{}, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.partLocked(topic, partition)
	if err != nil {
		return nil, err
	}
	return p.changed, nil
}

func (m *memBackend) Offsets(ctx context.Context, topic string, partition int32) (int64, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.partLocked(topic, partition)
	if err != nil {
		return 0, 0, err
	}
	return p.start, p.hw, nil
}

func (m *memBackend) ListOffset(ctx context.Context, topic string, partition int32, ts int64) (int64, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.partLocked(topic, partition)
	if err != nil {
		return 0, 0, err
	}
	switch ts {
	case -1:
		return p.hw, -1, nil
	case -2:
		return p.start, -1, nil
	case -3:
		return p.maxTSOff, p.maxTS, nil
	}
	// Batch granularity is enough here: one record per batch in the tests
	// that search by time.
	for _, b := range p.batches {
		if maxTS := int64(binary.BigEndian.Uint64(b[35:])); maxTS >= ts {
			return int64(binary.BigEndian.Uint64(b)), maxTS, nil
		}
	}
	return -1, -1, nil
}

func (m *memBackend) DeleteRecords(ctx context.Context, topic string, partition int32, before int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.partLocked(topic, partition)
	if err != nil {
		return 0, err
	}
	if before > p.hw || before < 0 {
		return 0, kerr.OffsetOutOfRange
	}
	if before > p.start {
		p.start = before
	}
	return p.start, nil
}
