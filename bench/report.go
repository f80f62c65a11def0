package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is every figure of a run; it is what --json writes.
type Report struct {
	Started    time.Time      `json:"started"`
	Finished   time.Time      `json:"finished"`
	Host       string         `json:"host"`
	CPUs       int            `json:"cpus"`
	Duration   float64        `json:"phase_seconds"`
	Producers  int            `json:"producers"`
	Partitions int32          `json:"partitions"`
	Limits     *Limits        `json:"machine_limits,omitempty"`
	Targets    []TargetReport `json:"targets"`
	Errors     []string       `json:"errors,omitempty"`
}

// TargetReport is what one broker achieved.
type TargetReport struct {
	Target
	Throughput []Throughput `json:"throughput"`
	Latency    []Latency    `json:"latency"`
	// Error is set when the target could not be started or reached.
	Error  string   `json:"error,omitempty"`
	Errors []string `json:"phase_errors,omitempty"`
}

// Throughput is one produce or consume phase.
type Throughput struct {
	Phase         string  `json:"phase"`
	RecordBytes   int     `json:"record_bytes"`
	Producers     int     `json:"producers"`
	Partitions    int32   `json:"partitions"`
	Records       int64   `json:"records"`
	Bytes         int64   `json:"bytes"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_s"`
	MBps          float64 `json:"mb_per_s"`
	CPUSeconds    float64 `json:"broker_cpu_seconds"`
	MaxRSSBytes   int64   `json:"broker_max_rss_bytes"`
	// BenchCPUSeconds is this process (the clients) over the phase.
	BenchCPUSeconds float64 `json:"bench_cpu_seconds"`
	// Fractions of the machine limits (0 when not measured).
	OfDisk     float64 `json:"fraction_of_disk_fdatasync,omitempty"`
	OfLoopback float64 `json:"fraction_of_loopback_tcp,omitempty"`
}

func (t *Throughput) fill(records int64, d time.Duration) {
	t.Records = records
	t.Bytes = records * int64(t.RecordBytes)
	t.Seconds = d.Seconds()
	if t.Seconds > 0 {
		t.RecordsPerSec = float64(records) / t.Seconds
		t.MBps = float64(t.Bytes) / 1e6 / t.Seconds
	}
}

// Latency is one fixed-rate phase. Latencies are from the scheduled send
// time to receipt by the consumer, in milliseconds.
type Latency struct {
	OfferedMBps          float64 `json:"offered_mb_per_s"`
	OfferedRecordsPerSec float64 `json:"offered_records_per_s"`
	RecordBytes          int     `json:"record_bytes"`
	Producers            int     `json:"producers"`
	Partitions           int32   `json:"partitions"`
	Sent                 int64   `json:"sent"`
	Received             int64   `json:"received"`
	Seconds              float64 `json:"seconds"`
	AchievedMBps         float64 `json:"achieved_mb_per_s"`
	P50ms                float64 `json:"p50_ms"`
	P99ms                float64 `json:"p99_ms"`
	P999ms               float64 `json:"p999_ms"`
	Maxms                float64 `json:"max_ms"`
	CPUSeconds           float64 `json:"broker_cpu_seconds"`
	MaxRSSBytes          int64   `json:"broker_max_rss_bytes"`
	BenchCPUSeconds      float64 `json:"bench_cpu_seconds"`
}

func (r *Report) fillFractions() {
	if r.Limits == nil {
		return
	}
	for i := range r.Targets {
		for j := range r.Targets[i].Throughput {
			th := &r.Targets[i].Throughput[j]
			if th.Phase == "produce" && r.Limits.DiskSyncMBps > 0 {
				th.OfDisk = th.MBps / r.Limits.DiskSyncMBps
			}
			if r.Limits.LoopbackMBps > 0 {
				th.OfLoopback = th.MBps / r.Limits.LoopbackMBps
			}
		}
	}
}

// WriteJSON writes the report to path, indented.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func mb(b int64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(b)/1e6)
}

func pctOf(f float64) string {
	if f <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

func cpuText(s float64, pid int) string {
	if pid <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", s)
}

// cpuPerGB is broker CPU seconds per 10^9 bytes moved in a phase, the cost
// a listener's security adds: "-" when the broker process is unknown.
func cpuPerGB(s float64, bytes int64, pid int) string {
	if pid <= 0 || bytes <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", s/(float64(bytes)/1e9))
}

// WriteTable prints the report for a terminal.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "ztfbroker bench  %s  host %s, %d CPUs, %.0fs per phase, %d producers, %d partitions\n",
		r.Started.Format(time.RFC3339), r.Host, r.CPUs, r.Duration, r.Producers, r.Partitions)
	if l := r.Limits; l != nil {
		fmt.Fprintf(w, "machine: sequential write + fdatasync (%d KiB) %.0f MB/s on %s; loopback TCP %.0f MB/s\n",
			l.DiskBlockBytes>>10, l.DiskSyncMBps, l.DiskDir, l.LoopbackMBps)
	}
	for _, t := range r.Targets {
		pid := "pid unknown"
		if t.PID > 0 {
			pid = fmt.Sprintf("pid %d", t.PID)
		}
		via := ""
		if t.Security != nil {
			via = " over " + t.Security.Protocol()
		}
		fmt.Fprintf(w, "target %s: %s at %s%s, %s\n", t.Name, t.Kind, strings.Join(t.Addrs, ","), via, pid)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\ntarget\tphase\trecord\trecords/s\tMB/s\tof disk\tof loopback\tbroker CPU s\tCPU s/GB\tbroker RSS MB\tbench CPU s\t")
	for _, t := range r.Targets {
		if t.Error != "" {
			fmt.Fprintf(tw, "%s\terror\t\t\t\t\t\t\t\t\t\t\n", t.Name)
			continue
		}
		for _, th := range t.Throughput {
			fmt.Fprintf(tw, "%s\t%s\t%d B\t%.0f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%.1f\t\n", t.Name, th.Phase, th.RecordBytes,
				th.RecordsPerSec, th.MBps, pctOf(th.OfDisk), pctOf(th.OfLoopback), cpuText(th.CPUSeconds, t.PID),
				cpuPerGB(th.CPUSeconds, th.Bytes, t.PID), mb(th.MaxRSSBytes), th.BenchCPUSeconds)
		}
	}
	fmt.Fprintln(tw, "\ntarget\toffered MB/s\trecord\tsent\treceived\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\tbroker CPU s\tbroker RSS MB\tbench CPU s\t")
	for _, t := range r.Targets {
		for _, l := range t.Latency {
			fmt.Fprintf(tw, "%s\t%g\t%d B\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%.1f\t\n", t.Name, l.OfferedMBps, l.RecordBytes,
				l.Sent, l.Received, l.P50ms, l.P99ms, l.P999ms, l.Maxms, cpuText(l.CPUSeconds, t.PID), mb(l.MaxRSSBytes), l.BenchCPUSeconds)
		}
	}
	tw.Flush()
	if len(r.Targets) > 1 {
		r.writeRatios(w)
	}
	over := false
	for _, t := range r.Targets {
		for _, th := range t.Throughput {
			over = over || th.OfDisk > 1
		}
	}
	if over {
		fmt.Fprintln(w, "note: \"of disk\" is against writes that fdatasync every 1 MiB; a broker that syncs less often can pass 100%")
	}
	for _, t := range r.Targets {
		if t.PID <= 0 && t.Error == "" {
			fmt.Fprintf(w, "note: %s: no broker process found (give --target-pid); CPU and RSS not measured\n", t.Name)
		}
		if t.Error != "" {
			fmt.Fprintf(w, "error: %s: %s\n", t.Name, t.Error)
		}
		for _, e := range t.Errors {
			fmt.Fprintf(w, "error: %s: %s\n", t.Name, e)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
}

// writeRatios prints every target against the first: throughput and p99.
func (r *Report) writeRatios(w io.Writer) {
	ref := r.Targets[0]
	var lines []string
	for _, t := range r.Targets[1:] {
		for _, th := range ref.Throughput {
			for _, o := range t.Throughput {
				if o.Phase == th.Phase && o.RecordBytes == th.RecordBytes && o.MBps > 0 {
					lines = append(lines, fmt.Sprintf("  %s %d B: %s/%s = %.2fx", th.Phase, th.RecordBytes, ref.Name, t.Name, th.MBps/o.MBps))
				}
			}
		}
		for _, l := range ref.Latency {
			for _, o := range t.Latency {
				if o.OfferedMBps == l.OfferedMBps && o.P99ms > 0 {
					lines = append(lines, fmt.Sprintf("  p99 at %g MB/s: %s/%s = %.2fx", l.OfferedMBps, ref.Name, t.Name, l.P99ms/o.P99ms))
				}
			}
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "\nratios (throughput: higher is better for %s; p99: lower is better)\n%s\n", ref.Name, strings.Join(lines, "\n"))
	}
}
