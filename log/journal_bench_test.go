//go:build linux

package log

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"sync"
	"testing"
)

// BenchmarkJournal compares, on this machine's disk, the two ways a log
// makes a batch durable under FlushAlways: each partition fsyncing its own
// segment (preallocated, as the broker runs without a journal) and the
// shared journal (one fdatasync of its ring for all). One op is a Produce
// request as Java's producer sends it: one batch to each of the partitions,
// then a wait until all are durable; inflight requests run at once, as a
// client's pipelined requests and several clients do. Reported: MB/s and
// the process's CPU seconds per GB written.
//
// go test -run '^$' -bench Journal -benchtime 2000x ./log/
func BenchmarkJournal(b *testing.B) {
	for _, parts := range []int{1, 6} {
		for _, size := range []int{16 << 10, 64 << 10} {
			for _, mode := range []string{"segments", "journal"} {
				b.Run(fmt.Sprintf("partitions=%d/batch=%dKiB/inflight=5/%s", parts, size>>10, mode), func(b *testing.B) {
					benchJournal(b, mode == "journal", parts, size, 5)
				})
			}
		}
	}
}

func benchJournal(b *testing.B, journal bool, parts, size, inflight int) {
	dir := b.TempDir()
	opts := Options{}
	if journal {
		j, err := OpenJournal(filepath.Join(dir, "journal"), DefaultJournalBytes, Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		opts.Journal = j
	}
	logs := make([]*Log, parts)
	for i := range logs {
		l, err := Open(filepath.Join(dir, fmt.Sprintf("t-%d", i)), Config{Flush: FlushAlways, RetentionAge: -1}, opts)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		logs[i] = l
	}
	if journal {
		if err := opts.Journal.Start(); err != nil {
			b.Fatal(err)
		}
		waitFilled(b, opts.Journal)
	}
	// Batches of 1 KiB records, made once; each write patches its offset.
	records := max(1, size/1100)
	batches := make([][]byte, 64)
	rng := rand.New(rand.NewSource(1))
	for i := range batches {
		batches[i] = makeBatch(rng, records, 1, size/records-20)
	}
	var bytes int64
	for _, bt := range batches {
		bytes += int64(len(bt))
	}
	b.SetBytes(bytes / int64(len(batches)) * int64(parts))
	cpu0 := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	ops := make(chan int)
	for w := 0; w < inflight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ends := make([]int64, parts)
			for op := range ops {
				for p, l := range logs {
					info, err := l.Write(append([]byte(nil), batches[(op+p)%len(batches)]...))
					if err != nil {
						b.Error(err)
						return
					}
					ends[p] = info.LastOffset + 1
				}
				for p, l := range logs {
					if err := l.WaitDurable(ends[p]); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		ops <- i
	}
	close(ops)
	wg.Wait()
	b.StopTimer()
	gb := float64(b.N) * float64(bytes/int64(len(batches))*int64(parts)) / 1e9
	b.ReportMetric((cpuTime()-cpu0).Seconds()/gb, "cpu-s/GB")
}
