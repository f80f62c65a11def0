package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/log"
	"github.com/ztfbroker/ztfbroker/packager"
	"github.com/ztfbroker/ztfbroker/protocol"
)

// benchBroker runs the real broker and Kafka listener in this process, as
// serve wires them, on a loopback port; stop (also run at cleanup) stops it.
// flushEvery > 0 fsyncs the logs on that interval instead of before each
// acknowledgement.
// tweak, when given, changes the configuration first.
func benchBroker(b *testing.B, dataDir string, flushEvery time.Duration, tweak ...func(*broker.Config)) (addr string, stop func()) {
	b.Helper()
	cfg := broker.DefaultConfig()
	cfg.DataDir = dataDir
	if flushEvery > 0 {
		cfg.Topic.Flush, cfg.Topic.FlushInterval = log.FlushInterval, flushEvery
	}
	for _, f := range tweak {
		f(&cfg)
	}
	return benchServer(b, cfg, protocol.DefaultConfig())
}

// benchServer is benchBroker with both configurations given: the broker's
// and the Kafka listener's.
func benchServer(b *testing.B, cfg broker.Config, pcfg protocol.Config) (addr string, stop func()) {
	b.Helper()
	br, err := broker.Open(cfg, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	gc, err := broker.OpenGroupCoordinator(br, broker.DefaultGroupConfig(), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	srv, err := protocol.NewServer(pcfg, br, gc, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	stop = sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		gc.Close()
		if err := br.Close(); err != nil {
			b.Error(err)
		}
	})
	b.Cleanup(stop)
	return ln.Addr().String(), stop
}

// fetchedBatches sums what a consumer's fetches held, as franz-go reports
// each record batch: its bytes as served and decompressed.
type fetchedBatches struct {
	mu                   sync.Mutex
	compressed, expanded int64
}

func (f *fetchedBatches) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	f.mu.Lock()
	f.compressed += int64(m.CompressedBytes)
	f.expanded += int64(m.UncompressedBytes)
	f.mu.Unlock()
}

// processCPU is the CPU time this process has used, user and system: on a
// shared machine it says what an exposure costs better than its latency.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCompressedNight packages 10,000-alert OCF exposures (after two
// that build the objects' history) through the real broker in this process,
// once per codec side by side, and reports: the exposure's latency from
// arrival to the last acknowledgement (exposure-s, median) and the process's
// CPU time for it (cpu-s, mean: packager and broker), the bytes per alert of
// the alert itself (alert-B), of the record batches on the wire (wire-B) and
// of the partition logs (disk-B), and how fast one franz-go consumer reads
// the night back (consume-alerts/s, consume-MB/s of alert bytes after
// decompression). The broker fsyncs before each acknowledgement, its
// default; the -flush200ms cases fsync every 200 ms instead, which shows
// what of the latency is the disk's.
func BenchmarkCompressedNight(b *testing.B) {
	const alerts, warm = 10_000, 2
	start := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		codec      string
		flushEvery time.Duration
	}{
		{"none", 0}, {"zstd", 0}, {"lz4", 0}, {"snappy", 0},
		{"none", 200 * time.Millisecond}, {"zstd", 200 * time.Millisecond},
	} {
		codec, name := tc.codec, tc.codec
		if tc.flushEvery > 0 {
			name += "-flush" + tc.flushEvery.String()
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			addr, stop := benchBroker(b, filepath.Join(dir, "data"), tc.flushEvery)
			prod, err := packager.NewKafkaProducer(packager.KafkaOptions{Bootstrap: []string{addr}, Compression: codec})
			if err != nil {
				b.Fatal(err)
			}
			defer prod.Close()
			cfg := packager.DefaultConfig()
			cfg.HistoryDir, cfg.RejectDir = filepath.Join(dir, "history"), filepath.Join(dir, "rejects")
			cfg.Compression = codec
			p, err := packager.New(cfg, prod, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			sim, err := packager.NewSimulation(packager.SimulateConfig{Alerts: alerts, Start: start}, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var made int64
			for i := range warm {
				res, err := p.Package(ctx, sim.Exposure(i))
				if err != nil || res.Alerts != alerts {
					b.Fatalf("%+v %v", res, err)
				}
				made += res.Bytes
			}
			var lat []time.Duration
			var cpu time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				exp := sim.Exposure(warm + i)
				exp.Arrived = time.Now()
				b.StartTimer()
				cpu0 := processCPU()
				res, err := p.Package(ctx, exp)
				if err != nil || res.Alerts != alerts {
					b.Fatalf("%+v %v", res, err)
				}
				cpu += processCPU() - cpu0
				lat = append(lat, res.Latency)
				made += res.Bytes
			}
			b.StopTimer()
			total := int64(alerts * (warm + b.N))

			topic := packager.NightTopic(packager.TimeJD(start), 1)
			fetched := &fetchedBatches{}
			consumeStart := time.Now()
			recs := consumeTopic(b, addr, topic, kgo.WithHooks(fetched), kgo.FetchMaxBytes(64<<20))
			took := time.Since(consumeStart)
			var read int64
			for _, r := range recs {
				read += int64(len(r.Value))
			}
			if int64(len(recs)) != total || read != made {
				b.Fatalf("read %d alerts of %d bytes, made %d of %d", len(recs), read, total, made)
			}

			// A clean stop cuts the active segments' preallocated zeros off.
			stop()
			var disk int64
			dirs, _ := filepath.Glob(filepath.Join(dir, "data", topic+"-*"))
			for _, d := range dirs {
				segs, _ := filepath.Glob(filepath.Join(d, "*.log"))
				for _, s := range segs {
					if st, err := os.Stat(s); err == nil {
						disk += st.Size()
					}
				}
			}
			if disk == 0 {
				b.Fatalf("no segments of %s under %s", topic, dir)
			}

			slices.Sort(lat)
			b.ReportMetric(lat[len(lat)/2].Seconds(), "exposure-s")
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s")
			b.ReportMetric(float64(made)/float64(total), "alert-B")
			b.ReportMetric(float64(fetched.compressed)/float64(total), "wire-B")
			b.ReportMetric(float64(disk)/float64(total), "disk-B")
			b.ReportMetric(float64(total)/took.Seconds(), "consume-alerts/s")
			b.ReportMetric(float64(read)/took.Seconds()/1e6, "consume-MB/s")
			b.ReportMetric(0, "ns/op") // the exposure's latency says it better
		})
	}
}

// BenchmarkExposureWarm packages 10,000-alert zstd exposures (after three
// that build the objects' history) through two in-process brokers in turn,
// one exposure each per round, so that a shared machine's changing load
// falls on both alike: "warm", the default, where the log warms the pages
// ahead of its writers between bursts (log/warm.go), and "cold", without
// (log.preallocate=false). Each exposure is followed by 4 s untimed, as
// ZTF's exposures come 30-40 s apart: warming uses such pauses. It
// reports, for each, the median exposure latency from arrival to the last
// acknowledgement (<setup>-exposure-s) and the mean CPU time of this
// process during it (<setup>-cpu-s: packager and broker).
func BenchmarkExposureWarm(b *testing.B) {
	// Three untimed exposures: the history, and the bursts after which
	// the log starts warming (log/warm.go, warmBursts).
	const alerts, warm, pause = 10_000, 3, 4 * time.Second
	start := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	type setup struct {
		name string
		warm bool
		p    *packager.Packager
		sim  *packager.Simulation
		lat  []time.Duration
		cpu  time.Duration
	}
	setups := []*setup{{name: "warm", warm: true}, {name: "cold"}}
	ctx := context.Background()
	for _, s := range setups {
		dir := b.TempDir()
		addr, _ := benchBroker(b, filepath.Join(dir, "data"), 0, func(c *broker.Config) {
			if !s.warm {
				c.Topic.PreallocateBytes = -1
			}
		})
		prod, err := packager.NewKafkaProducer(packager.KafkaOptions{Bootstrap: []string{addr}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(prod.Close)
		cfg := packager.DefaultConfig()
		cfg.HistoryDir, cfg.RejectDir = filepath.Join(dir, "history"), filepath.Join(dir, "rejects")
		if s.p, err = packager.New(cfg, prod, nil, nil); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.p.Close() })
		if s.sim, err = packager.NewSimulation(packager.SimulateConfig{Alerts: alerts, Start: start}, nil); err != nil {
			b.Fatal(err)
		}
	}
	exposure := func(s *setup, i int, timed bool) {
		exp := s.sim.Exposure(i)
		exp.Arrived = time.Now()
		cpu0 := processCPU()
		res, err := s.p.Package(ctx, exp)
		if err != nil || res.Alerts != alerts {
			b.Fatalf("%s: %+v %v", s.name, res, err)
		}
		if timed {
			s.cpu += processCPU() - cpu0
			s.lat = append(s.lat, res.Latency)
		}
		time.Sleep(pause)
	}
	for i := range warm {
		for _, s := range setups {
			exposure(s, i, false)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		for _, s := range setups {
			exposure(s, warm+i, true)
		}
	}
	b.StopTimer()
	for _, s := range setups {
		slices.Sort(s.lat)
		b.ReportMetric(s.lat[len(s.lat)/2].Seconds(), s.name+"-exposure-s")
		b.ReportMetric(s.cpu.Seconds()/float64(b.N), s.name+"-cpu-s")
	}
	b.ReportMetric(0, "ns/op")
}
