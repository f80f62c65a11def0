// write-floor measures the least CPU a broker can spend storing bytes that
// it serves from the page cache: for each BYTES in turn it writes that many
// bytes to a new file in DIR, 1 MiB per pwrite(2), with no fsync, no
// checks and no index; the files stay until the last is written, as a
// broker's segments do, and are then removed. vs-kafka.sh runs it with the
// sizes of a round's produce workloads, in their order: on a virtual
// machine whose memory balloon reports free pages to its host, each new
// page-cache page is first faulted in by the host, and that cost, paid by
// every broker per byte it writes, grows with what was written before (the
// first GB may reuse pages freed a moment ago; later ones need pages the
// host took back).
//
//	go run ./scripts/write-floor DIR BYTES...
//
// prints, per BYTES: MB/s and this process's CPU seconds (user + system)
// per GB.
package main

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: write-floor DIR BYTES...")
		os.Exit(2)
	}
	buf := make([]byte, 1<<20)
	rand.New(rand.NewSource(1)).Read(buf)
	var files []string
	defer func() {
		for _, name := range files {
			os.Remove(name)
		}
	}()
	for _, arg := range os.Args[2:] {
		total, err := strconv.ParseInt(arg, 10, 64)
		check(err)
		f, err := os.CreateTemp(os.Args[1], "write-floor-*")
		check(err)
		files = append(files, f.Name())
		c0, t0 := cpu(), time.Now()
		for off := int64(0); off < total; off += int64(len(buf)) {
			_, err := f.WriteAt(buf[:min(int64(len(buf)), total-off)], off)
			check(err)
		}
		secs, gb := time.Since(t0).Seconds(), float64(total)/1e9
		fmt.Printf("%.0f MB/s %.3f s/GB\n", gb*1e3/secs, (cpu()-c0).Seconds()/gb)
		check(f.Close())
	}
}

// cpu is this process's user and system CPU time.
func cpu() time.Duration {
	var ru syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "write-floor:", err)
		os.Exit(1)
	}
}
