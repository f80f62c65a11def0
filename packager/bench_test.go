package packager

import (
	"context"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

type nopProducer struct{}

func (nopProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	promise(r, nil)
}

const benchAlerts = 10_000

// benchTargets are where a benchmark produces: kfake storing the records
// (memory grows by an exposure, ~0.7 GB, per iteration), kfake acknowledging
// without storing, and no broker at all (packaging alone).
var benchTargets = []struct {
	name string
	prod func(b *testing.B) Producer
}{
	{"kfake", func(b *testing.B) Producer { return newProducer(b, newCluster(b, 1)) }},
	{"kfake-blackhole", func(b *testing.B) Producer {
		c, err := kfake.NewCluster(kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3), kfake.BlackholeProduce())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		return newProducer(b, c)
	}},
	{"nop", func(*testing.B) Producer { return nopProducer{} }},
}

// BenchmarkPackageExposure packages and acknowledges one simulated exposure
// of 10,000 alerts (objects with two earlier visits of history) per op.
// Compare with BenchmarkPackageBaseline in the same run.
func BenchmarkPackageExposure(b *testing.B) {
	for _, format := range []Format{FormatOCF, FormatConfluent} {
		for _, bt := range benchTargets {
			if format == FormatConfluent && bt.name == "nop" {
				continue
			}
			b.Run(string(format)+"/"+bt.name, func(b *testing.B) {
				cfg := testConfig(b)
				cfg.Format = format
				p := newTestPackager(b, cfg, bt.prod(b))
				sim, err := NewSimulation(SimulateConfig{Alerts: benchAlerts, Start: nightStart}, nil)
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				for i := range 2 {
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
}

// BenchmarkPackageBaseline produces 10,000 pre-built alerts (the same ~68 kB
// container file) per op and waits for their acknowledgement: the cost of
// the producer and broker alone.
func BenchmarkPackageBaseline(b *testing.B) {
	for _, bt := range benchTargets[:2] {
		b.Run(bt.name, func(b *testing.B) {
			prod := bt.prod(b)
			p := newTestPackager(b, testConfig(b), nopProducer{})
			sim, _ := NewSimulation(SimulateConfig{Alerts: 1, Start: nightStart}, nil)
			d := sim.Exposure(0).Detections[0]
			rec, err := p.encode(&d)
			if err != nil {
				b.Fatal(err)
			}
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
					prod.Produce(ctx, &kgo.Record{Topic: rec.Topic, Key: rec.Key, Value: val}, func(_ *kgo.Record, err error) {
						if err != nil {
							b.Error(err)
						}
						wg.Done()
					})
				}
				prod.(*kgo.Client).Flush(ctx)
				wg.Wait()
				lat = append(lat, time.Since(start))
				total += int64(len(val)) * benchAlerts
			}
			report(b, lat, total)
		})
	}
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
	b.ReportMetric(float64(bytes)/float64(benchAlerts*len(lat)), "B/alert")
	b.SetBytes(bytes / int64(len(lat)))
}

// BenchmarkPackageIngestRead reads and checks an ingest exposure folder of
// 2,000 candidates (JSON lines, 6,000 gzipped FITS cutouts): the work an
// ingested exposure adds before packaging.
func BenchmarkPackageIngestRead(b *testing.B) {
	const n = 2000
	schema, err := LoadSchema()
	if err != nil {
		b.Fatal(err)
	}
	sim, _ := NewSimulation(SimulateConfig{Alerts: n, Start: nightStart}, nil)
	exp := sim.Exposure(0)
	dir := b.TempDir()
	if err := WriteIngestExposure(dir, "e", exp.Detections, exp.Limits, exp.Forced); err != nil {
		b.Fatal(err)
	}
	in := NewIngest(dir, 0, nil, schema)
	b.ResetTimer()
	for range b.N {
		got := in.Read("e")
		if len(got.Detections) != n || len(got.Rejects) != 0 {
			b.Fatalf("%d detections, %d rejects", len(got.Detections), len(got.Rejects))
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "alerts/s")
}

// BenchmarkSimulatedExposure builds one simulated exposure of 10,000 alerts
// (30,000 cutouts rendered) and packages it to a producer that acknowledges
// at once: what serve's simulation costs per exposure, before the broker.
// The build alone is reported as build-s, and cpu-s is the process's CPU
// time per op (wall time is unreliable on a shared machine).
func BenchmarkSimulatedExposure(b *testing.B) {
	p := newTestPackager(b, testConfig(b), nopProducer{})
	sim, err := NewSimulation(SimulateConfig{Alerts: benchAlerts, Interval: 40 * time.Second, Start: nightStart}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var build time.Duration
	var bytes int64
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		exp := sim.Exposure(i)
		build += time.Since(start)
		res, err := p.Package(ctx, exp)
		if err != nil || res.Alerts != benchAlerts {
			b.Fatalf("%+v %v", res, err)
		}
		bytes += res.Bytes
	}
	b.ReportMetric(build.Seconds()/float64(b.N), "build-s")
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s")
	b.ReportMetric(float64(bytes)/float64(benchAlerts*b.N), "B/alert")
	b.SetBytes(bytes / int64(b.N))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
