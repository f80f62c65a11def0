package broker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/log"
)

// maxTopicNameLen is Kafka's: 255 less room for the partition suffix and a
// deletion marker in the folder name.
const maxTopicNameLen = 249

// validTopicName applies Kafka's rules: 1 to 249 of [a-zA-Z0-9._-], not "."
// or "..".
func validTopicName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty topic name: %w", kerr.InvalidTopicException)
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q: %w", name, kerr.InvalidTopicException)
	case len(name) > maxTopicNameLen:
		return fmt.Errorf("topic name of %d characters, over %d: %w", len(name), maxTopicNameLen, kerr.InvalidTopicException)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q: character %q not in [a-zA-Z0-9._-]: %w", name, c, kerr.InvalidTopicException)
		}
	}
	return nil
}

// TopicNames lists every topic, sorted.
func (b *Broker) TopicNames(ctx context.Context) []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.topicNamesLocked()
}

func (b *Broker) lookup(name string) (*topic, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, ErrClosed
	}
	t := b.topics[name]
	if t == nil {
		return nil, kerr.UnknownTopicOrPartition
	}
	return t, nil
}

func (b *Broker) partition(name string, index int32) (*partition, error) {
	t, err := b.lookup(name)
	if err != nil {
		return nil, err
	}
	if index < 0 || int(index) >= len(t.partitions) {
		return nil, kerr.UnknownTopicOrPartition
	}
	p := t.partitions[index]
	if p.offline != nil {
		return nil, p.offlineError()
	}
	return p, nil
}

// Topic returns a topic's id and partition count, creating the topic with
// num.partitions when it is missing, autoCreate is true and
// auto.create.topics.enable is set.
func (b *Broker) Topic(ctx context.Context, name string, autoCreate bool) (id [16]byte, partitions int32, err error) {
	if err := validTopicName(name); err != nil {
		return id, 0, err
	}
	t, err := b.lookup(name)
	if errors.Is(err, kerr.UnknownTopicOrPartition) && autoCreate && b.cfg.AutoCreateTopics {
		t, err = b.createTopic(name, -1, nil, false)
		if errors.Is(err, kerr.TopicAlreadyExists) {
			t, err = b.lookup(name)
		}
	}
	if err != nil {
		return id, 0, err
	}
	return t.id, int32(len(t.partitions)), nil
}

// TopicID returns a topic's id without creating it.
func (b *Broker) TopicID(name string) ([16]byte, error) {
	t, err := b.lookup(name)
	if err != nil {
		return [16]byte{}, err
	}
	return t.id, nil
}

// CreateTopic creates a topic. partitions < 0 means num.partitions; configs
// are topic-level overrides by Kafka name (a nil value is left to the
// default). Bad configs are kerr.InvalidConfig wrapped with the key.
func (b *Broker) CreateTopic(ctx context.Context, name string, partitions int32, configs map[string]*string, validateOnly bool) error {
	overrides := map[string]string{}
	for k, v := range configs {
		if v != nil {
			overrides[k] = *v
		}
	}
	_, err := b.createTopic(name, partitions, overrides, validateOnly)
	return err
}

func (b *Broker) createTopic(name string, partitions int32, overrides map[string]string, validateOnly bool) (*topic, error) {
	if err := validTopicName(name); err != nil {
		return nil, err
	}
	if partitions < 0 {
		partitions = b.cfg.NumPartitions
	}
	if partitions == 0 || partitions > maxPartitions {
		return nil, fmt.Errorf("%d partitions: must be in [1, %d]: %w", partitions, maxPartitions, kerr.InvalidPartitions)
	}
	if len(overrides) == 0 {
		overrides = nil
	}
	if _, err := b.cfg.resolveTopic(overrides); err != nil {
		return nil, fmt.Errorf("%v: %w", err, kerr.InvalidConfig)
	}

	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	b.mu.RLock()
	closed, exists, collision := b.closed, b.topics[name] != nil, b.collidingLocked(name)
	b.mu.RUnlock()
	switch {
	case closed:
		return nil, ErrClosed
	case exists:
		return nil, kerr.TopicAlreadyExists
	case collision != "":
		// Kafka refuses names equal but for '.' and '_': its metric
		// names would collide.
		return nil, fmt.Errorf("topic %q collides with %q ('.' and '_' are one in metric names): %w", name, collision, kerr.InvalidTopicException)
	case validateOnly:
		return nil, nil
	}
	// Leftovers of an earlier topic of this name go first: at Open a
	// `.deleted` folder deletes the topic of its name.
	if err := b.removeDeletedLeftovers(name); err != nil {
		return nil, fmt.Errorf("create topic %q: %w", name, err)
	}
	if n := b.recordsOnDisk(name); n > partitions {
		b.logger.Warn("topic created with the partitions its folders already hold",
			zap.String("topic", name), zap.Int32("requested", partitions), zap.Int32("partitions", n))
		partitions = n
	}

	id := newUUID()
	r := topicRecord{ID: hex.EncodeToString(id[:]), Partitions: partitions, Configs: overrides, Created: b.now().UTC()}
	if err := putTopic(b.disk, b.db, name, r); err != nil {
		return nil, fmt.Errorf("create topic %q: store metadata: %w", name, err)
	}
	t, err := b.openTopic(name, r, 0, true)
	if err != nil {
		if derr := deleteTopicRecord(b.db, name); derr != nil {
			err = errors.Join(err, fmt.Errorf("undo metadata: %w", derr))
		}
		return nil, fmt.Errorf("create topic %q: %w", name, err)
	}
	b.mu.Lock()
	b.topics[name] = t
	b.mu.Unlock()
	b.logger.Info("topic created", zap.String("topic", name), zap.Int32("partitions", partitions),
		zap.String("topic_id", r.ID), zap.Any("configs", overrides))
	return t, nil
}

func (b *Broker) collidingLocked(name string) string {
	if !strings.ContainsAny(name, "._") {
		return ""
	}
	norm := strings.ReplaceAll(name, ".", "_")
	for other := range b.topics {
		if other != name && strings.ReplaceAll(other, ".", "_") == norm {
			return other
		}
	}
	return ""
}

// DeleteTopic closes a topic's logs, renames their folders with the
// `.deleted` suffix (synced), deletes its metadata (synced), then removes
// the folders. A crash after the renames is finished by the next Open
// (finishDeletions), so a folder holding records without metadata is never
// the leftover of a deletion: Open refuses it as metadata damage.
func (b *Broker) DeleteTopic(ctx context.Context, name string) error {
	if err := validTopicName(name); err != nil {
		return err
	}
	if name == consumerOffsetsTopic {
		return errInternalTopic(name)
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	t, err := b.lookup(name)
	if err != nil {
		return err
	}
	// From the first rename on, the deletion is decided: what a crash or
	// an error leaves, the next Open finishes.
	var errs []error
	for _, p := range t.partitions {
		p.mu.Lock()
		p.removed = true
		if p.offline == nil {
			p.log.Close() // its error is moot: the log is going
		}
		p.mu.Unlock()
		dir := b.partitionDir(name, p.index)
		if err := os.Rename(dir, dir+deletedSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("rename %s-%d: %w", name, p.index, err))
		}
	}
	if err := (log.OSFS{}).SyncDir(b.cfg.DataDir); err != nil {
		errs = append(errs, fmt.Errorf("sync data dir: %w", err))
	}
	b.mu.Lock()
	delete(b.topics, name)
	b.mu.Unlock()
	if c := b.producers.Load(); c != nil {
		(*c).DropTopic(name)
	}
	if err := deleteTopicRecord(b.db, name); err != nil {
		errs = append(errs, fmt.Errorf("delete metadata: %w", err))
	} else if err := b.removeDeletedLeftovers(name); err != nil {
		errs = append(errs, err)
	}
	if err = errors.Join(errs...); err != nil {
		b.logger.Error("topic deleted; finishing the deletion on disk failed (the next start finishes it)",
			zap.String("topic", name), zap.Error(err))
		return nil // the topic is gone from this broker
	}
	b.logger.Info("topic deleted", zap.String("topic", name), zap.Int("partitions", len(t.partitions)))
	return nil
}

// CreatePartitions grows a topic to count partitions (never shrinks it).
func (b *Broker) CreatePartitions(ctx context.Context, name string, count int32, validateOnly bool) error {
	if err := validTopicName(name); err != nil {
		return err
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	t, err := b.lookup(name)
	if err != nil {
		return err
	}
	have := int32(len(t.partitions))
	switch {
	case count < have:
		return fmt.Errorf("topic %q has %d partitions; cannot go down to %d: %w", name, have, count, kerr.InvalidPartitions)
	case count == have:
		return fmt.Errorf("topic %q already has %d partitions: %w", name, have, kerr.InvalidPartitions)
	case count > maxPartitions:
		return fmt.Errorf("%d partitions: over %d: %w", count, maxPartitions, kerr.InvalidPartitions)
	case validateOnly:
		return nil
	}
	r := topicRecord{ID: hex.EncodeToString(t.id[:]), Partitions: count, Configs: t.overrides, Created: t.created}
	if err := putTopic(b.disk, b.db, name, r); err != nil {
		return fmt.Errorf("create partitions %q: store metadata: %w", name, err)
	}
	grown, err := b.openTopic(name, r, have, true)
	if err != nil {
		r.Partitions = have
		if perr := putTopic(b.disk, b.db, name, r); perr != nil {
			err = errors.Join(err, fmt.Errorf("undo metadata: %w", perr))
		}
		return fmt.Errorf("create partitions %q: %w", name, err)
	}
	grown.partitions = append(append([]*partition(nil), t.partitions...), grown.partitions...)
	b.mu.Lock()
	b.topics[name] = grown
	b.mu.Unlock()
	b.logger.Info("partitions created", zap.String("topic", name), zap.Int32("from", have), zap.Int32("to", count))
	return nil
}

// removeDeletedLeftovers removes the `<name>-<partition>.deleted` folders.
func (b *Broker) removeDeletedLeftovers(name string) error {
	entries, err := os.ReadDir(b.cfg.DataDir)
	if err != nil {
		return err
	}
	removed := false
	for _, e := range entries {
		stem, ok := strings.CutSuffix(e.Name(), deletedSuffix)
		if topic, _, pok := ParsePartitionDir(stem); !ok || !pok || topic != name {
			continue
		}
		if err := os.RemoveAll(filepath.Join(b.cfg.DataDir, e.Name())); err != nil {
			return fmt.Errorf("remove %s: %w", e.Name(), err)
		}
		removed = true
	}
	if removed {
		return (log.OSFS{}).SyncDir(b.cfg.DataDir)
	}
	return nil
}

// recordsOnDisk is the partition count a new topic needs to own the
// folders of its name that hold records (0: none do): Open refuses such
// folders, so they appear only when put there while the broker runs.
func (b *Broker) recordsOnDisk(name string) int32 {
	folders, _ := partitionFolders(b.cfg.DataDir)
	n := int32(0)
	for _, i := range folders[name] {
		if holdsRecords(b.partitionDir(name, i)) {
			n = i + 1
		}
	}
	return n
}

// consumerOffsetsTopic is Kafka's internal topic of committed offsets. Here
// committed offsets live in the metadata store (see group_persist.go), but
// the topic exists, empty and read-only, because clients and tools look for
// it (franz-go's regex consumer skips it as internal; admin tools list it).
const consumerOffsetsTopic = "__consumer_offsets"

func (b *Broker) ensureConsumerOffsetsTopic() error {
	if _, err := b.lookup(consumerOffsetsTopic); err == nil {
		return nil
	}
	if _, err := b.createTopic(consumerOffsetsTopic, 1, nil, false); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create %s: %w", consumerOffsetsTopic, err)
	}
	return nil
}

// errInternalTopic refuses writes and deletion of an internal topic.
func errInternalTopic(name string) error {
	return fmt.Errorf("%s is an internal topic: %w", name, kerr.InvalidTopicException)
}
