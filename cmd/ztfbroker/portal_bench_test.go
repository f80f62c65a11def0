package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ztfbroker/ztfbroker/alertindex"
	"github.com/ztfbroker/ztfbroker/packager"
)

// indexShareModes are the serve processes BenchmarkExposureIndexShare runs
// side by side: without the portal, with the portal's index reading the
// alerts back as a Kafka consumer only (portal.tap.bytes=0), and with the
// index fed by the broker's tap (the default).
var indexShareModes = []struct{ name, set string }{
	{"off", "portal.enabled=false"},
	{"fetch", "portal.tap.bytes=0"},
	{"tap", ""},
}

// BenchmarkExposureIndexShare is the broker's CPU for a 10,000-alert
// exposure with and without the portal's index: one `ztfbroker serve`
// process per mode (indexShareModes, packager, archive and filters off),
// each fed the same simulated exposures by a packager in this process
// (zstd, as serve's own), in turn. A mode's CPU for exposure i is the serve
// process's user+system CPU from the start of exposure i to the start of
// i+1, so that whatever an exposure leaves behind (pebble's compactions,
// the consumer's polls) is counted; an exposure ends when the portal's group
// has committed the end of the topic (or, without the portal, at the last
// acknowledgement). Reported, medians over b.N exposures after two that build
// the objects' histories: <mode>-cpu-s per exposure, and for each portal
// mode <mode>-index-cpu-s (its CPU less off's, per 10,000 alerts) and
// <mode>-share-% (that over the mode's CPU: the index's share of the
// broker's CPU), and <mode>-tapped-% (the alerts the index read from the
// broker's tap rather than fetched). Run it with -benchtime=5x or more.
// ZTFBROKER_BENCH_PROFILE=DIR:SECONDS writes each mode's CPU profile over
// the first SECONDS of the measured exposures to DIR/<mode>.pprof.
func BenchmarkExposureIndexShare(b *testing.B) {
	const alerts, warm = 10_000, 2
	dir := b.TempDir()
	start := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	topic := packager.NightTopic(packager.TimeJD(start), 1)
	ctx := context.Background()
	type run struct {
		proc *benchServeProc
		p    *packager.Packager
		adm  *kadm.Client
		sim  *packager.Simulation
		cpu  []time.Duration // at the start of each exposure
	}
	runs := make([]*run, len(indexShareModes))
	for m, mode := range indexShareModes {
		mdir := filepath.Join(dir, mode.name)
		set := []string{"--set", "filter.enabled=false"}
		if mode.set != "" {
			set = append(set, "--set", mode.set)
		}
		proc := benchServe(b, filepath.Join(mdir, "data"), set...)
		prod, err := packager.NewKafkaProducer(packager.KafkaOptions{Bootstrap: []string{proc.Kafka}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(prod.Close)
		cfg := packager.DefaultConfig()
		cfg.HistoryDir, cfg.RejectDir = filepath.Join(mdir, "history"), filepath.Join(mdir, "rejects")
		p, err := packager.New(cfg, prod, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		sim, err := packager.NewSimulation(packager.SimulateConfig{Alerts: alerts, Start: start}, nil)
		if err != nil {
			b.Fatal(err)
		}
		runs[m] = &run{proc: proc, p: p, adm: kadm.NewClient(prod), sim: sim}
	}
	exposure := func(m, i int) {
		r := runs[m]
		r.cpu = append(r.cpu, r.proc.CPU(b))
		res, err := r.p.Package(ctx, r.sim.Exposure(i))
		if err != nil || res.Alerts != alerts {
			b.Fatalf("%s: exposure %d: %+v %v", indexShareModes[m].name, i, res, err)
		}
		if indexShareModes[m].name != "off" {
			waitGroupAtEnd(b, r.adm, alertindex.DefaultConfig().Group, topic, 5*time.Millisecond)
		}
	}
	for i := range warm {
		for m := range runs {
			exposure(m, i)
		}
	}
	if spec := os.Getenv("ZTFBROKER_BENCH_PROFILE"); spec != "" && b.N > 1 {
		dir, secs, _ := strings.Cut(spec, ":")
		for m, mode := range indexShareModes {
			go runs[m].proc.profile(b, filepath.Join(dir, mode.name+".pprof"), secs)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		for m := range runs {
			// Each mode goes first in turn, should the order matter.
			exposure((m+i)%len(runs), warm+i)
		}
	}
	for _, r := range runs {
		r.cpu = append(r.cpu, r.proc.CPU(b))
	}
	b.StopTimer()
	perExposure := func(r *run) []time.Duration {
		var out []time.Duration
		for i := warm; i+1 < len(r.cpu); i++ {
			out = append(out, r.cpu[i+1]-r.cpu[i])
		}
		return out
	}
	median := func(ds []time.Duration) time.Duration {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	off := perExposure(runs[0])
	for m, mode := range indexShareModes {
		cpu := perExposure(runs[m])
		b.ReportMetric(median(cpu).Seconds(), mode.name+"-cpu-s")
		if m == 0 {
			continue
		}
		// Exposure by exposure, against off's same exposure.
		extra := make([]time.Duration, len(cpu))
		for i := range cpu {
			extra[i] = cpu[i] - off[i]
		}
		b.ReportMetric(median(extra).Seconds()*10_000/alerts, mode.name+"-index-cpu-s")
		b.ReportMetric(100*median(extra).Seconds()/median(cpu).Seconds(), mode.name+"-share-%")
		read := runs[m].proc.metric(b, "ztfbroker_portal_records_read_total")
		b.ReportMetric(100*runs[m].proc.metric(b, "ztfbroker_portal_tap_records_total")/max(read, 1), mode.name+"-tapped-%")
	}
	b.ReportMetric(0, "ns/op")
}

// waitGroupAtEnd polls, every interval, until group has committed the end
// of every partition of topic.
func waitGroupAtEnd(b *testing.B, adm *kadm.Client, group, topic string, every time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	for ctx.Err() == nil {
		if committedAtEnd(ctx, adm, group, ends) {
			return
		}
		time.Sleep(every)
	}
	b.Fatalf("group %s did not reach the end of %s within 5 minutes", group, topic)
}

// committedAtEnd tells whether group has committed ends on every partition
// that has records.
func committedAtEnd(ctx context.Context, adm *kadm.Client, group string, ends kadm.ListedOffsets) bool {
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false
	}
	behind := false
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := committed.Lookup(o.Topic, o.Partition); o.Offset > 0 && (!ok || c.At < o.Offset) {
			behind = true
		}
	})
	return !behind
}

// benchServeProc is a `ztfbroker serve` process of a benchmark.
type benchServeProc struct {
	cmd               *exec.Cmd
	Kafka, Web, Admin string
}

// benchServe starts serve on free loopback ports, without the packager,
// the archive or the admin listener, and waits until it answers.
func benchServe(b *testing.B, dataDir string, extra ...string) *benchServeProc {
	b.Helper()
	addr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	kafka, web, admin := addr(), addr(), addr()
	args := append([]string{"serve", "--data-dir", dataDir, "--listen", kafka, "--http", web,
		"--admin-http", admin, "--packager=false", "--archive=false", "--log-level", "warn"}, extra...)
	cmd := exec.Command(binary, args...)
	logs, err := os.Create(dataDir + ".log")
	if err != nil && os.MkdirAll(filepath.Dir(dataDir), 0o755) == nil {
		logs, err = os.Create(dataDir + ".log")
	}
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logs.Close()
	})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + web + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return &benchServeProc{cmd: cmd, Kafka: kafka, Web: web, Admin: admin}
			}
		}
	}
	out, _ := os.ReadFile(dataDir + ".log")
	b.Fatalf("serve %v not ready after 30 s:\n%s", extra, out)
	return nil
}

// CPU is the process's user and system CPU so far.
func (s *benchServeProc) CPU(b *testing.B) time.Duration { return pidCPU(b, s.cmd.Process.Pid) }

// metric is the value of an unlabelled metric on /metrics (0: absent).
func (s *benchServeProc) metric(b *testing.B, name string) float64 {
	resp, err := http.Get("http://" + s.Web + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// profile writes the process's CPU profile over secs seconds to path.
func (s *benchServeProc) profile(b *testing.B, path, secs string) {
	resp, err := http.Get("http://" + s.Admin + "/debug/pprof/profile?seconds=" + secs)
	if err != nil {
		b.Logf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	out, err := os.Create(path)
	if err != nil {
		b.Logf("profile: %v", err)
		return
	}
	defer out.Close()
	io.Copy(out, resp.Body)
}
