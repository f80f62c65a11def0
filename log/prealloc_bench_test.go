package log

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkDurableAppend is one Produce request at a time under
// FlushAlways, with preallocation on and off side by side (issue 14): each
// op writes one batch to every partition, in order, as the broker's
// ProduceDeferred does (each write starts that partition's fsync), then
// waits until all are durable. It reports the op's latency (p50, p99) and
// MB/s. Run it in rounds and compare medians: the disk is shared.
//
// go test -run '^$' -bench DurableAppend -benchtime 300x ./log/
var benchDurableSizes = []int{16 << 10, 64 << 10, 256 << 10}

func BenchmarkDurableAppend(b *testing.B) {
	for _, parts := range []int{1, 6} {
		for _, size := range benchDurableSizes {
			for _, prealloc := range []string{"on", "off"} {
				b.Run(fmt.Sprintf("partitions=%d/batch=%dKiB/prealloc=%s", parts, size>>10, prealloc), func(b *testing.B) {
					cfg := Config{}
					if prealloc == "off" {
						cfg.PreallocateBytes = -1
					}
					benchDurableAppend(b, cfg, parts, size)
				})
			}
		}
	}
}

func benchDurableAppend(b *testing.B, cfg Config, parts, size int) {
	dir := b.TempDir()
	logs := make([]*Log, parts)
	for i := range logs {
		l, err := Open(filepath.Join(dir, fmt.Sprintf("t-%d", i)), cfg, Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		logs[i] = l
	}
	batch := batchOfSize(size)
	produce := func() {
		ends := make([]int64, parts)
		for i, l := range logs {
			info, err := l.Write(batch)
			if err != nil {
				b.Fatal(err)
			}
			ends[i] = info.LastOffset + 1
		}
		for i, l := range logs {
			if err := l.WaitDurable(ends[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Warm up to the full allowance ahead, as a partition that has been
	// taking alerts for a while: the benchmark is then the steady state,
	// where each byte of batches costs one byte of zeros written before.
	for w := 0; w < int(DefaultPreallocateBytes)/size+1; w++ {
		produce()
	}
	for _, l := range logs {
		waitPrealloc(b, l)
	}
	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(parts * size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		produce()
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*9/10])/1e6, "p90-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
	var ahead int64
	for _, l := range logs {
		ahead += l.Preallocated()
	}
	b.ReportMetric(float64(ahead)/float64(parts)/(1<<20), "prealloc-MiB")
}
