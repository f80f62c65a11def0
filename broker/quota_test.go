package broker

import (
	"fmt"
	"testing"
)

// TestClientQuotas stores, replaces and removes quotas, and finds them again
// after a restart.
func TestClientQuotas(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	b, err := Open(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		entity string
		values map[string]float64
	}{
		{"client-id/slow", map[string]float64{"consumer_byte_rate": 2e6}},
		{"user/alice/client-id/<default>", map[string]float64{"producer_byte_rate": 1e6, "consumer_byte_rate": 5e5}},
		{"user/bob", map[string]float64{"consumer_byte_rate": 1}},
		{"client-id/slow", map[string]float64{"consumer_byte_rate": 3e6}},
		{"user/bob", nil},
		{"user/nobody", nil}, // removing what is not there
	}
	for _, s := range steps {
		if err := b.SetClientQuotas(s.entity, s.values); err != nil {
			t.Fatalf("set %s: %v", s.entity, err)
		}
	}
	if err := b.SetClientQuotas("", map[string]float64{"consumer_byte_rate": 1}); err == nil {
		t.Fatal("empty entity stored")
	}
	want := "map[client-id/slow:map[consumer_byte_rate:3e+06] user/alice/client-id/<default>:map[consumer_byte_rate:500000 producer_byte_rate:1e+06]]"
	check := func(when string) {
		got, err := b.ClientQuotas()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != want {
			t.Fatalf("%s: quotas %v, want %v", when, got, want)
		}
	}
	check("open")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err = Open(cfg, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	check("reopened")
}
