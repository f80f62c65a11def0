package broker

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaTopicConfigNames are Apache Kafka 4.1.1's topic configs
// (LogConfig.configNames() less internal.segment.bytes), which
// DescribeConfigs must list for every topic.
var kafkaTopicConfigNames = []string{
	"cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type", "compression.zstd.level",
	"delete.retention.ms", "file.delete.delay.ms", "flush.messages", "flush.ms",
	"follower.replication.throttled.replicas", "index.interval.bytes", "leader.replication.throttled.replicas",
	"local.retention.bytes", "local.retention.ms", "max.compaction.lag.ms", "max.message.bytes",
	"message.timestamp.after.max.ms", "message.timestamp.before.max.ms", "message.timestamp.type",
	"min.cleanable.dirty.ratio", "min.compaction.lag.ms", "min.insync.replicas", "preallocate",
	"remote.log.copy.disable", "remote.log.delete.on.disable", "remote.storage.enable", "retention.bytes",
	"retention.ms", "segment.bytes", "segment.index.bytes", "segment.jitter.ms", "segment.ms",
	"unclean.leader.election.enable",
}

func change(name string, op kmsg.IncrementalAlterConfigOp, value *string) kmsg.IncrementalAlterConfigsRequestResourceConfig {
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Op, c.Value = name, op, value
	return c
}

func set(name, value string) kmsg.IncrementalAlterConfigsRequestResourceConfig {
	return change(name, kmsg.IncrementalAlterConfigOpSet, &value)
}

// TestAlterTopicConfigs alters a topic's configs as IncrementalAlterConfigs
// and AlterConfigs do: bad values are refused with the YAML file's own
// messages and change nothing; good ones are in force at once
// (max.message.bytes on the next produce, segment.bytes on the next append,
// retention.bytes at the next retention pass), listed as the topic's
// overrides, and still there after a restart.
func TestAlterTopicConfigs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	b := e.open()
	if err := b.CreateTopic(ctx, "night", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	alter := func(replace, validateOnly bool, cs ...kmsg.IncrementalAlterConfigsRequestResourceConfig) error {
		return b.AlterTopicConfigs(ctx, "night", cs, replace, validateOnly)
	}
	values := func() map[string]string {
		t.Helper()
		cs, err := b.TopicConfigs(ctx, "night", nil)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, c := range cs {
			m[c.Name] = *c.Value
			if c.Source == kmsg.ConfigSourceDynamicTopicConfig {
				m[c.Name] += " (topic)"
			}
		}
		return m
	}
	before := values()

	// The YAML file's message for the same value, word for word.
	yamlCfg := DefaultConfig()
	yamlErr := yamlCfg.ApplySettings(map[string]string{"segment.bytes": "1000"})
	for _, bad := range []struct {
		name    string
		changes []kmsg.IncrementalAlterConfigsRequestResourceConfig
		code    *kerr.Error
		says    string
	}{
		{"out of range as in YAML", []kmsg.IncrementalAlterConfigsRequestResourceConfig{set("retention.bytes", "5"), set("segment.bytes", "1000")},
			kerr.InvalidConfig, strings.TrimPrefix(yamlErr.Error(), `segment.bytes "1000": `)},
		{"not a number", []kmsg.IncrementalAlterConfigsRequestResourceConfig{set("retention.ms", "a week")}, kerr.InvalidConfig, "retention.ms"},
		{"unknown", []kmsg.IncrementalAlterConfigsRequestResourceConfig{set("no.such", "1")}, kerr.InvalidConfig, "no.such: unknown topic config"},
		{"Kafka's, not implemented", []kmsg.IncrementalAlterConfigsRequestResourceConfig{set("min.insync.replicas", "2")}, kerr.InvalidConfig, `keeps Kafka's default "1"`},
		{"append to a number", []kmsg.IncrementalAlterConfigsRequestResourceConfig{change("retention.ms", kmsg.IncrementalAlterConfigOpAppend, kmsg.StringPtr("1"))}, kerr.InvalidConfig, "list configs only"},
		{"named twice", []kmsg.IncrementalAlterConfigsRequestResourceConfig{set("retention.ms", "1"), set("retention.ms", "2")}, kerr.InvalidRequest, "twice"},
	} {
		err := alter(false, false, bad.changes...)
		if !isKerr(err, bad.code) || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("%s: %v, want %v saying %q", bad.name, err, bad.code, bad.says)
		}
	}
	if err := alter(false, true, set("retention.bytes", "20000")); err != nil {
		t.Fatalf("validate only: %v", err)
	}
	if got := values(); !sameConfigs(got, before) {
		t.Fatalf("refused or validate-only changes changed the configs:\n%v\nwant\n%v", got, before)
	}

	// Accepted: Kafka's unimplemented configs at their default, a list
	// APPEND that changes nothing, and real changes.
	if err := alter(false, false, set("retention.bytes", "3000000"), set("segment.bytes", "1048576"), set("max.message.bytes", "200000"), set("flush.ms", "1000"),
		set("min.insync.replicas", "1"), change("unclean.leader.election.enable", kmsg.IncrementalAlterConfigOpDelete, nil),
		change("cleanup.policy", kmsg.IncrementalAlterConfigOpAppend, kmsg.StringPtr("delete"))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Produce(ctx, "night", 0, e.batch(1, 1, 300_000)); !isKerr(err, kerr.MessageTooLarge) {
		t.Fatalf("a 300 kB batch after max.message.bytes 200000: %v", err)
	}
	for range 40 { // 4 MB in 100 kB batches: four 1 MiB segments
		produce(t, b, "night", 0, e.batch(1, 1, 100_000))
	}
	if n := b.partitionsOf(t, "night")[0].log.Segments(); n < 4 {
		t.Fatalf("%d segments after 4 MB under segment.bytes 1048576", n)
	}
	b.EnforceRetention()
	if start, _, _ := b.Offsets(ctx, "night", 0); start == 0 {
		t.Fatalf("retention.bytes 3000000 deleted nothing of 4 MB")
	}
	check := func(b *Broker, want map[string]string) {
		t.Helper()
		got := values()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
		for _, k := range kafkaTopicConfigNames {
			if _, ok := got[k]; !ok {
				t.Errorf("Kafka's topic config %s not described", k)
			}
		}
	}
	want := map[string]string{"retention.bytes": "3000000 (topic)", "segment.bytes": "1048576 (topic)", "max.message.bytes": "200000 (topic)",
		"cleanup.policy": "delete (topic)", "min.insync.replicas": "1", "compression.gzip.level": "-1", "flush.ms": "1000 (topic)"}
	check(b, want)

	// Stored: a restart brings them back.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = e.open()
	check(b, want)

	// AlterConfigs replaces the whole set: retention.bytes goes back to
	// the default, the others stay only if named.
	if err := b.AlterTopicConfigs(ctx, "night", []kmsg.IncrementalAlterConfigsRequestResourceConfig{set("retention.ms", "3600000")}, true, false); err != nil {
		t.Fatal(err)
	}
	got := values()
	if got["retention.ms"] != "3600000 (topic)" || got["retention.bytes"] != "-1" || got["segment.bytes"] == "1048576 (topic)" {
		t.Errorf("after AlterConfigs of retention.ms only: retention.ms %q retention.bytes %q segment.bytes %q",
			got["retention.ms"], got["retention.bytes"], got["segment.bytes"])
	}
	if err := b.AlterTopicConfigs(ctx, "missing", nil, false, false); !isKerr(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("a missing topic: %v", err)
	}
	if err := b.AlterTopicConfigs(ctx, consumerOffsetsTopic, nil, false, false); !isKerr(err, kerr.InvalidTopicException) {
		t.Errorf("__consumer_offsets: %v", err)
	}
}

func sameConfigs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestDescribeKafkaConfigs: every topic lists Kafka 4.1's 33 topic configs
// (and ztfbroker's own ztf.* keys), sorted; those not implemented are
// read-only at Kafka's default.
func TestDescribeKafkaConfigs(t *testing.T) {
	b := newEnv(t, nil).open()
	if err := b.CreateTopic(context.Background(), "t", 1, nil, false); err != nil {
		t.Fatal(err)
	}
	cs, err := b.TopicConfigs(context.Background(), "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
		if !strings.HasPrefix(c.Name, "ztf.") && !slices.Contains(kafkaTopicConfigNames, c.Name) {
			t.Errorf("%s is not one of Kafka's topic configs", c.Name)
		}
		if d := findKafkaDefault(c.Name); d != nil && findTopicKey(c.Name) == nil && (!c.ReadOnly || *c.Value != d.value) {
			t.Errorf("%s: read-only %v value %q, want read-only at Kafka's default %q", c.Name, c.ReadOnly, *c.Value, d.value)
		}
	}
	if !slices.IsSorted(names) || len(names) != len(kafkaTopicConfigNames)+2 {
		t.Errorf("%d configs (want Kafka's %d and 2 ztf.*), sorted %v: %v", len(names), len(kafkaTopicConfigNames), slices.IsSorted(names), names)
	}
	bc := configMap(b.BrokerConfigs(context.Background(), nil))
	for _, k := range []string{"log.cleaner.delete.retention.ms", "min.insync.replicas", "default.replication.factor", "log.retention.ms"} {
		if c, ok := bc[k]; !ok || !c.ReadOnly {
			t.Errorf("broker config %s missing or not read-only", k)
		}
	}
}
