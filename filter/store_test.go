package filter

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRunnerStateNeverResurrects: a runner's state record (paused,
// backfilled) written after its user removed or saved the filter again
// applies to nothing: the removed filter stays removed, the new one runs.
func TestRunnerStateNeverResurrects(t *testing.T) {
	addrs, cl := testCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := NewCompiler(uint64(DefaultConfig().CostLimit))
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Name: "gone", Owner: "alice", Topics: "ztf_*", Expression: "candidate.magpsf < 18.0"}
	if err := Save(ctx, cl, DefaultSpecTopic, c, spec); err != nil {
		t.Fatal(err)
	}
	list := func() map[string]Spec {
		t.Helper()
		specs, err := List(ctx, DefaultSpecTopic, kgo.SeedBrokers(addrs...))
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]Spec{}
		for _, s := range specs {
			m[s.Name] = s
		}
		return m
	}
	stored := list()["gone"]
	// The runner pauses it: stored paused.
	paused := stored
	paused.Paused, paused.Reason = true, "paused after 10 errors"
	produce := func(r *kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(stateRecord(DefaultSpecTopic, paused))
	if s, ok := list()["gone"]; !ok || !s.Paused || s.Reason != paused.Reason {
		t.Fatalf("after the runner paused it: %+v %v", s, ok)
	}
	// The user removes it, and a runner's late state record follows.
	if err := Remove(ctx, cl, DefaultSpecTopic, "gone"); err != nil {
		t.Fatal(err)
	}
	backfilled := stored
	backfilled.Backfilled = true
	produce(stateRecord(DefaultSpecTopic, backfilled))
	if s, ok := list()["gone"]; ok {
		t.Fatalf("a state record written after the removal brought the filter back: %+v", s)
	}
	// Saved again: a stale pause does not apply to it.
	if err := Save(ctx, cl, DefaultSpecTopic, c, spec); err != nil {
		t.Fatal(err)
	}
	produce(stateRecord(DefaultSpecTopic, paused))
	if s, ok := list()["gone"]; !ok || s.Paused || s.Backfilled {
		t.Fatalf("saved again after a stale pause: %+v %v, want running", s, ok)
	}
}
