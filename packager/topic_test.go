package packager

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// countCreates counts the CreateTopics requests c serves, leaving them to it.
func countCreates(c *kfake.Cluster) *atomic.Int32 {
	var n atomic.Int32
	c.ControlKey(int16(kmsg.CreateTopics), func(kmsg.Request) (kmsg.Response, error, bool) {
		n.Add(1)
		return nil, nil, false
	})
	return &n
}

// refuseAlertConfigs makes c answer as a Kafka cluster does to a CreateTopics
// carrying a config it does not know: INVALID_CONFIG.
func refuseAlertConfigs(c *kfake.Cluster) {
	c.ControlKey(int16(kmsg.CreateTopics), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.CreateTopicsRequest)
		resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
		refused := false
		for _, rt := range req.Topics {
			st := kmsg.NewCreateTopicsResponseTopic()
			st.Topic = rt.Topic
			for _, rc := range rt.Configs {
				if strings.HasPrefix(rc.Name, "ztf.") {
					st.ErrorCode = kerr.InvalidConfig.Code
					st.ErrorMessage = kmsg.StringPtr("Unknown topic config name: " + rc.Name)
					refused = true
				}
			}
			resp.Topics = append(resp.Topics, st)
		}
		if !refused {
			return nil, nil, false
		}
		c.KeepControl()
		return resp, nil, true
	})
}

func topicConfigs(t *testing.T, cl *kgo.Client, topic string) map[string]string {
	t.Helper()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range rc.Configs {
		out[c.Key] = c.MaybeValue()
	}
	return out
}

func partitionCount(t *testing.T, cl *kgo.Client, topic string) int {
	t.Helper()
	tds, err := kadm.NewClient(cl).ListTopics(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return len(tds[topic].Partitions)
}

// The nightly topic is created once, before its first alert, stating the
// format (and the schema id for confluent), with the cluster's default
// partition count.
func TestTopicStatesFormat(t *testing.T) {
	for _, tc := range []struct {
		format   Format
		schemaID string // "": not stated
	}{
		{FormatOCF, ""},
		{FormatConfluent, "42"},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			c := newCluster(t, 3)
			creates := countCreates(c)
			cl := newProducer(t, c)
			cfg := testConfig(t)
			cfg.Format, cfg.SchemaID = tc.format, 42
			p := newTestPackager(t, cfg, cl)
			sim, err := NewSimulation(SimulateConfig{Alerts: 6, Start: nightStart}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if res, err := p.Package(context.Background(), sim.Exposure(i)); err != nil || res.Alerts != 6 {
					t.Fatalf("exposure %d: %+v %v", i, res, err)
				}
			}
			topic := NightTopic(TimeJD(nightStart), 1)
			got := topicConfigs(t, cl, topic)
			if got[ConfigAlertFormat] != string(tc.format) {
				t.Errorf("%s = %q, want %q", ConfigAlertFormat, got[ConfigAlertFormat], tc.format)
			}
			if id, ok := got[ConfigAlertSchemaID]; ok != (tc.schemaID != "") || id != tc.schemaID {
				t.Errorf("%s = %q (set %v), want %q", ConfigAlertSchemaID, id, ok, tc.schemaID)
			}
			if n := partitionCount(t, cl, topic); n != 3 {
				t.Errorf("%d partitions, want the cluster's default 3", n)
			}
			if n := creates.Load(); n != 1 {
				t.Errorf("%d CreateTopics requests for two exposures, want 1", n)
			}
			consume(t, c.ListenAddrs(), "^"+topic+"$", 12)
		})
	}
}

// A cluster that refuses the ztf.alert.* configs (any Kafka) gets its topics
// without them, is told so once, and every alert still goes out.
func TestTopicFormatRefused(t *testing.T) {
	c := newCluster(t, 3)
	refuseAlertConfigs(c)
	creates := countCreates(c)
	cl := newProducer(t, c)
	core, logs := observer.New(zapcore.InfoLevel)
	p, err := New(testConfig(t), cl, zap.New(core), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	jd := TimeJD(nightStart)
	exp := &Exposure{ID: "raw", Raw: []RawAlert{
		{Key: []byte("a"), Value: []byte("alert a"), JD: jd, Programid: 1},
		{Key: []byte("b"), Value: []byte("alert b"), JD: jd, Programid: 2},
		{Key: []byte("c"), Value: []byte("alert c"), JD: jd + 1, Programid: 1},
	}}
	if res, err := p.Package(context.Background(), exp); err != nil || res.Alerts != 3 {
		t.Fatalf("%+v %v", res, err)
	}
	for _, topic := range []string{NightTopic(jd, 1), NightTopic(jd, 2), NightTopic(jd+1, 1)} {
		if got := topicConfigs(t, cl, topic); got[ConfigAlertFormat] != "" {
			t.Errorf("%s states %q on a cluster that refused it", topic, got[ConfigAlertFormat])
		}
		if n := partitionCount(t, cl, topic); n != 3 {
			t.Errorf("%s: %d partitions, want the cluster's default 3", topic, n)
		}
		consume(t, c.ListenAddrs(), "^"+topic+"$", 1)
	}
	// The refusing control answers the first request; the counter sees the
	// plain retry and, the refusal remembered, one plain create per topic.
	if n := creates.Load(); n != 3 {
		t.Errorf("%d CreateTopics requests reached the cluster, want 3", n)
	}
	if n := logs.FilterMessageSnippet("does not record the alert format").Len(); n != 1 {
		t.Errorf("told %d times that the cluster does not record the format, want once", n)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 0 {
		t.Errorf("%d warnings: %v", n, logs.FilterLevelExact(zapcore.WarnLevel).All())
	}
}

// A topic that exists is left as it is: its configs and partitions stay.
func TestTopicExistingLeftAlone(t *testing.T) {
	c := newCluster(t, 1)
	cl := newProducer(t, c)
	topic := NightTopic(TimeJD(nightStart), 1)
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1,
		map[string]*string{ConfigAlertFormat: kadm.StringPtr("confluent")}, topic); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	p, err := New(testConfig(t), cl, zap.New(core), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	sim, _ := NewSimulation(SimulateConfig{Alerts: 3, Start: nightStart}, nil)
	if res, err := p.Package(context.Background(), sim.Exposure(0)); err != nil || res.Alerts != 3 {
		t.Fatalf("%+v %v", res, err)
	}
	if got := topicConfigs(t, cl, topic)[ConfigAlertFormat]; got != "confluent" {
		t.Errorf("existing topic's %s changed to %q", ConfigAlertFormat, got)
	}
	if n := partitionCount(t, cl, topic); n != 1 {
		t.Errorf("existing topic has %d partitions, want 1", n)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 0 {
		t.Errorf("%d warnings: %v", n, logs.FilterLevelExact(zapcore.WarnLevel).All())
	}
}

// A producer that is not a *kgo.Client gets no topics created.
func TestTopicSetupNeedsKgoClient(t *testing.T) {
	var rec recordingProducer
	ts := newTopicSetup(&rec, 1, zap.NewNop())
	if ts.adm != nil {
		t.Fatal("admin client for a producer that is not a *kgo.Client")
	}
	ts.ensure(context.Background(), "ztf_20261129_programid1", FormatOCF) // must not panic
}

type recordingProducer struct{ n atomic.Int32 }

func (r *recordingProducer) Produce(_ context.Context, rec *kgo.Record, promise func(*kgo.Record, error)) {
	r.n.Add(1)
	promise(rec, nil)
}
