package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/filter"
	"github.com/ztfbroker/ztfbroker/packager"
)

// hundredFilters are 100 selective filters of five kinds users write,
// each with its own numbers (bright and real, young, a cone of half a
// degree, fast risers, brightened since an earlier detection by a loop over
// the history); with loops false, the fifth kind is a cut on the PS1
// counterpart instead.
func hundredFilters(loops bool) []filter.Spec {
	kinds := []func(i int, f float64) string{
		func(_ int, f float64) string {
			return fmt.Sprintf("candidate.rb > %.2f && candidate.magpsf < %.2f && candidate.isdiffpos in ['t', '1']", 0.8+f/100, 15.5+f/20)
		},
		func(i int, f float64) string {
			return fmt.Sprintf("ndet() >= %d && days_since_first() < %.2f && !has(candidate.ssnamenr)", 2+i%3, 0.05+f/100)
		},
		func(_ int, f float64) string { return fmt.Sprintf("cone(%.1f, %.1f, 1800.0)", f*18, -20+f*4) },
		func(i int, f float64) string {
			return fmt.Sprintf("mag_rate() < %.2f && candidate.fid == %d", -0.5*(1+f/5), 1+i%2)
		},
		func(_ int, f float64) string {
			if !loops {
				return fmt.Sprintf("candidate.sgscore1 < %.3f && candidate.distpsnr1 < %.2f && candidate.magpsf < %.1f", 0.02+f/1000, 0.5+f/50, 17+f/10)
			}
			return fmt.Sprintf("prv_candidates.exists(p, has(p.magpsf) && p.magpsf - candidate.magpsf > %.2f)", 1.5+f/10)
		},
	}
	var out []filter.Spec
	for i := range 100 {
		out = append(out, filter.Spec{Name: fmt.Sprintf("f%03d", i), Owner: "bench", Topics: "ztf_*_programid1",
			Expression: kinds[i%len(kinds)](i/len(kinds), float64(i/len(kinds)))})
	}
	return out
}

// BenchmarkFilterExposure: 100 filters over 10,000-alert exposures
// packaged into the real broker (in this process), evaluated by `ztfbroker
// filter run` as its own process. Reported: the delay from the exposure's
// last acknowledgement to the runner's commit of the exposure's last alert
// (every match acknowledged before; median, delay-s), and the alerts the
// runner evaluates per CPU second of its process (alerts/cpu-s, over the
// whole run: the history-building exposures, idle polls and all).
func BenchmarkFilterExposure(b *testing.B) {
	for _, loops := range []bool{true, false} {
		name := "mixed"
		if !loops {
			name = "no-loops"
		}
		b.Run(name, func(b *testing.B) { benchFilterExposure(b, hundredFilters(loops)) })
	}
}

func benchFilterExposure(b *testing.B, filters []filter.Spec) {
	const alerts, warm = 10_000, 2
	dir := b.TempDir()
	addr, _ := benchBroker(b, filepath.Join(dir, "data"), 0)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	comp, err := filter.NewCompiler(0)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range filters {
		if err := filter.Save(ctx, cl, filter.DefaultSpecTopic, comp, s); err != nil {
			b.Fatal(err)
		}
	}
	runner := exec.Command(binary, "filter", "run", "--bootstrap", addr)
	if err := runner.Start(); err != nil {
		b.Fatal(err)
	}
	defer runner.Process.Kill()

	prod, err := packager.NewKafkaProducer(packager.KafkaOptions{Bootstrap: []string{addr}})
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	cfg := packager.DefaultConfig()
	cfg.HistoryDir, cfg.RejectDir = filepath.Join(dir, "history"), filepath.Join(dir, "rejects")
	p, err := packager.New(cfg, prod, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	start := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	sim, err := packager.NewSimulation(packager.SimulateConfig{Alerts: alerts, Start: start}, nil)
	if err != nil {
		b.Fatal(err)
	}
	topic := packager.NightTopic(packager.TimeJD(start), 1)
	adm := kadm.NewClient(cl)
	var made []time.Duration
	exposure := func(i int) time.Duration {
		exp := sim.Exposure(i)
		exp.Arrived = time.Now()
		res, err := p.Package(ctx, exp)
		if err != nil || res.Alerts != alerts {
			b.Fatalf("%+v %v", res, err)
		}
		acked := time.Now()
		made = append(made, res.Latency)
		waitGroupAtEnd(b, adm, filter.DefaultConfig().Group, topic, 2*time.Millisecond)
		return time.Since(acked)
	}
	for i := range warm {
		exposure(i)
	}
	var delays []time.Duration
	b.ResetTimer()
	for i := range b.N {
		delays = append(delays, exposure(warm+i))
	}
	b.StopTimer()
	runner.Process.Signal(syscall.SIGTERM)
	runner.Wait()
	cpu := runner.ProcessState.UserTime() + runner.ProcessState.SystemTime()
	slices.Sort(delays)
	b.ReportMetric(delays[len(delays)/2].Seconds(), "delay-s")
	slices.Sort(made)
	b.ReportMetric(made[len(made)/2].Seconds(), "exposure-s")
	b.ReportMetric(float64(alerts*(warm+b.N))/cpu.Seconds(), "alerts/cpu-s")
	var topics []string
	for _, f := range filters {
		topics = append(topics, f.Topic())
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		b.Fatal(err)
	}
	var matches int64
	ends.Each(func(o kadm.ListedOffset) { matches += max(o.Offset, 0) })
	b.ReportMetric(float64(matches)/float64(alerts*(warm+b.N)), "matches/alert")
	b.ReportMetric(0, "ns/op")
}
