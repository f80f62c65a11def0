package main

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIdempotentProduceSurvivesSIGKILL: idempotent franz-go producers
// (acks=all, one request in flight each, as franz-go allows) write unique values while the broker is
// killed with SIGKILL at random moments and restarted; the clients retry
// through every restart. Afterwards every acknowledged value is in the log
// and no value is there twice: a retry of a batch the broker wrote before it
// died is answered as a duplicate, never appended again (issue 11).
func TestIdempotentProduceSurvivesSIGKILL(t *testing.T) {
	const (
		topic     = "exactly-once"
		producers = 3
		kills     = 12
	)
	b := startBroker(t, "")
	createTopic(t, b.Kafka, topic, 1)

	var mu sync.Mutex
	ackedVals := map[string]bool{}
	failed := 0
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var clients []*kgo.Client
	for c := 0; c < producers; c++ {
		cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic(topic),
			kgo.ProducerLinger(time.Millisecond),
			kgo.MaxBufferedRecords(2000),
			kgo.RecordDeliveryTimeout(45*time.Second),
			kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
		clients = append(clients, cl)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				v := fmt.Sprintf("p%d-%08d-%s", c, i, printable(100))
				cl.Produce(context.Background(), &kgo.Record{Value: []byte(v)}, func(r *kgo.Record, err error) {
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						failed++
						return
					}
					ackedVals[string(r.Value)] = true
				})
				if i%64 == 63 {
					time.Sleep(time.Millisecond) // many small batches
				}
			}
		}()
	}

	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(150+rng.Intn(600)) * time.Millisecond)
		b.Kill()
		b.Restart()
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	flushCtx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	for _, cl := range clients {
		if err := cl.Flush(flushCtx); err != nil {
			t.Fatalf("flush after the last restart: %v", err)
		}
	}

	recs := consumeAll(t, b.Kafka, topic)
	mu.Lock()
	defer mu.Unlock()
	lost, dups := lostAndDuplicated(ackedVals, recs)
	t.Logf("kills %d, acknowledged %d, failed %d, stored %d, lost %d, duplicates %d",
		kills, len(ackedVals), failed, len(recs), lost, dups)
	if len(ackedVals) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	if lost != 0 || dups != 0 {
		t.Fatalf("%d acknowledged records lost and %d stored twice", lost, dups)
	}
}

// lostAndDuplicated counts the acknowledged values missing from recs and
// the values stored more than once.
func lostAndDuplicated(acked map[string]bool, recs []*kgo.Record) (lost, dups int) {
	seen := map[string]int{}
	for _, r := range recs {
		seen[string(r.Value)]++
	}
	for v := range acked {
		if seen[v] == 0 {
			lost++
		}
	}
	for _, n := range seen {
		if n > 1 {
			dups += n - 1
		}
	}
	return lost, dups
}
