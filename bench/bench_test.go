package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A short run against kfake writes a table, JSON and both plots with every
// figure present and positive.
func TestBenchKfake(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Duration: 2 * time.Second, WithKfake: true,
		Producers: 2, Partitions: 3, Rates: []float64{4, 16},
		LimitsDuration: time.Second, DataDir: dir, MaxBytes: 200 << 20, Log: &log,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	checkReport(t, rep, []string{"kfake"})
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
