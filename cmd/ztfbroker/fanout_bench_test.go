package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/protocol"
)

// BenchmarkFanoutSendBuffer is ZTF's fan-out, downstream brokers reading
// the night at once, as 8 kcat processes each reading one 240 MB topic
// (4,000 messages of 60 kB, in batches of about 1 MB as kcat produces
// them) from its start, 1 MiB per fetch. Two brokers run in this process
// side by side, taking turns each op: socket.send.buffer.bytes at its
// default (near clients get a fixed 256 KiB, protocol/sockbuf.go) and -1
// (the kernel autotunes every buffer). Per broker it reports MB/s over all
// consumers, cpu-s/GB of this process (the broker: kcat runs in processes
// of its own) and machine-cpu-s/GB (/proc/stat: broker and consumers).
func BenchmarkFanoutSendBuffer(b *testing.B) {
	const (
		msgs, size, readers = 4000, 60_000, 8
		topic               = "fanout"
	)
	if _, err := exec.LookPath("kcat"); err != nil {
		b.Fatal("kcat is needed (apt-get install -y kcat): ", err)
	}
	type setup struct {
		name           string
		addr           string
		bytes          int64
		secs, cpu, sys float64
	}
	setups := []*setup{{name: "fixed"}, {name: "autotuned"}}
	rng := rand.New(rand.NewSource(15))
	value := make([]byte, size)
	for _, s := range setups {
		cfg := broker.DefaultConfig()
		cfg.DataDir = filepath.Join(b.TempDir(), "data")
		pcfg := protocol.DefaultConfig()
		if s.name == "autotuned" {
			pcfg.SendBufferBytes = -1
		}
		s.addr, _ = benchServer(b, cfg, pcfg)
		cl, err := kgo.NewClient(kgo.SeedBrokers(s.addr), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
			kgo.ProducerLinger(20*time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression()))
		if err != nil {
			b.Fatal(err)
		}
		for range msgs {
			rng.Read(value)
			cl.Produce(context.Background(), &kgo.Record{Value: bytes.Clone(value)}, func(_ *kgo.Record, err error) {
				if err != nil {
					b.Error(err)
				}
			})
		}
		if err := cl.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		cl.Close()
	}
	// fanout runs the readers against s and checks each read every byte.
	fanout := func(s *setup) {
		var wg sync.WaitGroup
		errs := make(chan error, readers)
		for range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := exec.Command("kcat", "-b", s.addr, "-t", topic, "-C", "-o", "beginning", "-c", strconv.Itoa(msgs),
					"-q", "-f", "%S\n").Output()
				var sum int64
				for _, f := range strings.Fields(string(out)) {
					n, _ := strconv.ParseInt(f, 10, 64)
					sum += n
				}
				if err == nil && sum != msgs*size {
					err = fmt.Errorf("read %d bytes, want %d", sum, msgs*size)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatalf("%s: kcat: %v", s.name, err)
			}
		}
	}
	for _, s := range setups {
		fanout(s) // the page cache and both brokers' verified ranges
	}
	b.ResetTimer()
	for i := range b.N {
		for j := range setups {
			s := setups[(i+j)%len(setups)] // each goes first in turn
			t0, cpu0, sys0 := time.Now(), processCPU(), machineCPU(b)
			fanout(s)
			s.secs += time.Since(t0).Seconds()
			s.cpu += (processCPU() - cpu0).Seconds()
			s.sys += machineCPU(b) - sys0
			s.bytes += readers * msgs * size
		}
	}
	b.StopTimer()
	for _, s := range setups {
		gb := float64(s.bytes) / 1e9
		b.ReportMetric(gb*1e3/s.secs, s.name+"-MB/s")
		b.ReportMetric(s.cpu/gb, s.name+"-cpu-s/GB")
		b.ReportMetric(s.sys/gb, s.name+"-machine-cpu-s/GB")
	}
}

// machineCPU is the CPU seconds the whole machine has spent busy (user,
// nice, system, irq and softirq in /proc/stat's first line, in USER_HZ).
func machineCPU(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	var ticks float64
	for _, i := range []int{1, 2, 3, 6, 7} {
		n, _ := strconv.ParseFloat(f[i], 64)
		ticks += n
	}
	return ticks / 100
}
