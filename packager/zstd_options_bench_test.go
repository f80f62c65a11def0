package packager

import (
	"bytes"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkZstdOptions compresses 1 MB batches of simulated OCF alerts with
// the packager's zstd settings (level1, the default) beside the ones
// measured to choose them, and snappy for scale: the compressed size as a
// percentage of the alerts (size-%) and the CPU of the compressing thread in
// MB/s of alerts (cpuMB/s; the wall time of a shared machine says little).
func BenchmarkZstdOptions(b *testing.B) {
	batches := alertBatches(b, 400)
	var total int64
	for _, bt := range batches {
		total += int64(len(bt))
	}
	with := func(o ...zstd.EOption) []zstd.EOption { return append(zstdOptions(1), o...) }
	for _, v := range []struct {
		name string
		opts []zstd.EOption // nil: snappy
	}{
		{"level1", zstdOptions(1)},
		{"level1-checksum-entropy", with(zstd.WithEncoderCRC(true), zstd.WithNoEntropyCompression(false))}, // before
		{"level1-entropy", with(zstd.WithNoEntropyCompression(false))},
		{"level1-lowmem", with(zstd.WithLowerEncoderMem(true))},
		{"level3", zstdOptions(3)},
		{"snappy", nil},
	} {
		b.Run(v.name, func(b *testing.B) {
			var c kgo.Compressor
			if v.opts == nil {
				c, _ = batchCompressor(CompressionSnappy, 0)
			} else {
				enc, err := zstd.NewWriter(nil, v.opts...)
				if err != nil {
					b.Fatal(err)
				}
				c = zstdCompressor{enc}
			}
			var dst bytes.Buffer
			var out int64
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.SetBytes(total)
			b.ResetTimer()
			cpu0 := threadCPU()
			for range b.N {
				out = 0
				for _, bt := range batches {
					dst.Reset()
					got, _ := c.Compress(&dst, bt)
					out += int64(len(got))
				}
			}
			b.ReportMetric(float64(total)*float64(b.N)/(threadCPU()-cpu0).Seconds()/1e6, "cpuMB/s")
			b.ReportMetric(100*float64(out)/float64(total), "size-%")
		})
	}
}

// threadCPU is the CPU time of the calling OS thread.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(1, &ru) // RUSAGE_THREAD
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
