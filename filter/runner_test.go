package filter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testFilters are the filters of the runner tests, each with the same
// selection written in Go (want), which the matches must equal.
var testFilters = []struct {
	spec Spec
	want func(topic string, a *Alert) bool
}{
	{Spec{Name: "bright", Owner: "alice", Topics: "ztf_*_programid1",
		Expression: "candidate.magpsf < 18.0 && candidate.isdiffpos in ['t', '1']"},
		func(topic string, a *Alert) bool {
			return strings.HasSuffix(topic, "_programid1") && a.Candidate.Magpsf < 18.0 &&
				(a.Candidate.Isdiffpos == "t" || a.Candidate.Isdiffpos == "1")
		}},
	{Spec{Name: "old-friends", Owner: "bob", Topics: "ztf_*", Format: FormatSummary,
		Expression: "ndet() >= 3 && days_since_first() > 1.0 && has(candidate.rb)"},
		func(topic string, a *Alert) bool {
			n, first := 1, a.Candidate.JD
			for _, p := range a.Prv {
				if p.Candid != nil {
					n++
					first = min(first, p.JD)
				}
			}
			return n >= 3 && a.Candidate.JD-first > 1 && a.Candidate.Rb != nil
		}},
	{Spec{Name: "north", Owner: "carol", Topics: "ztf_*_programid?",
		Expression: "cone(0.0, 90.0, 60.0 * 3600.0) && size(cutoutDifference.stampData) > 0"},
		func(topic string, a *Alert) bool { return a.Candidate.Dec > 30 && len(a.Cutouts[2].StampData) > 0 }},
}

// erring errors on every alert with fewer than 21 history rows.
var erring = Spec{Name: "erring", Owner: "dave", Topics: "ztf_*", Expression: "prv_candidates[20].jd > 0.0"}

type sourceAlert struct {
	topic string
	rec   *kgo.Record
	alert *Alert
}

// fillCluster produces copies of the sample alerts to two nights'
// programid1 and programid2 topics and returns them decoded.
func fillCluster(t *testing.T, cl *kgo.Client, copies int) []sourceAlert {
	t.Helper()
	d := NewDecoder()
	var out []sourceAlert
	names := make([]string, 0)
	all := samples(t)
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names)
	ctx := context.Background()
	for c := 0; c < copies; c++ {
		for i, p := range names {
			topic := fmt.Sprintf("ztf_2019010%d_programid%d", 1+c%2, 1+i%2)
			rec := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("obj%d", i)), Value: all[p],
				Timestamp: time.UnixMilli(1546300800000 + int64(c*1000+i)),
				Headers:   []kgo.RecordHeader{{Key: "sample", Value: []byte(p)}}}
			if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
			var a Alert
			if d.Decode(all[p], Parts{true, true, true}, &a) == nil {
				out = append(out, sourceAlert{topic: topic, rec: rec, alert: &a})
			}
		}
	}
	return out
}

// readTopic reads a filter topic to its end.
func readTopic(t *testing.T, addrs []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	var out []*kgo.Record
	for int64(len(out)) < end.Offset {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// checkMatches compares each filter topic with the Go selection: every
// match exactly once, value, key, timestamp and headers as the source's.
func checkMatches(t *testing.T, addrs []string, src []sourceAlert) {
	t.Helper()
	for _, tf := range testFilters {
		checkFilter(t, addrs, tf.spec, tf.want, src)
	}
}

// checkFilter compares one filter topic with its Go selection.
func checkFilter(t *testing.T, addrs []string, spec Spec, sel func(string, *Alert) bool, src []sourceAlert) {
	t.Helper()
	var want []sourceAlert
	for _, s := range src {
		if sel(s.topic, s.alert) {
			want = append(want, s)
		}
	}
	if len(want) == 0 {
		t.Fatalf("%s selects nothing: the test proves nothing", spec.Name)
	}
	got := readTopic(t, addrs, spec.Topic())
	seen := map[string]int{}
	for _, g := range got {
		tp, off, ok := source(g)
		if !ok {
			t.Fatalf("%s: a match without source headers", spec.Name)
		}
		seen[fmt.Sprintf("%s/%d/%d", tp.topic, tp.partition, off)]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s: %s produced %d times", spec.Name, k, n)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d matches, want %d", spec.Name, len(got), len(want))
	}
	byKey := map[string]sourceAlert{}
	for _, w := range want {
		byKey[fmt.Sprintf("%s/%d/%d", w.rec.Topic, w.rec.Partition, w.rec.Offset)] = w
	}
	for _, g := range got {
		tp, off, _ := source(g)
		w, ok := byKey[fmt.Sprintf("%s/%d/%d", tp.topic, tp.partition, off)]
		if !ok {
			t.Fatalf("%s: matched %s/%d/%d, which the Go selection does not", spec.Name, tp.topic, tp.partition, off)
		}
		if !bytes.Equal(g.Key, w.rec.Key) || !g.Timestamp.Equal(w.rec.Timestamp) || string(g.Headers[0].Value) != string(w.rec.Headers[0].Value) {
			t.Fatalf("%s: key, timestamp or headers changed: %q %v %v", spec.Name, g.Key, g.Timestamp, g.Headers)
		}
		if spec.Format == FormatSummary {
			var s Summary
			if err := json.Unmarshal(g.Value, &s); err != nil || s.Candid != w.alert.Candid || s.ObjectID != w.alert.ObjectID {
				t.Fatalf("%s: summary %s (%v), want candid %d", spec.Name, g.Value, err, w.alert.Candid)
			}
		} else if !bytes.Equal(g.Value, w.rec.Value) {
			t.Fatalf("%s: value is not the bytes received", spec.Name)
		}
	}
	t.Logf("%s: %d matches of %d alerts", spec.Name, len(got), len(src))
}

// waitCommitted waits until the group has committed the end of every
// source partition.
func waitCommitted(t *testing.T, adm *kadm.Client, group string, src []sourceAlert) {
	t.Helper()
	topics := map[string]bool{}
	for _, s := range src {
		topics[s.topic] = true
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		lag, err := adm.Lag(context.Background(), group)
		if err == nil {
			total, parts := int64(0), 0
			lag.Each(func(l kadm.DescribedGroupLag) {
				for _, ps := range l.Lag {
					for _, p := range ps {
						if topics[p.Topic] {
							total += p.Lag
							parts++
						}
					}
				}
			})
			if parts > 0 && total == 0 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("group %s did not commit the end of the source topics", group)
}

func startRunner(t *testing.T, addrs []string) (reg *prometheus.Registry, stop func()) {
	return startRunnerWith(t, addrs, DefaultConfig(), nil)
}

// startRunnerWith starts a runner of cfg; hook, if not nil, is its
// backfillBatch, called with the runner's cancel.
func startRunnerWith(t *testing.T, addrs []string, cfg Config, hook func(cancel func(), matches int)) (reg *prometheus.Registry, stop func()) {
	t.Helper()
	cfg.Bootstrap = addrs
	reg = prometheus.NewRegistry()
	r, err := NewRunner(cfg, Access{}, zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if hook != nil {
		r.backfillBatch = func(n int) { hook(cancel, n) }
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	return reg, func() { cancel(); <-done }
}

// testCluster is a kfake cluster of three brokers with the four source
// topics of fillCluster, and a client of it.
func testCluster(t *testing.T) ([]string, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(4,
		"ztf_20190101_programid1", "ztf_20190101_programid2", "ztf_20190102_programid1", "ztf_20190102_programid2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c.ListenAddrs(), cl
}

// TestRunnerThreeBrokers runs filters against a kfake cluster of three
// brokers: the matches equal the Go selection, an erring filter is paused
// without touching the others, and a runner restarted after a crash
// between its produce and its commit produces no match twice.
func TestRunnerThreeBrokers(t *testing.T) {
	addrs, cl := testCluster(t)
	ctx := context.Background()
	comp, _ := NewCompiler(0)
	for _, f := range testFilters {
		if err := Save(ctx, cl, DefaultSpecTopic, comp, f.spec); err != nil {
			t.Fatal(err)
		}
	}
	if err := Save(ctx, cl, DefaultSpecTopic, comp, erring); err != nil {
		t.Fatal(err)
	}
	_, stop := startRunner(t, addrs)
	src := fillCluster(t, cl, 4)
	adm := kadm.NewClient(cl)
	waitCommitted(t, adm, DefaultConfig().Group, src)
	stop()
	checkMatches(t, addrs, src)

	specs, err := List(ctx, DefaultSpecTopic, kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if (s.Name == erring.Name) != s.Paused {
			t.Fatalf("filter %s paused=%v (%s)", s.Name, s.Paused, s.Reason)
		}
		if s.Paused && !strings.Contains(s.Reason, "index") {
			t.Fatalf("paused without the error: %q", s.Reason)
		}
	}

	// A crash after the matches were acknowledged and before the commit:
	// the group goes back to the start, and the restarted runner finds its
	// matches in the filter topics instead of producing them again.
	offsets := kadm.Offsets{}
	for _, s := range src {
		offsets.AddOffset(s.rec.Topic, s.rec.Partition, 0, -1)
	}
	if _, err := adm.CommitOffsets(ctx, DefaultConfig().Group, offsets); err != nil {
		t.Fatal(err)
	}
	reg, stop := startRunner(t, addrs)
	more := fillCluster(t, cl, 1)
	waitCommitted(t, adm, DefaultConfig().Group, append(src, more...))
	stop()
	if n, err := testutil.GatherAndCount(reg, "ztfbroker_filter_recovered_skips_total"); err != nil || n != 1 {
		t.Fatalf("skips metric: %d %v", n, err)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "ztfbroker_filter_recovered_skips_total" && mf.GetMetric()[0].GetCounter().GetValue() == 0 {
			t.Fatal("the restarted runner skipped nothing: the crash was not replayed")
		}
	}
	checkMatches(t, addrs, append(src, more...))
}

// TestRunnersShareTheWork: two runners in one group (run more runners for
// more throughput) share the source partitions, the second joining while
// the first runs, and each match is produced once.
func TestRunnersShareTheWork(t *testing.T) {
	addrs, cl := testCluster(t)
	comp, _ := NewCompiler(0)
	for _, f := range testFilters {
		if err := Save(context.Background(), cl, DefaultSpecTopic, comp, f.spec); err != nil {
			t.Fatal(err)
		}
	}
	reg1, stop1 := startRunner(t, addrs)
	src := fillCluster(t, cl, 2)
	reg2, stop2 := startRunner(t, addrs)
	adm := kadm.NewClient(cl)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		gs, err := adm.DescribeGroups(context.Background(), DefaultConfig().Group)
		if g, ok := gs[DefaultConfig().Group]; err == nil && ok && g.State == "Stable" && len(g.Members) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second runner did not join the group")
		}
	}
	src = append(src, fillCluster(t, cl, 2)...)
	waitCommitted(t, adm, DefaultConfig().Group, src)
	stop1()
	stop2()
	checkMatches(t, addrs, src)
	for i, reg := range []*prometheus.Registry{reg1, reg2} {
		n, err := testutil.GatherAndCount(reg, "ztfbroker_filter_alerts_evaluated_total")
		mfs, _ := reg.Gather()
		evaluated := 0.0
		for _, mf := range mfs {
			if mf.GetName() == "ztfbroker_filter_alerts_evaluated_total" {
				for _, m := range mf.GetMetric() {
					evaluated += m.GetCounter().GetValue()
				}
			}
		}
		if err != nil || n == 0 || evaluated == 0 {
			t.Errorf("runner %d evaluated nothing (%v): the group did not share the work", i+1, err)
		}
	}
}

// waitBackfilled waits until the named filter is stored Backfilled.
func waitBackfilled(t *testing.T, addrs []string, name string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		specs, err := List(context.Background(), DefaultSpecTopic, kgo.SeedBrokers(addrs...))
		for _, s := range specs {
			if err == nil && s.Name == name && s.Backfilled {
				return
			}
		}
	}
	t.Fatalf("filter %s was not backfilled", name)
}

// TestRunnerBackfill: a filter saved with start earliest into a running
// runner gets the matches of the alerts sent before it (the backfill) and
// after it (the group), each once; a runner stopped in the middle of a
// backfill and started again finishes it without repeating a match.
func TestRunnerBackfill(t *testing.T) {
	addrs, cl := testCluster(t)
	ctx := context.Background()
	adm := kadm.NewClient(cl)
	comp, _ := NewCompiler(0)
	bright, north := testFilters[0], testFilters[2]
	// The runner reads programid2 only: bright's programid1 topics are
	// new to the group, which reads them from their start.
	friends := testFilters[1]
	friends.spec.Topics = "ztf_*_programid2"
	friends.want = func(topic string, a *Alert) bool {
		return strings.HasSuffix(topic, "_programid2") && testFilters[1].want(topic, a)
	}
	if err := Save(ctx, cl, DefaultSpecTopic, comp, friends.spec); err != nil {
		t.Fatal(err)
	}
	_, stop := startRunner(t, addrs)
	src := fillCluster(t, cl, 2)
	waitCommitted(t, adm, DefaultConfig().Group, src)

	// Added while the runner runs, after these alerts were read.
	early := bright.spec
	early.Start = StartEarliest
	if err := Save(ctx, cl, DefaultSpecTopic, comp, early); err != nil {
		t.Fatal(err)
	}
	src = append(src, fillCluster(t, cl, 1)...)
	waitBackfilled(t, addrs, early.Name)
	waitCommitted(t, adm, DefaultConfig().Group, src)
	stop()
	checkFilter(t, addrs, early, bright.want, src)
	checkFilter(t, addrs, friends.spec, friends.want, src)

	// Stopped after the backfill's first acknowledged match (one alert a
	// batch), then started again.
	crash := north.spec
	crash.Start = StartEarliest
	if err := Save(ctx, cl, DefaultSpecTopic, comp, crash); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.MaxPollRecords = 1
	stopped := make(chan struct{})
	var once sync.Once
	_, stop = startRunnerWith(t, addrs, cfg, func(cancel func(), matches int) {
		if matches > 0 {
			cancel()
			once.Do(func() { close(stopped) })
		}
	})
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the backfill did not start")
	}
	stop()
	got := readTopic(t, addrs, crash.Topic())
	if len(got) == 0 {
		t.Fatal("the stopped backfill produced nothing: the test proves nothing")
	}
	if specs, err := List(ctx, DefaultSpecTopic, kgo.SeedBrokers(addrs...)); err != nil || slices.ContainsFunc(specs, func(s Spec) bool { return s.Name == crash.Name && s.Backfilled }) {
		t.Fatalf("the backfill finished before the stop (%v): the test proves nothing", err)
	}
	_, stop = startRunner(t, addrs)
	src = append(src, fillCluster(t, cl, 1)...)
	waitBackfilled(t, addrs, crash.Name)
	waitCommitted(t, adm, DefaultConfig().Group, src)
	stop()
	t.Logf("%d matches before the stop", len(got))
	checkFilter(t, addrs, crash, north.want, src)
	checkFilter(t, addrs, early, bright.want, src)
}
