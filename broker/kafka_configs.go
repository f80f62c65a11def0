package broker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaDefault is one of Apache Kafka 4.1's topic configs that ztfbroker
// does not act on. DescribeConfigs lists it with Kafka's default, read-only,
// so that tools comparing a topic's configs (MirrorMaker 2, Kafka Connect,
// kafka-configs --describe --all) find Kafka's full set; a change to it is
// accepted only when it leaves the default. A key topicKeys serves takes
// precedence: implementing one means adding it there, and its entry here
// then goes unused.
type kafkaDefault struct {
	// broker is the broker-wide synonym; empty for a topic-only config.
	name, broker, value string
	typ                 kmsg.ConfigType
	doc                 string
}

// kafkaDefaults are sorted by name. With topicKeys they make Kafka 4.1's 33
// topic configs (its LogConfig), less none.
var kafkaDefaults = []kafkaDefault{
	{"compression.gzip.level", "compression.gzip.level", "-1", kmsg.ConfigTypeInt,
		"Unused: batches are stored as the producer compressed them (compression.type producer)."},
	{"compression.lz4.level", "compression.lz4.level", "9", kmsg.ConfigTypeInt,
		"Unused: batches are stored as the producer compressed them (compression.type producer)."},
	{"compression.zstd.level", "compression.zstd.level", "3", kmsg.ConfigTypeInt,
		"Unused: batches are stored as the producer compressed them (compression.type producer)."},
	{"delete.retention.ms", "log.cleaner.delete.retention.ms", "86400000", kmsg.ConfigTypeLong,
		"How long tombstones are kept on a compacted topic."},
	{"file.delete.delay.ms", "log.segment.delete.delay.ms", "60000", kmsg.ConfigTypeLong,
		"Unused: a deleted segment's files go at once; readers holding it keep reading it."},
	{"flush.messages", "log.flush.interval.messages", "9223372036854775807", kmsg.ConfigTypeLong,
		"Unused: fsyncs follow flush.ms only."},
	{"follower.replication.throttled.replicas", "", "", kmsg.ConfigTypeList,
		"Unused: one node, no replication."},
	{"leader.replication.throttled.replicas", "", "", kmsg.ConfigTypeList,
		"Unused: one node, no replication."},
	{"local.retention.bytes", "log.local.retention.bytes", "-2", kmsg.ConfigTypeLong,
		"Unused: no tiered storage (-2: retention.bytes)."},
	{"local.retention.ms", "log.local.retention.ms", "-2", kmsg.ConfigTypeLong,
		"Unused: no tiered storage (-2: retention.ms)."},
	{"max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", "9223372036854775807", kmsg.ConfigTypeLong,
		"Most a record stays uncompacted on a compacted topic."},
	{"min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", "0.5", kmsg.ConfigTypeDouble,
		"Share of a compacted log not yet cleaned above which it is cleaned."},
	{"min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", "0", kmsg.ConfigTypeLong,
		"Least a record stays uncompacted on a compacted topic."},
	{"min.insync.replicas", "min.insync.replicas", "1", kmsg.ConfigTypeInt,
		"One node: an acks=all write is in sync once this node has it (per flush.ms)."},
	{"remote.log.copy.disable", "", "false", kmsg.ConfigTypeBoolean,
		"Unused: no tiered storage."},
	{"remote.log.delete.on.disable", "", "false", kmsg.ConfigTypeBoolean,
		"Unused: no tiered storage."},
	{"remote.storage.enable", "", "false", kmsg.ConfigTypeBoolean,
		"No tiered storage."},
	{"segment.index.bytes", "log.index.size.max.bytes", "10485760", kmsg.ConfigTypeInt,
		"Unused: the sparse indexes grow with their segment (one entry per index.interval.bytes)."},
	{"segment.jitter.ms", "log.roll.jitter.ms", "0", kmsg.ConfigTypeLong,
		"Unused: segments roll at segment.ms exactly."},
	{"unclean.leader.election.enable", "unclean.leader.election.enable", "false", kmsg.ConfigTypeBoolean,
		"Unused: one node, no leader election."},
}

// kafkaBrokerDefaults are broker-only configs of Kafka's that tools read,
// reported with the value that holds for one node.
var kafkaBrokerDefaults = []kafkaDefault{
	{"default.replication.factor", "", "1", kmsg.ConfigTypeInt, "One node: every partition has one replica."},
	{"delete.topic.enable", "", "true", kmsg.ConfigTypeBoolean, "DeleteTopics is served."},
	{"offsets.topic.replication.factor", "", "1", kmsg.ConfigTypeShort, "One node: committed offsets live in the metadata store."},
	{"transaction.state.log.min.isr", "", "1", kmsg.ConfigTypeInt, "One node."},
	{"transaction.state.log.replication.factor", "", "1", kmsg.ConfigTypeShort, "One node."},
}

func findKafkaDefault(name string) *kafkaDefault {
	for i := range kafkaDefaults {
		if kafkaDefaults[i].name == name {
			return &kafkaDefaults[i]
		}
	}
	return nil
}

// accept checks a change to a config ztfbroker does not implement: only
// one that leaves Kafka's default (SET to it, DELETE, or for a list an
// empty APPEND or SUBTRACT) passes, and nothing is stored.
func (d *kafkaDefault) accept(c kmsg.IncrementalAlterConfigsRequestResourceConfig) error {
	if c.Op == kmsg.IncrementalAlterConfigOpDelete || c.Value != nil && *c.Value == d.value {
		return nil
	}
	if (c.Op == kmsg.IncrementalAlterConfigOpAppend || c.Op == kmsg.IncrementalAlterConfigOpSubtract) && c.Value != nil && len(splitList(*c.Value)) == 0 {
		return nil
	}
	return fmt.Errorf("%s: not supported by ztfbroker, which keeps Kafka's default %q", c.Name, d.value)
}

// unimplemented lists kafkaDefaults that topicKeys does not serve.
func unimplemented() []*kafkaDefault {
	var out []*kafkaDefault
	for i := range kafkaDefaults {
		if findTopicKey(kafkaDefaults[i].name) == nil {
			out = append(out, &kafkaDefaults[i])
		}
	}
	return out
}

func sortConfigs(cs []kmsg.DescribeConfigsResponseResourceConfig) {
	slices.SortFunc(cs, func(a, b kmsg.DescribeConfigsResponseResourceConfig) int { return strings.Compare(a.Name, b.Name) })
}
