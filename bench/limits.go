package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Limits are the machine's own ceilings, measured in the same run as the
// brokers so that each broker can be read as a fraction of them.
type Limits struct {
	// DiskSyncMBps is sequential writes of DiskBlockBytes, each followed
	// by fdatasync, to the data disk: the most a broker that syncs every
	// write could sustain.
	DiskSyncMBps   float64 `json:"disk_fdatasync_mb_per_s"`
	DiskBlockBytes int     `json:"disk_block_bytes"`
	DiskDir        string  `json:"disk_dir"`
	DiskSeconds    float64 `json:"disk_seconds"`
	// LoopbackMBps is one TCP stream over 127.0.0.1.
	LoopbackMBps    float64 `json:"loopback_tcp_mb_per_s"`
	LoopbackSeconds float64 `json:"loopback_seconds"`
}

// measureDisk writes block-sized chunks to a temporary file in dir, with
// fdatasync after each, for d or until maxBytes.
func measureDisk(ctx context.Context, dir string, block int, d time.Duration, maxBytes int64) (mbps, secs float64, err error) {
	f, err := os.CreateTemp(dir, "bench-fdatasync-*")
	if err != nil {
		return 0, 0, fmt.Errorf("disk limit: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, block)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	var n int64
	for time.Since(start) < d && n < maxBytes && ctx.Err() == nil {
		if _, err := f.Write(buf); err != nil {
			return 0, 0, fmt.Errorf("disk limit: %w", err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, 0, fmt.Errorf("disk limit: fdatasync: %w", err)
		}
		n += int64(block)
	}
	secs = time.Since(start).Seconds()
	return float64(n) / 1e6 / secs, secs, nil
}

// measureLoopback sends d worth of data over one loopback TCP connection.
func measureLoopback(ctx context.Context, d time.Duration) (mbps, secs float64, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, fmt.Errorf("loopback limit: %w", err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, 0, fmt.Errorf("loopback limit: %w", err)
	}
	buf := make([]byte, 256<<10)
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, 0, fmt.Errorf("loopback limit: %w", err)
		}
	}
	c.Close()
	n := <-got
	secs = time.Since(start).Seconds()
	return float64(n) / 1e6 / secs, secs, nil
}

func measureLimits(ctx context.Context, dir string, d time.Duration) (Limits, error) {
	l := Limits{DiskBlockBytes: 1 << 20, DiskDir: dir}
	if abs, err := filepath.Abs(dir); err == nil {
		l.DiskDir = abs
	}
	var err error
	if l.DiskSyncMBps, l.DiskSeconds, err = measureDisk(ctx, dir, l.DiskBlockBytes, d, 4<<30); err != nil {
		return l, err
	}
	if l.LoopbackMBps, l.LoopbackSeconds, err = measureLoopback(ctx, d); err != nil {
		return l, err
	}
	return l, nil
}
