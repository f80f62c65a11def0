package alertindex

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// cpuTime is the process's user and system CPU so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIndexing is what the follower spends on each alert: decode the
// summary out of a real alert's bytes and add it in synced batches of
// 2,000, as Run does. cpu-ms/10k-alerts is the process's CPU per 10,000
// alerts (the fsyncs' waits are not CPU).
func BenchmarkIndexing(b *testing.B) {
	var values [][]byte
	dec := Decoder{Schemas: avrofile.NewSchemas(0)}
	for _, p := range sampleFiles(b) {
		v, _ := os.ReadFile(p)
		if _, err := dec.Decode(v); err == nil {
			values = append(values, v)
		}
	}
	// The writer schemas are parsed before the clock starts: a night's
	// stream carries one.
	idx, err := Open(filepath.Join(b.TempDir(), "idx"), DefaultConfig().CacheBytes, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	const batch = 2000
	sums := make([]Summary, 0, batch)
	var bytes int64
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		v := values[i%len(values)]
		bytes += int64(len(v))
		s, err := dec.Decode(v)
		if err != nil {
			b.Fatal(err)
		}
		s.Candid, s.Topic, s.Offset = int64(i), "ztf_20260101_programid1", int64(i)
		sums = append(sums, s)
		if len(sums) == batch || i == b.N-1 {
			if _, err := idx.Add(sums); err != nil {
				b.Fatal(err)
			}
			sums = sums[:0]
		}
	}
	cpu := cpuTime() - cpu0
	b.SetBytes(bytes / int64(b.N))
	b.ReportMetric(float64(cpu.Milliseconds())*10000/float64(b.N), "cpu-ms/10k-alerts")
}

// million builds, once per run, an index of n synthetic alerts shaped
// like a month of ZTF: objects over the sky north of -30 degrees, each
// seen about three times in 30 nights of 8 hours.
var million struct {
	once  sync.Once
	idx   *Index
	sums  []Summary
	dir   string
	build time.Duration
	cpu   time.Duration
}

const benchAlerts = 1_000_000

func millionIndex(b *testing.B) (*Index, []Summary) {
	million.once.Do(func() {
		dir, err := os.MkdirTemp("", "alertindex-bench-")
		if err != nil {
			b.Fatal(err)
		}
		million.dir = dir
		idx, err := Open(filepath.Join(dir, "idx"), 32<<20, nil)
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(42, 42))
		sums := make([]Summary, benchAlerts)
		const nights, hours = 30, 8.0
		for i := 0; i < benchAlerts; {
			ra := rng.Float64() * 360
			dec := math.Asin(-0.5+1.5*rng.Float64()) * 180 / math.Pi // uniform on the sphere above -30
			obj := fmt.Sprintf("ZTF26%07x", i)
			for k := 0; k < 3 && i < benchAlerts; k++ {
				night := rng.IntN(nights)
				jd := 2461000.5 + float64(night) + 0.1 + rng.Float64()*hours/24
				sums[i] = Summary{Candid: int64(3_000_000_000_000_000_000 + i), ObjectID: obj,
					Topic: fmt.Sprintf("ztf_202601%02d_programid1", night+1), Partition: int32(i % 4), Offset: int64(i),
					RA: ra + rng.NormFloat64()*1e-5, Dec: dec + rng.NormFloat64()*1e-5, JD: jd, Fid: int32(1 + rng.IntN(2)),
					MagPSF: 16 + 5*rng.Float32(), SigmaPSF: 0.1, RB: rng.Float32(), DRB: rng.Float32(),
					IsDiffPos: "t", NDetHist: int32(k + 1), ProgramID: 1}
				i++
			}
		}
		start, cpu0 := time.Now(), cpuTime()
		for i := 0; i < len(sums); i += 10000 {
			if _, err := idx.Add(sums[i:min(i+10000, len(sums))]); err != nil {
				b.Fatal(err)
			}
		}
		if err := idx.Flush(); err != nil {
			b.Fatal(err)
		}
		million.build, million.cpu = time.Since(start), cpuTime()-cpu0
		// Searches run on the store as it settles, not during the
		// compactions a bulk load leaves.
		if err := idx.Compact(); err != nil {
			b.Fatal(err)
		}
		million.idx, million.sums = idx, sums
	})
	if million.idx == nil {
		b.Fatal("no index")
	}
	return million.idx, million.sums
}

// percentiles reports p50 and p99 of the durations in microseconds.
func percentiles(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkMillion: searches of an index of a million alerts, each query
// timed alone for p50 and p99; found/op is the alerts it returns.
func BenchmarkMillion(b *testing.B) {
	idx, sums := millionIndex(b)
	b.Run("Size", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = idx.DiskBytes()
		}
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		b.ReportMetric(float64(idx.DiskBytes())/float64(len(sums))*1e6/(1<<20), "MiB-on-disk/million")
		b.ReportMetric(million.build.Seconds(), "build-s")
		b.ReportMetric(million.cpu.Seconds()*10000/float64(len(sums))*1000, "build-cpu-ms/10k")
		b.ReportMetric(float64(ru.Maxrss)/1024, "max-rss-MiB")
	})
	query := func(name string, q func(rng *rand.Rand) int) {
		b.Run(name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(7, uint64(len(name))))
			ds := make([]time.Duration, 0, b.N)
			found := 0
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				found += q(rng)
				ds = append(ds, time.Since(t0))
			}
			percentiles(b, ds)
			b.ReportMetric(float64(found)/float64(b.N), "found/op")
		})
	}
	query("Cone5arcsec", func(rng *rand.Rand) int {
		s := sums[rng.IntN(len(sums))]
		out, _, err := idx.Cone(s.RA, s.Dec, 5.0/3600, 1000, 100_000, nil)
		if err != nil || len(out) == 0 {
			b.Fatalf("cone around an alert: %d, %v", len(out), err)
		}
		return len(out)
	})
	query("Cone1degree", func(rng *rand.Rand) int {
		s := sums[rng.IntN(len(sums))]
		out, _, err := idx.Cone(s.RA, s.Dec, 1, 1000, 100_000, nil)
		if err != nil {
			b.Fatal(err)
		}
		return len(out)
	})
	query("Object", func(rng *rand.Rand) int {
		s := sums[rng.IntN(len(sums))]
		out, err := idx.Object(s.ObjectID, 200)
		if err != nil || len(out) == 0 {
			b.Fatal(err)
		}
		return len(out)
	})
	query("HourWindow", func(rng *rand.Rand) int {
		s := sums[rng.IntN(len(sums))]
		out, _, err := idx.Window(Window{Since: s.JD - 0.5/24, Until: s.JD + 0.5/24, Limit: 1000, ScanMax: 100_000})
		if err != nil || len(out) == 0 {
			b.Fatal(err)
		}
		return len(out)
	})
	query("HourWindowAllPages", func(rng *rand.Rand) int {
		s := sums[rng.IntN(len(sums))]
		w := Window{Since: s.JD - 0.5/24, Until: s.JD + 0.5/24, Limit: 1000, ScanMax: 100_000}
		n := 0
		for {
			out, next, err := idx.Window(w)
			if err != nil {
				b.Fatal(err)
			}
			n += len(out)
			if next == nil {
				return n
			}
			w.After = next
		}
	})
	query("HourWindowFiltered", func(rng *rand.Rand) int {
		s := sums[rng.IntN(len(sums))]
		out, _, err := idx.Window(Window{Since: s.JD - 0.5/24, Until: s.JD + 0.5/24, Limit: 100, ScanMax: 100_000,
			Match: func(x *Summary) bool { return x.Fid == 2 && x.RB >= 0.65 && x.MagPSF < 18 }})
		if err != nil {
			b.Fatal(err)
		}
		return len(out)
	})
}

// TestMain removes the million-alert index a benchmark built.
func TestMain(m *testing.M) {
	code := m.Run()
	if million.idx != nil {
		million.idx.Close()
		os.RemoveAll(million.dir)
	}
	os.Exit(code)
}
