package broker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/log"
)

// AlterTopicConfigs changes a topic's config overrides, as
// IncrementalAlterConfigs (replace false: each change SETs, DELETEs,
// APPENDs to or SUBTRACTs from one key) and AlterConfigs (replace true:
// the changes, all SETs, become the topic's whole set of overrides) ask.
//
// The overrides are checked as the YAML file's settings are (the same
// parsers and ranges, resolveTopic), stored with pebble.Sync in the topic's
// record (doc.go) before the answer, and in force at once: produce reads
// max.message.bytes and the timestamp bounds from the topic published here,
// and every partition log takes the new segment, retention, cleanup and
// flush settings (log.Reconfigure). Kafka's
// configs that ztfbroker does not implement (kafka_configs.go) accept only
// their default. Problems are kerr.InvalidConfig (or InvalidRequest for a
// key named twice) wrapped with a message naming the key.
func (b *Broker) AlterTopicConfigs(ctx context.Context, name string, changes []kmsg.IncrementalAlterConfigsRequestResourceConfig, replace, validateOnly bool) error {
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
	next := map[string]string{}
	if !replace {
		maps.Copy(next, t.overrides)
	}
	seen := map[string]bool{}
	var errs []error
	for _, c := range changes {
		if seen[c.Name] {
			return fmt.Errorf("%s named twice in one request: %w", c.Name, kerr.InvalidRequest)
		}
		seen[c.Name] = true
		if err := applyChange(next, &t.cfg, c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%v: %w", err, kerr.InvalidConfig)
	}
	tc, err := b.cfg.resolveTopic(next)
	if err != nil {
		return fmt.Errorf("%v: %w", err, kerr.InvalidConfig)
	}
	if validateOnly {
		return nil
	}
	if len(next) == 0 {
		next = nil
	}
	r := topicRecord{ID: hex.EncodeToString(t.id[:]), Partitions: int32(len(t.partitions)), Configs: next, Created: t.created}
	if err := putTopic(b.disk, b.db, name, r); err != nil {
		return fmt.Errorf("alter configs of %q: store metadata: %w", name, err)
	}
	altered := &topic{name: name, id: t.id, created: t.created, overrides: next, cfg: tc, partitions: t.partitions}
	b.mu.Lock()
	b.topics[name] = altered
	b.mu.Unlock()
	lc := logConfig(tc.log)
	for _, p := range t.partitions {
		if p.offline != nil {
			continue // opened with the stored configs at the next start
		}
		if err := p.log.Reconfigure(lc); err != nil && !errors.Is(err, log.ErrClosed) {
			// Stored and checked above, so only a bug gets here: the
			// log keeps its old settings until the next start.
			b.logger.Error("partition log refused the altered configs until restart",
				zap.String("topic", name), zap.Int32("partition", p.index), zap.Error(err))
		}
	}
	b.logger.Info("topic configs altered", zap.String("topic", name), zap.Any("configs", next))
	return nil
}

// applyChange applies one IncrementalAlterConfigs change to overrides;
// cur is the topic's config in force, which APPEND and SUBTRACT start from.
func applyChange(overrides map[string]string, cur *topicConfig, c kmsg.IncrementalAlterConfigsRequestResourceConfig) error {
	k := findTopicKey(c.Name)
	if k == nil {
		if d := findKafkaDefault(c.Name); d != nil {
			return d.accept(c)
		}
		return fmt.Errorf("%s: unknown topic config", c.Name)
	}
	switch c.Op {
	case kmsg.IncrementalAlterConfigOpSet:
		if c.Value == nil {
			return fmt.Errorf("%s: SET without a value", c.Name)
		}
		overrides[c.Name] = *c.Value
	case kmsg.IncrementalAlterConfigOpDelete:
		delete(overrides, c.Name)
	case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
		if !isList(k) {
			return fmt.Errorf("%s: %s applies to list configs only", c.Name, c.Op)
		}
		if c.Value == nil {
			return fmt.Errorf("%s: %s without a value", c.Name, c.Op)
		}
		items := splitList(k.get(cur))
		for _, v := range splitList(*c.Value) {
			has := slices.Contains(items, v)
			switch {
			case c.Op == kmsg.IncrementalAlterConfigOpAppend && !has:
				items = append(items, v)
			case c.Op == kmsg.IncrementalAlterConfigOpSubtract && has:
				items = slices.DeleteFunc(items, func(s string) bool { return s == v })
			}
		}
		overrides[c.Name] = strings.Join(items, ",")
	default:
		return fmt.Errorf("%s: unknown operation %d", c.Name, c.Op)
	}
	return nil
}

// isList says whether a key's value is a comma-separated list, which
// APPEND and SUBTRACT change item by item (cleanup.policy in Kafka).
func isList(k *topicKey) bool { return k.typ == kmsg.ConfigTypeList || k.name == "cleanup.policy" }

func splitList(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
