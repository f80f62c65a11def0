package packager

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
		format     Format
		schemaID   string // "": not stated
		partitions int32  // packager.partitions
		want       int    // partitions the topic gets
	}{
		{FormatOCF, "", 0, DefaultPartitions},
		{FormatConfluent, "42", -1, 3}, // the cluster's default
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			c := newCluster(t, 3)
			creates := countCreates(c)
			cl := newProducer(t, c)
			cfg := testConfig(t)
			cfg.Format, cfg.SchemaID, cfg.Partitions = tc.format, 42, tc.partitions
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
			if n := partitionCount(t, cl, topic); n != tc.want {
				t.Errorf("%d partitions, want %d", n, tc.want)
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
		if n := partitionCount(t, cl, topic); n != DefaultPartitions {
			t.Errorf("%s: %d partitions, want %d", topic, n, DefaultPartitions)
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

// A nightly topic gets packager.partitions partitions, and the alerts of one
// object all land in one of them, in the order they were made.
func TestTopicPartitionsKeyedByObject(t *testing.T) {
	c := newCluster(t, 1)
	cl := newProducer(t, c)
	cfg := testConfig(t)
	cfg.Partitions = 5
	p := newTestPackager(t, cfg, cl)
	const objects, exposures = 40, 3
	jd := TimeJD(nightStart)
	for i := range exposures {
		exp := &Exposure{ID: strconv.Itoa(i)}
		for o := range objects {
			exp.Raw = append(exp.Raw, RawAlert{Key: []byte(fmt.Sprintf("ZTF26obj%04d", o)),
				Value: []byte(strconv.Itoa(i)), JD: jd + float64(i)/1e3, Programid: 1})
		}
		if res, err := p.Package(context.Background(), exp); err != nil || res.Alerts != objects {
			t.Fatalf("exposure %d: %+v %v", i, res, err)
		}
	}
	topic := NightTopic(jd, 1)
	if n := partitionCount(t, cl, topic); n != 5 {
		t.Fatalf("%d partitions, want 5", n)
	}
	recs := consume(t, c.ListenAddrs(), "^"+topic+"$", objects*exposures)
	slices.SortFunc(recs, func(a, b *kgo.Record) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	partition := map[string]int32{}
	next := map[string]int{} // the exposure of the object's next alert
	used := map[int32]int{}
	for _, r := range recs {
		obj := string(r.Key)
		if got, ok := partition[obj]; ok && got != r.Partition {
			t.Fatalf("object %s in partitions %d and %d", obj, got, r.Partition)
		}
		if string(r.Value) != strconv.Itoa(next[obj]) {
			t.Fatalf("object %s: the alert of exposure %s where %d's was due", obj, r.Value, next[obj])
		}
		partition[obj] = r.Partition
		next[obj]++
		used[r.Partition]++
	}
	if len(used) != 5 {
		t.Errorf("alerts in %d of 5 partitions: %v", len(used), used)
	}
}

// A producer that is not a *kgo.Client gets no topics created.
func TestTopicSetupNeedsKgoClient(t *testing.T) {
	var rec recordingProducer
	ts := newTopicSetup(&rec, 1, DefaultPartitions, zap.NewNop())
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

// idleNight is a night source whose first exposure never comes.
type idleNight struct{ programid int }

func (n idleNight) Programid() int { return n.programid }
func (n idleNight) Next(ctx context.Context) (*Exposure, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestNightTopicMadeAtStart: a simulated night's topic exists, with the
// packager's partitions and format, as soon as the night starts, before its
// first exposure, so that a consumer asking for it early does not
// auto-create it with the cluster's defaults.
func TestNightTopicMadeAtStart(t *testing.T) {
	c := newCluster(t, 1)
	creates := countCreates(c)
	cl := newProducer(t, c)
	cfg := testConfig(t)
	cfg.Partitions = 5
	now := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	cfg.Clock = func() time.Time { return now }
	p := newTestPackager(t, cfg, cl)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.RunSource(ctx, idleNight{programid: 2}) }()
	topic := "ztf_20261203_programid2"
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Asked only once the packager has created it: kfake's metadata
		// would auto-create it too.
		if creates.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s not made while the night waits for its first exposure", topic)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		tds, err := kadm.NewClient(cl).ListTopics(context.Background(), topic)
		if err == nil && tds.Has(topic) && tds[topic].Err == nil {
			if n := len(tds[topic].Partitions); n != 5 {
				t.Fatalf("%s has %d partitions, want the packager's 5", topic, n)
			}
			if got := topicConfigs(t, cl, topic)[ConfigAlertFormat]; got != string(FormatOCF) {
				t.Fatalf("%s states format %q", topic, got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not made while the night waits for its first exposure", topic)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
