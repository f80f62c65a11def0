package packager

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type nopProducer struct{}

func (nopProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	promise(r, nil)
}

const benchAlerts = 10_000

// BenchmarkPackageExposure packages and acknowledges one simulated exposure
// of 10,000 alerts into a kfake broker (histories from two earlier visits).
// Baseline: producing the same number of pre-built alert bytes.
func BenchmarkPackageExposure(b *testing.B) {
	for _, bc := range []struct {
		name string
		prod func(b *testing.B) Producer
	}{
		{"kfake", func(b *testing.B) Producer { return newProducer(b, newCluster(b, 1)) }},
		{"nop", func(*testing.B) Producer { return nopProducer{} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newTestPackager(b, testConfig(b), bc.prod(b))
			sim, err := NewSimulation(SimulateConfig{Alerts: benchAlerts, Start: nightStart}, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for i := range 2 { // history to attach
				if _, err := p.Package(ctx, sim.Exposure(i)); err != nil {
					b.Fatal(err)
				}
			}
			var lat []time.Duration
			var bytes int64
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				exp := sim.Exposure(2 + i)
				exp.Arrived = time.Now()
				b.StartTimer()
				res, err := p.Package(ctx, exp)
				if err != nil || res.Alerts != benchAlerts {
					b.Fatalf("%+v %v", res, err)
				}
				lat = append(lat, res.Latency)
				bytes += res.Bytes
			}
			report(b, lat, bytes)
		})
	}
}

// BenchmarkPackageBaseline produces 10,000 pre-built ~68 kB alerts (the same
// bytes each time) into kfake: the cost of the producer and broker alone.
func BenchmarkPackageBaseline(b *testing.B) {
	c := newCluster(b, 1)
	cl := newProducer(b, c)
	p := newTestPackager(b, testConfig(b), nopProducer{})
	sim, _ := NewSimulation(SimulateConfig{Alerts: 1, Start: nightStart}, nil)
	d := sim.Exposure(0).Detections[0]
	rec, err := p.encode(&d)
	if err != nil {
		b.Fatal(err)
	}
	topic := rec.Topic
	val := append([]byte(nil), rec.Value...)
	var lat []time.Duration
	var total int64
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		var wg sync.WaitGroup
		wg.Add(benchAlerts)
		for range benchAlerts {
			cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(d.ObjectID), Value: val}, func(_ *kgo.Record, err error) {
				if err != nil {
					b.Error(err)
				}
				wg.Done()
			})
		}
		wg.Wait()
		lat = append(lat, time.Since(start))
		total += int64(len(val)) * benchAlerts
	}
	report(b, lat, total)
}

func report(b *testing.B, lat []time.Duration, bytes int64) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	b.ReportMetric(float64(benchAlerts*len(lat))/sum.Seconds(), "alerts/s")
	b.ReportMetric(lat[len(lat)/2].Seconds(), "p50-s")
	b.ReportMetric(lat[(len(lat)*99)/100].Seconds(), "p99-s")
	b.SetBytes(bytes / int64(len(lat)))
}
