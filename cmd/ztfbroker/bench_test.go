package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildKfakeServe builds bench/kfakeserve into a test directory under the
// name bench looks for next to ztfbroker. The go tool is required: without
// it the test fails rather than measuring nothing.
func buildKfakeServe(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build kfakeserve: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "ztfbroker-kfake")
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/ztfbroker/ztfbroker/bench/kfakeserve").CombinedOutput()
	if err != nil {
		t.Fatalf("build kfakeserve: %v\n%s", err, out)
	}
	return bin
}

// A short bench against the embedded broker (the binary TestMain built) and
// kfake (its own command, built here) writes the table, the JSON and the
// plot, with every figure present and positive, each broker its own process.
func TestBenchCommandEmbeddedAndKfake(t *testing.T) {
	kfakeServe := buildKfakeServe(t)
	dir := t.TempDir()
	jsonPath, plotPath := filepath.Join(dir, "bench.json"), filepath.Join(dir, "bench.png")
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := runBench(ctx, []string{
		"--duration", "2s", "--limits-duration", "1s", "--producers", "2", "--partitions", "3",
		"--rates", "4,16", "--max-bytes", "200000000", "--data-dir", dir,
		"--with-embedded", "--binary", binary, "--with-kfake", "--kfake-binary", kfakeServe, "--kfake-process", // still accepted, no effect
		"--json", jsonPath, "--plot", plotPath,
	}, &out, &errb)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var rep struct {
		Limits struct {
			Disk     float64 `json:"disk_fdatasync_mb_per_s"`
			Loopback float64 `json:"loopback_tcp_mb_per_s"`
		} `json:"machine_limits"`
		Targets []struct {
			Name       string
			PID        int
			Error      string
			Errors     []string         `json:"phase_errors"`
			Throughput []map[string]any `json:"throughput"`
			Latency    []map[string]any `json:"latency"`
		} `json:"targets"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Limits.Disk <= 0 || rep.Limits.Loopback <= 0 {
		t.Errorf("machine limits missing: %+v", rep.Limits)
	}
	if len(rep.Targets) != 2 || rep.Targets[0].Name != "ztfbroker" || rep.Targets[1].Name != "kfake" {
		t.Fatalf("targets: %+v", rep.Targets)
	}
	if rep.Targets[1].PID == rep.Targets[0].PID || rep.Targets[1].PID == os.Getpid() {
		t.Errorf("kfake pid %d is not its own process", rep.Targets[1].PID)
	}
	for _, tr := range rep.Targets {
		if tr.Error != "" || len(tr.Errors) > 0 || tr.PID <= 0 {
			t.Errorf("%s: pid %d, %s %v", tr.Name, tr.PID, tr.Error, tr.Errors)
		}
		if len(tr.Throughput) != 4 || len(tr.Latency) != 2 {
			t.Fatalf("%s: %d throughput and %d latency phases, want 4 and 2", tr.Name, len(tr.Throughput), len(tr.Latency))
		}
		for _, th := range tr.Throughput {
			for _, k := range []string{"records_per_s", "mb_per_s", "broker_cpu_seconds", "broker_max_rss_bytes", "fraction_of_loopback_tcp"} {
				if v, _ := th[k].(float64); v <= 0 {
					t.Errorf("%s %v %v B: %s = %v", tr.Name, th["phase"], th["record_bytes"], k, th[k])
				}
			}
		}
		for _, l := range tr.Latency {
			for _, k := range []string{"p50_ms", "p99_ms", "p999_ms", "max_ms", "achieved_mb_per_s", "broker_cpu_seconds", "broker_max_rss_bytes"} {
				if v, _ := l[k].(float64); v <= 0 {
					t.Errorf("%s latency at %v MB/s: %s = %v", tr.Name, l["offered_mb_per_s"], k, l[k])
				}
			}
		}
	}
	if png, err := os.ReadFile(plotPath); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("plot: %v", err)
	}
	if !strings.Contains(out.String(), "ratios") {
		t.Errorf("no ratios in the table")
	}
}

func TestBenchCommandFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--target", "nohost"},
		{"--target-pid", "x=1"},
		{"--rates", "fast", "--with-kfake"},
		{"--kfake-sync", "--with-embedded"},
		{"--with-kfake", "--kfake-binary", filepath.Join(t.TempDir(), "missing")},
		{},
	} {
		if err := runBench(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("%q: want an error", args)
		}
	}
}

// Without --kfake-binary and with no kfakeserve next to the executable or on
// PATH, --with-kfake stops before measuring anything and says how to build it.
func TestBenchCommandKfakeMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var out, errb bytes.Buffer
	err := runBench(context.Background(), []string{"--with-kfake", "--duration", "1s"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "go build -o ztfbroker-kfake ./bench/kfakeserve") {
		t.Fatalf("want an error saying how to build kfakeserve, got %v", err)
	}
	if out.Len() > 0 || errb.Len() > 0 {
		t.Errorf("measured before failing:\n%s%s", out.String(), errb.String())
	}
}
