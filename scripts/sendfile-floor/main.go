// sendfile-floor measures the least CPU a server can spend serving fetches
// over loopback TCP: for each 4-byte request it sendfile(2)s the next CHUNK
// bytes of FILE, nothing else (no parsing, no checks, no index). Clients in
// this process each read TOTAL bytes, a request at a time, as a Kafka
// consumer fetching CHUNK bytes of one partition does; the server is a child
// process, so its CPU is its own.
//
//	go run ./scripts/sendfile-floor FILE CHUNK CLIENTS TOTAL
//
// prints: MB/s (all clients) and the server's CPU seconds per GB.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "serve" {
		serve(os.Args[2], atoi(os.Args[3]))
		return
	}
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: sendfile-floor FILE CHUNK CLIENTS TOTAL")
		os.Exit(2)
	}
	file, chunk, clients, total := os.Args[1], atoi(os.Args[2]), atoi(os.Args[3]), atoi(os.Args[4])
	srv := exec.Command(os.Args[0], "serve", file, strconv.Itoa(chunk))
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	check(err)
	check(srv.Start())
	defer srv.Process.Kill()
	var addr [64]byte
	n, err := out.Read(addr[:])
	check(err)
	target := strings.TrimSpace(string(addr[:n]))
	c0, t0 := cpu(srv.Process.Pid), time.Now()
	var (
		wg   sync.WaitGroup
		read atomic.Int64
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", target)
			check(err)
			defer c.Close()
			buf := make([]byte, chunk)
			for got := 0; got < total; got += chunk {
				_, err := c.Write([]byte("req!"))
				check(err)
				_, err = io.ReadFull(c, buf)
				check(err)
				read.Add(int64(chunk))
			}
		}()
	}
	wg.Wait()
	secs, gb := time.Since(t0).Seconds(), float64(read.Load())/1e9
	fmt.Printf("%.0f MB/s %.3f s/GB\n", gb*1e3/secs, (cpu(srv.Process.Pid)-c0)/gb)
}

// serve answers each connection's requests with sendfile on a blocking
// socket: one system call per CHUNK, no poller.
func serve(file string, chunk int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	fmt.Println(l.Addr())
	f, err := os.Open(file)
	check(err)
	st, err := f.Stat()
	check(err)
	size := st.Size()
	for {
		c, err := l.Accept()
		check(err)
		go func() {
			cf, err := c.(*net.TCPConn).File() // a blocking duplicate
			check(err)
			c.Close()
			defer cf.Close()
			fd := int(cf.Fd())
			var req [4]byte
			var off int64
			for {
				if n, err := syscall.Read(fd, req[:]); n <= 0 || err != nil {
					return
				}
				if off+int64(chunk) > size {
					off = 0
				}
				for left := chunk; left > 0; {
					n, err := syscall.Sendfile(fd, int(f.Fd()), &off, left)
					if err != nil || n <= 0 {
						return
					}
					left -= n
				}
			}
		}()
	}
}

// cpu is a process's user+system CPU seconds (/proc/PID/stat, at 100 Hz).
func cpu(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	check(err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return float64(u+s) / 100
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	check(err)
	return n
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "sendfile-floor:", err)
		os.Exit(1)
	}
}
