package protocol

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// memQuotas is a QuotaStore in memory.
type memQuotas map[string]map[string]float64

func (m memQuotas) ClientQuotas() (map[string]map[string]float64, error) { return m, nil }
func (m memQuotas) SetClientQuotas(e string, v map[string]float64) error {
	if len(v) == 0 {
		delete(m, e)
	} else {
		m[e] = v
	}
	return nil
}

func TestQuotaEntityKey(t *testing.T) {
	s := func(v string) *string { return &v }
	for name, tc := range map[string]struct {
		e    quotaEntity
		want string
	}{
		"user":            {quotaEntity{hasUser: true, user: s("alice")}, "user/alice"},
		"default user":    {quotaEntity{hasUser: true}, "user/<default>"},
		"client":          {quotaEntity{hasClient: true, client: s("slow")}, "client-id/slow"},
		"both":            {quotaEntity{hasUser: true, user: s("a/b"), hasClient: true}, "user/a%2Fb/client-id/<default>"},
		"name <default>":  {quotaEntity{hasClient: true, client: s("<default>")}, "client-id/%3Cdefault%3E"},
		"empty client id": {quotaEntity{hasClient: true, client: s("")}, "client-id/"},
	} {
		t.Run(name, func(t *testing.T) {
			k := tc.e.key()
			if k != tc.want {
				t.Fatalf("key %q, want %q", k, tc.want)
			}
			back, err := parseQuotaEntity(k)
			if err != nil || back.key() != k {
				t.Fatalf("parse %q: %v, %+v", k, err, back)
			}
		})
	}
	for _, bad := range []string{"", "user", "ip/1.2.3.4", "client-id/a/user/b", "user/a/user/b", "user/%zz"} {
		if _, err := parseQuotaEntity(bad); err == nil {
			t.Errorf("parse %q: no error", bad)
		}
	}
}

// TestRateMeter drives a meter with a fake clock: a client that waits out
// every throttle is held to the quota from its first request, within one
// request's bytes.
func TestRateMeter(t *testing.T) {
	const quota = 2e6 // bytes/s
	for _, size := range []int{100_000, 1 << 20, 4 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			var m rateMeter
			start := time.Unix(1000, 300e6)
			now := start
			var sent float64
			for now.Sub(start) < 60*time.Second {
				d := m.record(now, size, quota)
				sent += float64(size)
				now = now.Add(d + time.Millisecond) // the client's round trip
			}
			rate := sent / now.Sub(start).Seconds()
			if math.Abs(rate-quota)/quota > 0.1 {
				t.Fatalf("paced rate %.0f B/s, want %.0f within 10%%", rate, quota)
			}
		})
	}
	t.Run("under quota", func(t *testing.T) {
		var m rateMeter
		now := time.Unix(1000, 0)
		for i := 0; i < 100; i++ {
			if d := m.record(now, 1000, 2e6); d != 0 {
				t.Fatalf("request %d throttled %v at 10 kB/s under a 2 MB/s quota", i, d)
			}
			now = now.Add(100 * time.Millisecond)
		}
	})
	t.Run("throttle formula", func(t *testing.T) {
		// 6 MB in 2 s under 1 MB/s: observed 3 MB/s, throttle
		// (3-1)/1 * 2 s = 4 s.
		var m rateMeter
		now := time.Unix(2000, 0)
		m.record(now, 2e6, 1e6)
		m.record(now.Add(time.Second), 2e6, 1e6)
		d := m.record(now.Add(2*time.Second), 2e6, 1e6)
		if d != 4*time.Second {
			t.Fatalf("throttle %v, want 4s", d)
		}
		// A new client gets one window's worth before it is throttled.
		if d := (&rateMeter{}).record(now, 1e6, 1e6); d != 0 {
			t.Fatalf("first window's worth throttled %v", d)
		}
		if d := (&rateMeter{}).record(now, 1e12, 1); d != quotaSamples*quotaWindow {
			t.Fatalf("throttle %v, want the cap %v", d, quotaSamples*quotaWindow)
		}
	})
}

func TestQuotaPrecedence(t *testing.T) {
	store := memQuotas{
		"user/<default>":                      {consumerByteRate: 1},
		"user/alice":                          {consumerByteRate: 2},
		"user/alice/client-id/<default>":      {consumerByteRate: 3},
		"user/alice/client-id/slow":           {consumerByteRate: 4},
		"client-id/slow":                      {consumerByteRate: 5, producerByteRate: 6},
		"user/<default>/client-id/<default>":  {producerByteRate: 7},
		"client-id/<default>":                 {producerByteRate: 8},
		"user/<default>/client-id/fastlane":   {consumerByteRate: 9},
		"user/ANONYMOUS/client-id/<default>":  {producerByteRate: 10},
		"user/bob/client-id/never-this-quota": {consumerByteRate: 11},
	}
	for _, tc := range []struct {
		kind, user, client string
		quota              float64
	}{
		{consumerByteRate, "alice", "slow", 4},
		{consumerByteRate, "alice", "other", 3},
		{consumerByteRate, "bob", "fastlane", 9},
		{consumerByteRate, "bob", "slow", 1}, // user/<default> comes before client-id/slow
		{producerByteRate, "bob", "x", 7},
		{producerByteRate, anonymousUser, "x", 10},
	} {
		q := newQuotas()
		now := time.Unix(5000, 0)
		q.now = func() time.Time { return now }
		// 20 bytes at once: throttle 20/quota s less the first window.
		d := q.record(store, tc.kind, tc.user, tc.client, 20)
		if want := time.Duration((20/tc.quota - 1) * float64(time.Second)); d != min(want, quotaSamples*quotaWindow) {
			t.Errorf("%s %s/%s: throttle %v, want %v (quota %v)", tc.kind, tc.user, tc.client, d, want, tc.quota)
		}
	}
	if d := newQuotas().record(memQuotas{}, consumerByteRate, "alice", "slow", 1<<30); d != 0 {
		t.Errorf("no quota: throttled %v", d)
	}
}

// TestQuotaMetersBounded floods a default client-id quota with new client
// ids: the meters stay at maxQuotaMeters, and two client ids under one
// default quota are measured apart.
func TestQuotaMetersBounded(t *testing.T) {
	q := newQuotas()
	store := memQuotas{"client-id/<default>": {consumerByteRate: 1e6}}
	for i := 0; i < maxQuotaMeters+500; i++ {
		q.record(store, consumerByteRate, anonymousUser, fmt.Sprint("flood-", i), 1)
	}
	if n := len(q.meters); n != maxQuotaMeters || q.lru.Len() != maxQuotaMeters {
		t.Fatalf("%d meters (lru %d), want %d", n, q.lru.Len(), maxQuotaMeters)
	}
	now := time.Unix(7000, 0)
	q.now = func() time.Time { return now }
	a := q.record(store, consumerByteRate, anonymousUser, "a", 2e6)
	b := q.record(store, consumerByteRate, anonymousUser, "b", 2e6)
	if a != b || a != time.Second {
		t.Fatalf("throttles %v and %v, want 1s each (separate meters)", a, b)
	}
	// A change through AlterClientQuotas takes effect at once.
	q.set("client-id/<default>", nil)
	store.SetClientQuotas("client-id/<default>", nil)
	if d := q.record(store, consumerByteRate, anonymousUser, "a", 1e9); d != 0 {
		t.Fatalf("removed quota still throttles %v", d)
	}
}

func TestDescribeClientQuotasFilter(t *testing.T) {
	s := func(v string) *string { return &v }
	keys := []string{"user/alice", "user/<default>", "client-id/slow", "user/alice/client-id/slow"}
	for name, tc := range map[string]struct {
		comps  []kmsg.DescribeClientQuotasRequestComponent
		strict bool
		want   []string
	}{
		"all":               {nil, false, keys},
		"strict nothing":    {nil, true, nil},
		"exact user":        {[]kmsg.DescribeClientQuotasRequestComponent{{EntityType: quotaUser, MatchType: 0, Match: s("alice")}}, false, []string{"user/alice", "user/alice/client-id/slow"}},
		"exact user strict": {[]kmsg.DescribeClientQuotasRequestComponent{{EntityType: quotaUser, MatchType: 0, Match: s("alice")}}, true, []string{"user/alice"}},
		"default user":      {[]kmsg.DescribeClientQuotasRequestComponent{{EntityType: quotaUser, MatchType: 1}}, false, []string{"user/<default>"}},
		"any client":        {[]kmsg.DescribeClientQuotasRequestComponent{{EntityType: quotaClientID, MatchType: 2}}, false, []string{"client-id/slow", "user/alice/client-id/slow"}},
	} {
		t.Run(name, func(t *testing.T) {
			req := kmsg.NewPtrDescribeClientQuotasRequest()
			req.Components, req.Strict = tc.comps, tc.strict
			var got []string
			for _, k := range keys {
				e, err := parseQuotaEntity(k)
				if err != nil {
					t.Fatal(err)
				}
				if quotaFilterMatches(req, e) {
					got = append(got, k)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
