package log

import (
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var benchSizes = []struct {
	name string
	size int
}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}}

// batchOfSize builds one v2 batch of exactly size bytes.
func batchOfSize(size int) []byte {
	rng := rand.New(rand.NewSource(int64(size)))
	b := makeBatch(rng, 1, time.Now().UnixMilli(), size-80)
	if d := size - len(b); d != 0 {
		b = makeBatch(rng, 1, time.Now().UnixMilli(), size-80+d)
	}
	return b
}

// BenchmarkAppend compares Append with a plain file receiving the same
// bytes and the same fsyncs: one fdatasync per append under always, one
// every FlushInterval under interval.
func BenchmarkAppend(b *testing.B) {
	for _, policy := range []FlushPolicy{FlushAlways, FlushInterval} {
		for _, sz := range benchSizes {
			batch := batchOfSize(sz.size)
			b.Run(fmt.Sprintf("%v/%s/log", policy, sz.name), func(b *testing.B) {
				l, err := Open(filepath.Join(b.TempDir(), "t-0"), Config{Flush: policy}, Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				b.SetBytes(int64(len(batch)))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := l.Append(batch); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
			})
			b.Run(fmt.Sprintf("%v/%s/baseline", policy, sz.name), func(b *testing.B) {
				appendPlain(b, batch, policy, false)
			})
			b.Run(fmt.Sprintf("%v/%s/baseline+crc", policy, sz.name), func(b *testing.B) {
				appendPlain(b, batch, policy, true)
			})
		}
	}
}

// appendPlain appends batch to a plain file with the log's fsync pattern;
// withCRC adds the CRC32C check the log does on the way in, to separate
// the cost of checking from the cost of storing.
func appendPlain(b *testing.B, batch []byte, policy FlushPolicy, withCRC bool) {
	f, err := os.Create(filepath.Join(b.TempDir(), "plain"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	last := time.Now()
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if withCRC && crc32.Checksum(batch[batchAttributesPos:], castagnoli) == 0 {
			b.Fatal("crc")
		}
		if _, err := f.Write(batch); err != nil {
			b.Fatal(err)
		}
		if policy == FlushAlways || time.Since(last) >= DefaultFlushInterval {
			if err := fdatasync(f); err != nil {
				b.Fatal(err)
			}
			last = time.Now()
		}
	}
	b.StopTimer()
}

// BenchmarkAppendParallel shows group commit: 8 producers under always.
func BenchmarkAppendParallel(b *testing.B) {
	batch := batchOfSize(1 << 10)
	l, err := Open(filepath.Join(b.TempDir(), "t-0"), Config{Flush: FlushAlways}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.SetBytes(int64(len(batch)))
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		mine := append([]byte(nil), batch...)
		for pb.Next() {
			if _, err := l.Append(mine); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

const readDataset = 64 << 20

// BenchmarkRead reads 1 MiB per call sequentially through a 64 MiB log
// (with CRC checks) against pread of a plain file holding the same bytes;
// cold drops the page cache of the files before every read.
func BenchmarkRead(b *testing.B) {
	for _, bs := range []struct {
		name string
		size int
	}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}} {
		dir := b.TempDir()
		l, plain, files := buildReadDataset(b, dir, bs.size)
		if got := len(batchOfSize(bs.size)); got != bs.size {
			b.Fatalf("batch of %d bytes, want %d", got, bs.size)
		}
		for _, temp := range []string{"warm", "cold"} {
			drop := func() {
				if temp == "cold" {
					for _, p := range files {
						dropCache(b, p)
					}
				}
			}
			b.Run(fmt.Sprintf("%s/%s/log", temp, bs.name), func(b *testing.B) {
				dst := make([]byte, 0, 2<<20)
				var off int64
				var n int64
				for i := 0; i < b.N; i++ {
					if temp == "cold" {
						b.StopTimer()
						drop()
						b.StartTimer()
					}
					data, err := l.Read(off, 1<<20, dst[:0])
					if err != nil {
						b.Fatal(err)
					}
					n += int64(len(data))
					h, _ := parseBatchHeader(data[len(data)-bs.size:]) // all batches are bs.size
					off = h.nextOffset()
					if off >= l.HighWatermark() {
						off = 0
					}
				}
				b.SetBytes(n / int64(b.N))
			})
			// The bookkeeping of a zero-copy fetch: the spans of the
			// same 1 MiB, whose bytes the listener sends with sendfile.
			b.Run(fmt.Sprintf("%s/%s/spans", temp, bs.name), func(b *testing.B) {
				var off, n int64
				for i := 0; i < b.N; i++ {
					if temp == "cold" {
						b.StopTimer()
						drop()
						b.StartTimer()
					}
					got, err := l.ReadSpans(off, 1<<20, nil)
					if err != nil || len(got.Tail) > 0 {
						b.Fatalf("%v, %d bytes not in spans", err, len(got.Tail))
					}
					for _, s := range got.Spans {
						n += s.Len
						off += s.Offsets
					}
					got.Release()
					if off >= l.HighWatermark() {
						off = 0
					}
				}
				b.SetBytes(n / int64(b.N))
			})
			for _, withCRC := range []bool{false, true} {
				name := "baseline"
				if withCRC {
					name = "baseline+crc"
				}
				b.Run(fmt.Sprintf("%s/%s/%s", temp, bs.name, name), func(b *testing.B) {
					buf := make([]byte, 1<<20)
					var pos int64
					for i := 0; i < b.N; i++ {
						if temp == "cold" {
							b.StopTimer()
							drop()
							b.StartTimer()
						}
						n, err := plain.ReadAt(buf, pos)
						if n == 0 {
							b.Fatal(err)
						}
						if withCRC {
							for p := 0; p+bs.size <= n; p += bs.size {
								if crc32.Checksum(buf[p+batchAttributesPos:p+bs.size], castagnoli) == 0 {
									b.Fatal("crc")
								}
							}
						}
						pos += int64(n)
						if pos >= readDataset {
							pos = 0
						}
					}
					b.SetBytes(1 << 20)
				})
			}
		}
		l.Close()
		plain.Close()
	}
}

// lastBatchSize returns the size of the last whole batch in data.
func lastBatchSize(data []byte) int64 {
	var last int64
	for len(data) > 0 {
		h, err := parseBatchHeader(data)
		if err != nil {
			break
		}
		last, data = h.Size, data[h.Size:]
	}
	return last
}

func buildReadDataset(b *testing.B, dir string, size int) (*Log, *os.File, []string) {
	l, err := Open(filepath.Join(dir, "t-0"), Config{Flush: FlushInterval}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	batch := batchOfSize(size)
	plainPath := filepath.Join(dir, "plain")
	plain, err := os.Create(plainPath)
	if err != nil {
		b.Fatal(err)
	}
	for written := 0; written < readDataset; written += len(batch) {
		if _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
		if _, err := plain.Write(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := fdatasync(plain); err != nil {
		b.Fatal(err)
	}
	files := []string{plainPath}
	names, _ := os.ReadDir(filepath.Join(dir, "t-0"))
	for _, n := range names {
		files = append(files, filepath.Join(dir, "t-0", n.Name()))
	}
	return l, plain, files
}

func dropCache(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}

// The store keeps no record data in memory: the heap after writing and
// reading 96 MiB is what it was after the first 8 MiB.
func TestHeapDoesNotGrow(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 96 MiB")
	}
	dir := filepath.Join(t.TempDir(), "t-0")
	l := openT(t, nil, dir, Config{SegmentBytes: 4 << 20, IndexIntervalBytes: 1024})
	defer l.Close()
	batch := batchOfSize(16 << 10)
	dst := make([]byte, 0, 2<<20)
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var off int64
	step := func(bytes int) {
		for w := 0; w < bytes; w += len(batch) {
			mustAppend(t, l, batch)
			if w%(1<<20) == 0 {
				data, err := l.Read(off, 1<<20, dst[:0])
				if err != nil {
					t.Fatal(err)
				}
				h, _ := parseBatchHeader(data[len(data)-int(lastBatchSize(data)):])
				off = h.nextOffset()
			}
		}
	}
	step(8 << 20)
	before := heap()
	step(88 << 20)
	after := heap()
	t.Logf("heap %d KiB after 8 MiB, %d KiB after 96 MiB in %d segments", before>>10, after>>10, l.Segments())
	// Per segment the store keeps a struct and three file handles (~1 KiB).
	if after > before+512<<10 {
		t.Fatalf("heap grew from %d to %d bytes", before, after)
	}
}
