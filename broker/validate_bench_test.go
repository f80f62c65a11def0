package broker

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// alertSamples are ZTF's own alerts, ~60-80 kB container files.
const alertSamples = "../../shared/data/ztf/alerts"

// alertBatch lays real ZTF alerts end to end as the records of one batch of
// up to 1 MB, as the packager's producer fills one, and compresses them.
func alertBatch(b *testing.B, compress func([]byte) []byte, attr int16) (batch, int64) {
	b.Helper()
	var files []string
	filepath.WalkDir(alertSamples, func(p string, d os.DirEntry, err error) error {
		if err == nil && filepath.Ext(p) == ".avro" {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		b.Fatalf("no alerts under %s", alertSamples)
	}
	var raw []byte
	n := 0
	for i := 0; len(raw) < 1_000_000-80_000; i++ {
		val, err := os.ReadFile(files[i%len(files)])
		if err != nil {
			b.Fatal(err)
		}
		r := kmsg.Record{OffsetDelta: int32(i), Key: []byte("ZTF19abcdefg"), Value: val}
		body := r.AppendTo(nil)[1:]
		raw = binary.AppendVarint(raw, int64(len(body)))
		raw = append(raw, body...)
		n++
	}
	kb := kmsg.RecordBatch{Magic: 2, Attributes: attr, LastOffsetDelta: int32(n - 1), ProducerID: -1,
		ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(n), Records: compress(raw)}
	out := kb.AppendTo(nil)
	binary.BigEndian.PutUint32(out[offLength:], uint32(len(out)-offEpoch))
	binary.BigEndian.PutUint32(out[offCRC:], crc32.Checksum(out[offAttributes:], castagnoli))
	return batch(out), int64(len(raw))
}

// BenchmarkValidateAlerts is the produce path's check of one 1 MB batch of
// real alerts per codec (zstd frames as the packager's encoder makes them:
// with and without a content checksum, with raw literals as at level 1),
// reported as the CPU of the goroutine doing it (cpuMB/s of records): on a
// shared machine the wall time says little.
func BenchmarkValidateAlerts(b *testing.B) {
	zstdWith := func(o ...zstd.EOption) func([]byte) []byte {
		enc, err := zstd.NewWriter(nil, append([]zstd.EOption{zstd.WithWindowSize(1 << 20),
			zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1)}, o...)...)
		if err != nil {
			b.Fatal(err)
		}
		return func(raw []byte) []byte { return enc.EncodeAll(raw, nil) }
	}
	for _, c := range []struct {
		name     string
		attr     int16
		compress func([]byte) []byte
	}{
		{"none", 0, func(raw []byte) []byte { return raw }},
		{"snappy", 2, func(raw []byte) []byte { return s2.EncodeSnappy(nil, raw) }},
		{"zstd", 4, zstdWith()},
		{"zstd-nocrc", 4, zstdWith(zstd.WithEncoderCRC(false))},
		// as the packager's level 1 makes them
		{"zstd-nocrc-rawlit", 4, zstdWith(zstd.WithEncoderCRC(false), zstd.WithNoEntropyCompression(true))},
	} {
		b.Run(c.name, func(b *testing.B) {
			bt, records := alertBatch(b, c.compress, c.attr)
			b.SetBytes(records)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := threadCPU()
			for range b.N {
				if err := bt.validate(); err != nil {
					b.Fatal(err)
				}
			}
			cpu := threadCPU() - cpu0
			b.ReportMetric(float64(b.N)*float64(records)/cpu.Seconds()/1e6, "cpuMB/s")
		})
	}
}

// threadCPU is the CPU time of the calling OS thread.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(1, &ru) // RUSAGE_THREAD
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
