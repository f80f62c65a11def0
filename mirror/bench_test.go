package mirror

import (
	"context"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// alertSize is a ZTF alert with its three cutouts and 30 days of history.
const alertSize = 60_000

// BenchmarkMirrorLatency60kB sends 60 kB alerts one at a time, every 5 ms,
// to an upstream ztfbroker mirrored into another (both in this process,
// every append fsynced), and reports the time from the upstream record's
// timestamp (set as the producer sends it) to its arrival at a consumer:
// of the upstream itself (direct, the baseline) and of the destination
// (mirrored: what a downstream broker's user sees).
//
//	go test -run X -bench MirrorLatency -benchtime 2000x ./mirror/
func BenchmarkMirrorLatency60kB(b *testing.B) {
	for _, mirrored := range []bool{false, true} {
		name := "direct"
		if mirrored {
			name = "mirrored"
		}
		b.Run(name, func(b *testing.B) { mirrorLatency(b, mirrored) })
	}
}

func mirrorLatency(b *testing.B, mirrored bool) {
	up, down := startCluster(b), startCluster(b)
	const topic = "ztf_20260101_programid1"
	produceSome(b, up, topic, 1, 0, 1) // the topic, and a first record
	read := up
	if mirrored {
		runMirror(b, up, down, "ztf_*")
		readAll(b, down, topic, 1)
		read = down
	}
	cons := read.client(b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(1)}}),
		kgo.FetchMaxWait(time.Second))
	latencies := make(chan time.Duration, b.N)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for n := 0; n < b.N; {
			fs := cons.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				latencies <- now.Sub(r.Timestamp)
				n++
			})
		}
	}()
	prod := up.client(b, kgo.ProducerLinger(0))
	value := make([]byte, alertSize)
	rand.New(rand.NewSource(1)).Read(value)
	b.SetBytes(alertSize)
	b.ResetTimer()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for range b.N {
		<-tick.C
		prod.Produce(ctx, &kgo.Record{Topic: topic, Value: value, Timestamp: time.Now()}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
	got := make([]time.Duration, 0, b.N)
	timeout := time.After(time.Minute)
	for len(got) < b.N {
		select {
		case l := <-latencies:
			got = append(got, l)
		case <-timeout:
			b.Fatalf("%d of %d alerts arrived", len(got), b.N)
		}
	}
	b.StopTimer()
	slices.Sort(got)
	ms := func(q float64) float64 { return float64(got[int(q*float64(len(got)-1))].Microseconds()) / 1000 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.9), "p90-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(ms(1), "max-ms")
}

// BenchmarkMirrorThroughput60kB copies a backlog of 60 kB alerts (1000 per
// round, over 4 partitions) and reports the mirror's rate.
func BenchmarkMirrorThroughput60kB(b *testing.B) {
	up, down := startCluster(b), startCluster(b)
	const topic, n = "ztf_backlog", 1000
	prod := up.client(b, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	value := make([]byte, alertSize)
	rand.New(rand.NewSource(1)).Read(value)
	b.SetBytes(n * alertSize)
	for i := range b.N {
		b.StopTimer()
		name := topic + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
		produceSome(b, up, name, 4, 0, 0)
		recs := make([]*kgo.Record, n)
		for j := range recs {
			recs[j] = &kgo.Record{Topic: name, Value: value}
		}
		if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		stop := runMirror(b, up, down, name)
		readAll(b, down, name, n)
		stop()
	}
}
