package broker

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TopicConfigs lists a topic's configs (all when keys is nil), sorted by
// name, as DescribeConfigs reports them: the value in force, its source (the
// topic's override, the broker's file, or the built-in default) and the
// synonyms below it, the last of which is the default. Kafka's topic configs
// this broker does not act on follow with Kafka's defaults, read-only.
func (b *Broker) TopicConfigs(ctx context.Context, name string, keys []string) ([]kmsg.DescribeConfigsResponseResourceConfig, error) {
	t, err := b.lookup(name)
	if err != nil {
		return nil, err
	}
	def := DefaultConfig().topicDefaults()
	broker := b.cfg.topicDefaults()
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for i := range topicKeys {
		k := &topicKeys[i]
		if keys != nil && !slices.Contains(keys, k.name) {
			continue
		}
		var syn []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym
		if _, ok := t.overrides[k.name]; ok {
			syn = append(syn, synonym(k.name, k.get(&t.cfg), kmsg.ConfigSourceDynamicTopicConfig))
		}
		if bv := k.get(&broker); bv != k.get(&def) && k.broker != "" {
			syn = append(syn, synonym(k.broker, bv, kmsg.ConfigSourceStaticBrokerConfig))
		}
		syn = append(syn, synonym(k.defaultName(), k.get(&def), kmsg.ConfigSourceDefaultConfig))
		out = append(out, describe(k.name, k.typ, k.doc, k.readOnly, syn))
	}
	// Kafka's configs this broker does not act on: their defaults, read-only.
	for _, d := range unimplemented() {
		if keys != nil && !slices.Contains(keys, d.name) {
			continue
		}
		syn := []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{synonym(cmp.Or(d.broker, d.name), d.value, kmsg.ConfigSourceDefaultConfig)}
		out = append(out, describe(d.name, d.typ, d.doc, true, syn))
	}
	sortConfigs(out)
	return out, nil
}

// BrokerConfigs lists the broker's configs (all when keys is nil): its own,
// the broker-wide synonyms of the topic configs, and the Kafka broker
// configs tools read (kafka_configs.go). None can be changed at run time,
// so all are read-only.
func (b *Broker) BrokerConfigs(ctx context.Context, keys []string) []kmsg.DescribeConfigsResponseResourceConfig {
	type entry struct {
		name, value, def string
		typ              kmsg.ConfigType
		doc              string
	}
	var entries []entry
	def, cur := DefaultConfig(), b.cfg
	for _, k := range brokerOnly {
		entries = append(entries, entry{k.name, k.get(&cur), k.get(&def), k.typ, k.doc})
	}
	dt, ct := def.topicDefaults(), cur.topicDefaults()
	for _, k := range topicKeys {
		if k.broker == "" {
			continue // topic-only: nothing to report at the broker
		}
		entries = append(entries, entry{k.broker, k.get(&ct), k.get(&dt), k.typ, k.doc})
	}
	for _, d := range unimplemented() {
		if d.broker != "" { // topic-only: nothing to report at the broker
			entries = append(entries, entry{d.broker, d.value, d.value, d.typ, d.doc})
		}
	}
	for _, d := range kafkaBrokerDefaults {
		entries = append(entries, entry{d.name, d.value, d.value, d.typ, d.doc})
	}
	// cluster.id as reported, not as configured (it may be generated).
	for i := range entries {
		if entries[i].name == "cluster.id" {
			entries[i].value = b.clusterID
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, e := range entries {
		if keys != nil && !slices.Contains(keys, e.name) {
			continue
		}
		var syn []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym
		if e.value != e.def {
			syn = append(syn, synonym(e.name, e.value, kmsg.ConfigSourceStaticBrokerConfig))
		}
		syn = append(syn, synonym(e.name, e.def, kmsg.ConfigSourceDefaultConfig))
		out = append(out, describe(e.name, e.typ, e.doc, true, syn))
	}
	return out
}

func synonym(name, value string, src kmsg.ConfigSource) kmsg.DescribeConfigsResponseResourceConfigConfigSynonym {
	s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
	s.Name, s.Value, s.Source = name, kmsg.StringPtr(value), src
	return s
}

// describe builds one config entry whose value and source are those of the
// first synonym (the one in force).
func describe(name string, typ kmsg.ConfigType, doc string, readOnly bool,
	syn []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym,
) kmsg.DescribeConfigsResponseResourceConfig {
	c := kmsg.NewDescribeConfigsResponseResourceConfig()
	c.Name = name
	c.Value = syn[0].Value
	c.Source = syn[0].Source
	c.IsDefault = c.Source == kmsg.ConfigSourceDefaultConfig
	c.ReadOnly = readOnly
	c.ConfigSynonyms = syn
	c.ConfigType = typ
	c.Documentation = kmsg.StringPtr(doc)
	return c
}
