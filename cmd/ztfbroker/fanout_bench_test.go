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
	for _, s := range setups {
		cfg := broker.DefaultConfig()
		cfg.DataDir = filepath.Join(b.TempDir(), "data")
		pcfg := protocol.DefaultConfig()
		if s.name == "autotuned" {
			pcfg.SendBufferBytes = -1
		}
		s.addr, _ = benchServer(b, cfg, pcfg)
		produceRandom(b, s.addr, topic, msgs, size, rng)
	}
	fanout := func(s *setup) {
		if err := kcatReaders(s.addr, topic, readers, msgs, size); err != nil {
			b.Fatalf("%s: %v", s.name, err)
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

// produceRandom writes n records of size random bytes to topic at addr,
// in batches of about 1 MB as kcat produces them.
func produceRandom(b *testing.B, addr, topic string, n, size int, rng *rand.Rand) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.ProducerLinger(20*time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	for range n {
		value := make([]byte, size)
		rng.Read(value)
		cl.Produce(context.Background(), &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// kcatReaders runs readers kcat processes at once, each reading topic's n
// messages from its start, and checks that each read n*size bytes.
func kcatReaders(addr, topic string, readers, n, size int) error {
	if _, err := exec.LookPath("kcat"); err != nil {
		return fmt.Errorf("kcat is needed (apt-get install -y kcat): %w", err)
	}
	errs := make(chan error, readers)
	for range readers {
		go func() {
			out, err := exec.Command("kcat", "-b", addr, "-t", topic, "-C", "-o", "beginning", "-c", strconv.Itoa(n),
				"-q", "-f", "%S\n").Output()
			var sum int64
			for _, f := range strings.Fields(string(out)) {
				v, _ := strconv.ParseInt(f, 10, 64)
				sum += v
			}
			if err == nil && sum != int64(n*size) {
				err = fmt.Errorf("read %d bytes, want %d", sum, n*size)
			}
			if err != nil {
				err = fmt.Errorf("kcat: %w", err)
			}
			errs <- err
		}()
	}
	var first error
	for range readers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// BenchmarkConsumeSysmon reads one 720 MB topic (12,000 messages of 60 kB
// in batches of about 1 MB, as scripts/vs-kafka.sh at scale 3) from two `ztfbroker serve` processes side by
// side, taking turns each op: "awake" runs as the binary starts itself
// (sysmon kept out of its deep sleep, sysmon.go) and "asleep" with
// GODEBUG=schedtrace=0 (the Go runtime's default). Each op reads the topic
// with one kcat, then with 8 at once. Per broker and reader count it
// reports MB/s and the broker process's CPU seconds per GB read.
func BenchmarkConsumeSysmon(b *testing.B) {
	const (
		msgs, size = 12_000, 60_000
		topic      = "consume"
	)
	type setup struct {
		name  string
		proc  *serveProc
		bytes [2]int64
		secs  [2]float64
		cpu   [2]float64
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	setups := []*setup{
		{name: "awake", proc: startBrokerEnv(b, env, "")},
		{name: "asleep", proc: startBrokerEnv(b, append(env, "GODEBUG=schedtrace=0"), "")},
	}
	rng := rand.New(rand.NewSource(16))
	for _, s := range setups {
		produceRandom(b, s.proc.Kafka, topic, msgs, size, rng)
		if err := kcatReaders(s.proc.Kafka, topic, 1, msgs, size); err != nil { // the page cache, verified ranges
			b.Fatal(err)
		}
	}
	readers := [2]int{1, 8}
	b.ResetTimer()
	for i := range b.N {
		for j := range setups {
			s := setups[(i+j)%len(setups)]
			for k, n := range readers {
				t0, cpu0 := time.Now(), pidCPU(b, s.proc.cmd.Process.Pid)
				if err := kcatReaders(s.proc.Kafka, topic, n, msgs, size); err != nil {
					b.Fatalf("%s: %v", s.name, err)
				}
				s.secs[k] += time.Since(t0).Seconds()
				s.cpu[k] += (pidCPU(b, s.proc.cmd.Process.Pid) - cpu0).Seconds()
				s.bytes[k] += int64(n * msgs * size)
			}
		}
	}
	b.StopTimer()
	for _, s := range setups {
		for k, n := range readers {
			gb := float64(s.bytes[k]) / 1e9
			b.ReportMetric(gb*1e3/s.secs[k], fmt.Sprintf("%s-%dx-MB/s", s.name, n))
			b.ReportMetric(s.cpu[k]/gb, fmt.Sprintf("%s-%dx-cpu-s/GB", s.name, n))
		}
	}
}

// pidCPU is the CPU time process pid has spent (utime and stime in
// /proc/<pid>/stat, in USER_HZ, 100 on Linux).
func pidCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// The command name may hold spaces; fields count from after its ')'.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	return time.Duration(utime+stime) * time.Second / 100
}
