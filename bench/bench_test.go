package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildKfakeServe builds the kfakeserve command into a test directory. The go
// tool is required: without it the test fails rather than measuring nothing.
func buildKfakeServe(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build kfakeserve: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "kfakeserve")
	out, err := exec.Command(goTool, "build", "-o", bin, "./kfakeserve").CombinedOutput()
	if err != nil {
		t.Fatalf("build kfakeserve: %v\n%s", err, out)
	}
	return bin
}

// A short run against kfake, as its own process, writes a table, JSON and
// both plots with every figure present and positive.
func TestBenchKfake(t *testing.T) {
	kfakeServe := buildKfakeServe(t)
	dir := t.TempDir()
	var log bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Duration: 2 * time.Second, Kfake: &Process{Binary: kfakeServe},
		Producers: 2, Partitions: 3, Rates: []float64{4, 16},
		LimitsDuration: time.Second, DataDir: dir, MaxBytes: 200 << 20, Log: &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	checkReport(t, rep, []string{"kfake"})
	if k := rep.Targets[0]; k.Kind != "kfake" || k.PID <= 0 || k.PID == os.Getpid() {
		t.Errorf("kfake is not its own process: kind %q pid %d (bench pid %d)", k.Kind, k.PID, os.Getpid())
	}
	var table bytes.Buffer
	rep.WriteTable(&table)
	for _, want := range []string{"kfake", "produce", "consume", "p99.9 ms", "fdatasync", "loopback"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	t.Log("\n" + table.String())
	if out := os.Getenv("BENCH_TEST_OUT"); out != "" {
		dir = out
	}
	writeOutputs(t, rep, dir)
}

func writeOutputs(t *testing.T, rep *Report, dir string) {
	t.Helper()
	js := filepath.Join(dir, "bench.json")
	if err := rep.WriteJSON(js); err != nil {
		t.Fatal(err)
	}
	var back Report
	b, _ := os.ReadFile(js)
	if err := json.Unmarshal(b, &back); err != nil || len(back.Targets) != len(rep.Targets) {
		t.Fatalf("JSON does not read back: %v", err)
	}
	for _, name := range []string{"bench.png", "bench.svg"} {
		p := filepath.Join(dir, name)
		if err := rep.WritePlot(p); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		if strings.HasSuffix(name, ".png") {
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil || img.Bounds().Dx() != plotW {
				t.Fatalf("%s: %v", name, err)
			}
		} else if !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("MB/s offered")) {
			t.Fatalf("%s is not the plot", name)
		}
	}
}

// checkReport requires every figure of every named target to be there and
// positive.
func checkReport(t *testing.T, rep *Report, names []string) {
	t.Helper()
	if rep.Limits == nil || rep.Limits.DiskSyncMBps <= 0 || rep.Limits.LoopbackMBps <= 0 {
		t.Fatalf("machine limits missing: %+v", rep.Limits)
	}
	if len(rep.Targets) != len(names) {
		t.Fatalf("%d targets, want %v", len(rep.Targets), names)
	}
	for i, tr := range rep.Targets {
		if tr.Name != names[i] || tr.Error != "" || len(tr.Errors) > 0 {
			t.Fatalf("target %d: %s: %s %v", i, tr.Name, tr.Error, tr.Errors)
		}
		if len(tr.Throughput) != 4 {
			t.Fatalf("%s: %d throughput phases, want 4", tr.Name, len(tr.Throughput))
		}
		for _, th := range tr.Throughput {
			if th.Records <= 0 || th.RecordsPerSec <= 0 || th.MBps <= 0 || th.CPUSeconds <= 0 || th.MaxRSSBytes <= 0 || th.OfLoopback <= 0 {
				t.Errorf("%s %s %d B: figure missing: %+v", tr.Name, th.Phase, th.RecordBytes, th)
			}
			if th.Phase == "produce" && th.OfDisk <= 0 {
				t.Errorf("%s produce: no fraction of disk", tr.Name)
			}
		}
		if len(tr.Latency) != 2 {
			t.Fatalf("%s: %d latency phases, want 2", tr.Name, len(tr.Latency))
		}
		for _, l := range tr.Latency {
			if l.Sent <= 0 || l.Received <= 0 || l.P50ms <= 0 || l.P99ms < l.P50ms || l.P999ms < l.P99ms || l.Maxms < l.P999ms || l.CPUSeconds <= 0 || l.MaxRSSBytes <= 0 || l.AchievedMBps <= 0 {
				t.Errorf("%s latency at %g MB/s: figure missing or out of order: %+v", tr.Name, l.OfferedMBps, l)
			}
		}
	}
}

func TestBenchNeedsTargets(t *testing.T) {
	rep, err := Run(context.Background(), Config{Duration: time.Second, SkipLimits: true})
	if err == nil || rep != nil {
		t.Fatalf("no targets: want an error, got %v", err)
	}
}

// FindKfakeServe takes --kfake-binary first, then a binary next to the
// running executable, then PATH, and otherwise says how to build one.
func TestFindKfakeServe(t *testing.T) {
	exeDir, pathDir, empty := t.TempDir(), t.TempDir(), t.TempDir()
	put := func(dir, name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	explicit := put(t.TempDir(), "my-kfake")
	nextTo := put(exeDir, "ztfbroker-kfake")
	onPath := put(pathDir, "kfakeserve")
	t.Setenv("PATH", pathDir)
	for _, c := range []struct {
		name, explicit, exeDir, want string
	}{
		{"explicit", explicit, exeDir, explicit},
		{"next to the executable", "", exeDir, nextTo},
		{"on PATH", "", empty, onPath},
	} {
		if got, err := findKfakeServe(c.explicit, c.exeDir); err != nil || got != c.want {
			t.Errorf("%s: got %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	t.Setenv("PATH", empty)
	for _, explicit := range []string{"", filepath.Join(empty, "missing")} {
		_, err := findKfakeServe(explicit, empty)
		if err == nil || !strings.Contains(err.Error(), "go build -o ztfbroker-kfake ./bench/kfakeserve") {
			t.Errorf("%q: want an error saying how to build kfakeserve, got %v", explicit, err)
		}
	}
}

// Asking for kfake without its binary is a configuration error naming the
// flag.
func TestBenchKfakeNeedsBinary(t *testing.T) {
	cfg := Config{Duration: time.Second, SkipLimits: true, Kfake: &Process{}}
	cfg.Defaults()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--kfake-binary") {
		t.Fatalf("empty kfake binary: want an error naming --kfake-binary, got %v", err)
	}
}
