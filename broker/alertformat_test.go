package broker

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ztf.alert.format and ztf.alert.schema.id are recorded per topic, refused
// when malformed, listed by DescribeConfigs and kept across a reopen.
func TestAlertFormatConfig(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	s := func(v string) *string { return &v }

	type want struct {
		format, schemaID string
		set              map[string]*string // the overrides: source DYNAMIC_TOPIC_CONFIG
	}
	created := map[string]want{}
	for _, tc := range []struct {
		name    string
		configs map[string]*string
		bad     string // the key the error must name; empty: created
		want    want
	}{
		{name: "ocf", configs: map[string]*string{"ztf.alert.format": s("ocf")}, want: want{format: "ocf", schemaID: "0"}},
		{name: "confluent", configs: map[string]*string{"ztf.alert.format": s("confluent"), "ztf.alert.schema.id": s("7")},
			want: want{format: "confluent", schemaID: "7"}},
		{name: "unstated", want: want{format: "", schemaID: "0"}},
		{name: "stated-empty", configs: map[string]*string{"ztf.alert.format": s("")}, want: want{format: "", schemaID: "0"}},
		{name: "bad-format", configs: map[string]*string{"ztf.alert.format": s("OCF")}, bad: "ztf.alert.format"},
		{name: "bad-format-json", configs: map[string]*string{"ztf.alert.format": s("json")}, bad: "ztf.alert.format"},
		{name: "negative-id", configs: map[string]*string{"ztf.alert.schema.id": s("-1")}, bad: "ztf.alert.schema.id"},
		{name: "word-id", configs: map[string]*string{"ztf.alert.schema.id": s("one")}, bad: "ztf.alert.schema.id"},
		{name: "wide-id", configs: map[string]*string{"ztf.alert.schema.id": s("4294967296")}, bad: "ztf.alert.schema.id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "fmt-" + tc.name
			err := b.CreateTopic(context.Background(), topic, 1, tc.configs, false)
			if tc.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.want.set = tc.configs
				created[topic] = tc.want
				return
			}
			if !isKerr(err, kerr.InvalidConfig) || !strings.Contains(err.Error(), tc.bad) {
				t.Fatalf("want INVALID_CONFIG naming %s, got %v", tc.bad, err)
			}
			if _, _, err := b.Topic(context.Background(), topic, false); err == nil {
				t.Fatal("topic created with a bad config")
			}
		})
	}

	check := func(b *Broker) {
		t.Helper()
		for topic, w := range created {
			cs, err := b.TopicConfigs(context.Background(), topic, []string{"ztf.alert.format", "ztf.alert.schema.id"})
			if err != nil {
				t.Fatal(err)
			}
			m := configMap(cs)
			for key, value := range map[string]string{"ztf.alert.format": w.format, "ztf.alert.schema.id": w.schemaID} {
				c, ok := m[key]
				if !ok {
					t.Fatalf("%s: %s not listed", topic, key)
				}
				if *c.Value != value {
					t.Errorf("%s: %s = %q, want %q", topic, key, *c.Value, value)
				}
				wantSrc := kmsg.ConfigSourceDefaultConfig
				if _, ok := w.set[key]; ok {
					wantSrc = kmsg.ConfigSourceDynamicTopicConfig
				}
				if c.Source != wantSrc || c.IsDefault != (wantSrc == kmsg.ConfigSourceDefaultConfig) {
					t.Errorf("%s: %s source %v default %v, want %v", topic, key, c.Source, c.IsDefault, wantSrc)
				}
				last := c.ConfigSynonyms[len(c.ConfigSynonyms)-1]
				wantDef := map[string]string{"ztf.alert.format": "", "ztf.alert.schema.id": "0"}[key]
				if last.Name != key || *last.Value != wantDef || last.Source != kmsg.ConfigSourceDefaultConfig {
					t.Errorf("%s: %s default synonym %s=%q %v", topic, key, last.Name, *last.Value, last.Source)
				}
				if c.Documentation == nil || !strings.Contains(*c.Documentation, "ztfbroker's own key, not Kafka's") {
					t.Errorf("%s: doc does not say it is ztfbroker's own key: %v", key, c.Documentation)
				}
				if c.ReadOnly {
					t.Errorf("%s: %s read-only", topic, key)
				}
			}
		}
	}
	check(b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	check(e.open())
}

// A topic-only key has no broker-wide default: the broker file refuses it
// and the broker's own configs do not list it.
func TestAlertFormatTopicOnly(t *testing.T) {
	c := DefaultConfig()
	err := c.ApplySettings(map[string]string{"ztf.alert.format": "ocf", "ztf.alert.schema.id": "1"})
	if err == nil || !strings.Contains(err.Error(), "ztf.alert.format") || !strings.Contains(err.Error(), "ztf.alert.schema.id") {
		t.Fatalf("broker-wide ztf.alert.*: %v", err)
	}
	if err := c.ApplySettings(map[string]string{"": "ocf"}); err == nil {
		t.Fatal("an empty key matched a topic-only key's missing broker synonym")
	}

	b := newEnv(t, nil).open()
	for name := range configMap(b.BrokerConfigs(context.Background(), nil)) {
		if name == "" || strings.HasPrefix(name, "ztf.") {
			t.Errorf("broker configs list %q", name)
		}
	}
}
