package broker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkGroupRebalance times, beside kfake in the same run, how long a
// three-member kgo group (cooperative-sticky, 100 ms heartbeats) takes to
// form over six partitions, and how long the two others take to own all six
// after one member leaves. Reported as form-ms and takeover-ms per op.
//
//	go test ./broker/ -run '^$' -bench GroupRebalance -benchtime 5x
func BenchmarkGroupRebalance(b *testing.B) {
	const topic = "bench"
	b.Run("ztfbroker", func(b *testing.B) {
		s := startStack(b, b.TempDir())
		if err := s.b.CreateTopic(context.Background(), topic, 6, nil, false); err != nil {
			b.Fatal(err)
		}
		benchRebalance(b, s.addr, topic)
	})
	b.Run("kfake", func(b *testing.B) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, topic))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		benchRebalance(b, c.ListenAddrs()[0], topic)
	})
}

// owned tracks the partitions each member owns, from kgo's callbacks.
type owned struct {
	mu  sync.Mutex
	by  map[int]map[int32]bool
	chg chan struct{}
}

func (o *owned) set(member int, ps map[string][]int32, add bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.by[member] == nil {
		o.by[member] = map[int32]bool{}
	}
	for _, parts := range ps {
		for _, p := range parts {
			if add {
				o.by[member][p] = true
			} else {
				delete(o.by[member], p)
			}
		}
	}
	select {
	case o.chg <- struct{}{}:
	default:
	}
}

// covered reports whether members own all six partitions, two or more each.
func (o *owned) covered(members ...int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	all := map[int32]bool{}
	for _, m := range members {
		if len(o.by[m]) < 6/len(members) {
			return false
		}
		for p := range o.by[m] {
			all[p] = true
		}
	}
	return len(all) == 6
}

func (o *owned) wait(b *testing.B, members ...int) {
	deadline := time.After(30 * time.Second)
	for !o.covered(members...) {
		select {
		case <-o.chg:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			b.Fatalf("members %v never owned all partitions", members)
		}
	}
}

func benchRebalance(b *testing.B, addr, topic string) {
	var form, takeover time.Duration
	for i := 0; i < b.N; i++ {
		o := &owned{by: map[int]map[int32]bool{}, chg: make(chan struct{}, 1)}
		group := fmt.Sprintf("bench-%d", i)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		clients := make([]*kgo.Client, 3)
		start := time.Now()
		for m := range clients {
			m := m
			cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
				kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.HeartbeatInterval(100*time.Millisecond),
				kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { o.set(m, ps, true) }),
				kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { o.set(m, ps, false) }),
				kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) { o.set(m, ps, false) }),
			)
			if err != nil {
				b.Fatal(err)
			}
			clients[m] = cl
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					cl.PollFetches(ctx)
				}
			}()
		}
		o.wait(b, 0, 1, 2)
		form += time.Since(start)
		start = time.Now()
		clients[2].Close() // leaves the group
		o.wait(b, 0, 1)
		takeover += time.Since(start)
		cancel()
		wg.Wait()
		clients[0].Close()
		clients[1].Close()
	}
	b.ReportMetric(float64(form.Milliseconds())/float64(b.N), "form-ms")
	b.ReportMetric(float64(takeover.Milliseconds())/float64(b.N), "takeover-ms")
}
