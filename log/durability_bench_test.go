//go:build linux

package log

import (
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// BenchmarkDurabilityOptions measures, on this machine's disk, the ways to
// make one Produce request durable when it appends to several partitions
// (issue 14): each op appends batch bytes to every partition's segment file
// and then waits until all of them are on disk.
//
//   - serial: one fdatasync per file, one after another (a request whose
//     partitions are flushed in turn);
//   - parallel: the fdatasyncs at once, one goroutine each (one flusher per
//     partition, as the log has: the file system may share a journal commit);
//   - syncfs: one syncfs(2) for the whole file system (flushes other files'
//     dirty pages too, so it costs more on a busy disk);
//   - overwrite: as serial, but into files whose blocks were written before
//     (recycled, zero-filled segments: no size or extent change to journal);
//   - journal: every partition's bytes appended to one shared file and one
//     fdatasync (a write-ahead journal; segments would be synced lazily).
//
// go test -run '^$' -bench DurabilityOptions ./log/
func BenchmarkDurabilityOptions(b *testing.B) {
	for _, parts := range []int{1, 6} {
		for _, size := range []int{16 << 10, 256 << 10} {
			for _, mode := range []string{"serial", "parallel", "syncfs", "overwrite", "journal"} {
				b.Run(fmt.Sprintf("partitions=%d/batch=%dKiB/%s", parts, size>>10, mode), func(b *testing.B) {
					benchDurability(b, mode, parts, size)
				})
			}
		}
	}
}

func benchDurability(b *testing.B, mode string, parts, size int) {
	dir := b.TempDir()
	n := parts
	if mode == "journal" {
		n = 1
	}
	files := make([]*os.File, n)
	for i := range files {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%d.log", i)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		files[i] = f
	}
	batch := make([]byte, size)
	for i := range batch {
		batch[i] = byte(i * 7)
	}
	if mode == "overwrite" {
		// Recycled segments: the blocks exist and are durable before the
		// run, so later writes change neither size nor extents.
		zero := make([]byte, 1<<20)
		for _, f := range files {
			for w := 0; w < (b.N*size)+(1<<20); w += len(zero) {
				if _, err := f.Write(zero); err != nil {
					b.Fatal(err)
				}
			}
			if err := fdatasync(f); err != nil {
				b.Fatal(err)
			}
		}
	}
	offs := make([]int64, n)
	b.SetBytes(int64(parts * size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		switch mode {
		case "journal":
			for p := 0; p < parts; p++ {
				if _, err := files[0].WriteAt(batch, offs[0]); err != nil {
					b.Fatal(err)
				}
				offs[0] += int64(size)
			}
		default:
			for p, f := range files {
				if _, err := f.WriteAt(batch, offs[p]); err != nil {
					b.Fatal(err)
				}
				offs[p] += int64(size)
			}
		}
		switch mode {
		case "serial", "overwrite", "journal":
			for _, f := range files {
				if err := fdatasync(f); err != nil {
					b.Fatal(err)
				}
			}
		case "parallel":
			var wg sync.WaitGroup
			for _, f := range files {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := fdatasync(f); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
		case "syncfs":
			if err := unix.Syncfs(int(files[0].Fd())); err != nil {
				b.Fatal(err)
			}
		}
	}
}
