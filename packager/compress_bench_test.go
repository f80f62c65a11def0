package packager

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// copyingProducer keeps a copy of every value: the packager reuses the
// buffer once the promise has run.
type copyingProducer struct {
	mu   sync.Mutex
	vals [][]byte
}

func (c *copyingProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	c.mu.Lock()
	c.vals = append(c.vals, bytes.Clone(r.Value))
	c.mu.Unlock()
	promise(r, nil)
}

// alertBatches packages a simulated exposure of OCF alerts (after two that
// give the objects history) and lays the alerts end to end in batches of up
// to batchMaxBytes, as the producer fills a record batch.
func alertBatches(b *testing.B, alerts int) [][]byte {
	b.Helper()
	cp := &copyingProducer{}
	p := newTestPackager(b, testConfig(b), cp)
	sim, err := NewSimulation(SimulateConfig{Alerts: alerts, Start: nightStart}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 3 {
		if _, err := p.Package(context.Background(), sim.Exposure(i)); err != nil {
			b.Fatal(err)
		}
	}
	var batches [][]byte
	var cur []byte
	for _, v := range cp.vals[2*alerts:] {
		if len(cur)+len(v) > batchMaxBytes && len(cur) > 0 {
			batches = append(batches, cur)
			cur = nil
		}
		cur = append(cur, v...)
	}
	return append(batches, cur)
}

// BenchmarkCompressBatches compresses 1 MB batches of OCF alerts with each
// codec the packager offers, and with franz-go's own zstd encoder (64 KiB
// window) for comparison, and reports the compressed size as a percentage of
// the alerts (size-%) and the speed of one core in MB/s of alerts.
func BenchmarkCompressBatches(b *testing.B) {
	batches := alertBatches(b, 400)
	var total int64
	for _, bt := range batches {
		total += int64(len(bt))
	}
	stockZstd, err := kgo.DefaultCompressor(kgo.ZstdCompression())
	if err != nil {
		b.Fatal(err)
	}
	codecs := []struct {
		name string
		c    func() (kgo.Compressor, error)
	}{
		{"zstd", func() (kgo.Compressor, error) { return batchCompressor(CompressionZstd, 0) }},
		{"zstd-3", func() (kgo.Compressor, error) { return batchCompressor(CompressionZstd, 3) }},
		{"zstd-franz-go", func() (kgo.Compressor, error) { return stockZstd, nil }},
		{"lz4", func() (kgo.Compressor, error) { return batchCompressor(CompressionLz4, 0) }},
		{"snappy", func() (kgo.Compressor, error) { return batchCompressor(CompressionSnappy, 0) }},
		{"gzip", func() (kgo.Compressor, error) { return batchCompressor(CompressionGzip, 0) }},
	}
	for _, codec := range codecs {
		b.Run(codec.name, func(b *testing.B) {
			c, err := codec.c()
			if err != nil {
				b.Fatal(err)
			}
			var dst bytes.Buffer
			var out int64
			b.SetBytes(total)
			b.ResetTimer()
			for range b.N {
				out = 0
				for _, bt := range batches {
					dst.Reset()
					got, _ := c.Compress(&dst, bt)
					out += int64(len(got))
				}
			}
			b.ReportMetric(100*float64(out)/float64(total), "size-%")
		})
	}
}
