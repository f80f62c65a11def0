package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Six partitions written at once go through the journal; SIGKILL, and the
// restart replays its records into the segments (the real files, rewritten
// with the bytes they hold) before recovery: every acknowledged record of
// every partition is there, in order.
func TestSIGKILLJournalReplay(t *testing.T) {
	b := startBroker(t, "")
	const topic, parts = "journaled", 6
	createTopic(t, b.Kafka, topic, parts)
	type key struct {
		p int32
		o int64
	}
	var mu sync.Mutex
	acked := map[key][]byte{}
	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordRetries(0), kgo.ProducerLinger(time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for p := range int32(parts) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				v := []byte(fmt.Sprintf("p%d-%08d-%s", p, i, printable(1000)))
				cl.Produce(ctx, &kgo.Record{Partition: p, Value: v}, func(r *kgo.Record, err error) {
					if err == nil {
						mu.Lock()
						acked[key{r.Partition, r.Offset}] = r.Value
						mu.Unlock()
					}
				})
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	b.Kill()
	cancel()
	wg.Wait()
	cl.Close()
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}
	b.Restart()
	if !strings.Contains(b.Logs(), "replayed the journal") {
		t.Fatalf("the restart replayed no journal records:\n%s", b.Logs())
	}
	got := map[key][]byte{}
	ends := map[int32]int64{}
	c := newClient(t, b.Kafka, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	deadline, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	need := map[int32]int64{} // past the last acknowledged offset of each partition
	for k := range acked {
		need[k.p] = max(need[k.p], k.o+1)
	}
	done := func() bool {
		for p, n := range need {
			if ends[p] < n {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := c.PollFetches(deadline)
		if deadline.Err() != nil {
			t.Fatalf("read up to %v, acknowledged up to %v", ends, need)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != ends[r.Partition] {
				t.Fatalf("partition %d: offset %d after %d", r.Partition, r.Offset, ends[r.Partition])
			}
			ends[r.Partition] = r.Offset + 1
			got[key{r.Partition, r.Offset}] = r.Value
		})
	}
	for k, v := range acked {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("acknowledged record %d/%d lost or changed", k.p, k.o)
		}
	}
	t.Logf("%d acknowledged records in %d partitions all present", len(acked), parts)
}
