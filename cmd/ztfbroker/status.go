package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Status is the one-screen summary of a running broker, served as JSON at
// /api/v1/status and printed by `ztfbroker status`. It is read from the
// same registry as /metrics at request time, so the two never disagree.
type Status struct {
	Time      time.Time        `json:"time"`
	StartTime time.Time        `json:"start_time"`
	Topics    []TopicStatus    `json:"topics"` // nightly topics newest first; internal topics left out
	Groups    []GroupStatus    `json:"groups"`
	Disk      DiskStatus       `json:"disk"`
	Archive   []ArchiveStatus  `json:"archive"`
	Packager  *PackagerStatus  `json:"packager,omitempty"` // nil: no packager in this process
	Memory    MemoryStatus     `json:"memory"`
	Certs     []CertificateAge `json:"certificates,omitempty"`
}

// TopicStatus is a topic's records stored (alerts) and bytes on disk, and
// the bytes produced and fetched since the process started.
type TopicStatus struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
	Alerts     int64  `json:"alerts"`
	Bytes      int64  `json:"bytes"`
	BytesIn    int64  `json:"bytes_in"`
	BytesOut   int64  `json:"bytes_out"`
}

// GroupStatus is a consumer group's members and its lag summed over the
// partitions it committed offsets for.
type GroupStatus struct {
	Name    string `json:"name"`
	Members int    `json:"members"`
	Lag     int64  `json:"lag"`
}

// DiskStatus is the data directory's file system and the logs on it.
type DiskStatus struct {
	FreeBytes          int64 `json:"free_bytes"`
	LogBytes           int64 `json:"log_bytes"`
	RetentionBound     int64 `json:"retention_total_bytes"` // -1: no bound
	Writable           bool  `json:"writable"`
	ReadOnlyPartitions int   `json:"read_only_partitions"`
	OfflinePartitions  int   `json:"offline_partitions"`
}

// ArchiveStatus is a program's nightly archive.
type ArchiveStatus struct {
	Program       int        `json:"program"`
	LastBuild     *time.Time `json:"last_build,omitempty"`
	BuildsOK      int64      `json:"builds_ok"`
	BuildsFailed  int64      `json:"builds_failed"`
	MissingNights int        `json:"missing_nights"`
}

// PackagerStatus is what the packager did since the process started.
type PackagerStatus struct {
	Alerts         int64   `json:"alerts"`
	Exposures      int64   `json:"exposures"`
	MeanLatency    float64 `json:"mean_exposure_latency_seconds"`
	ProduceFailed  int64   `json:"produce_failures"`
	RejectedInputs int64   `json:"rejected_inputs"`
}

// MemoryStatus is the process's resident memory against its budget.
type MemoryStatus struct {
	ResidentBytes int64   `json:"resident_bytes"`
	BudgetBytes   int64   `json:"budget_bytes"`
	CPUSeconds    float64 `json:"cpu_seconds"`
}

// CertificateAge is when a listener's certificate expires.
type CertificateAge struct {
	Listener string    `json:"listener"`
	Expires  time.Time `json:"expires"`
}

// statusHandler serves Status as JSON, gathered from g at each request.
func statusHandler(g prometheus.Gatherer, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mfs, err := g.Gather()
		if err != nil && len(mfs) == 0 {
			http.Error(w, "gather metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(statusOf(mfs, now()))
	})
}

// families indexes gathered metrics by name.
type families map[string][]*dto.Metric

func (f families) sum(name string, match ...string) float64 {
	var s float64
	for _, m := range f[name] {
		if hasLabels(m, match...) {
			s += value(m)
		}
	}
	return s
}

func hasLabels(m *dto.Metric, pairs ...string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		if label(m, pairs[i]) != pairs[i+1] {
			return false
		}
	}
	return true
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func statusOf(mfs []*dto.MetricFamily, now time.Time) Status {
	f := families{}
	for _, mf := range mfs {
		f[mf.GetName()] = mf.GetMetric()
	}
	st := Status{Time: now.UTC().Truncate(time.Second)}
	if start := f.sum("process_start_time_seconds"); start > 0 {
		st.StartTime = time.Unix(int64(start), 0).UTC()
	}

	topics := map[string]*TopicStatus{}
	topic := func(name string) *TopicStatus {
		if topics[name] == nil {
			topics[name] = &TopicStatus{Name: name}
		}
		return topics[name]
	}
	for _, m := range f["ztfbroker_log_end_offset"] {
		t := topic(label(m, "topic"))
		t.Partitions++
		t.Alerts += int64(value(m))
	}
	for _, m := range f["ztfbroker_log_start_offset"] {
		topic(label(m, "topic")).Alerts -= int64(value(m))
	}
	for _, m := range f["ztfbroker_log_size_bytes"] {
		topic(label(m, "topic")).Bytes += int64(value(m))
	}
	for _, m := range f["ztfbroker_kafka_topic_bytes_in_total"] {
		if t := topics[label(m, "topic")]; t != nil {
			t.BytesIn += int64(value(m))
		}
	}
	for _, m := range f["ztfbroker_kafka_topic_bytes_out_total"] {
		if t := topics[label(m, "topic")]; t != nil {
			t.BytesOut += int64(value(m))
		}
	}
	for name, t := range topics {
		if !strings.HasPrefix(name, "__") {
			st.Topics = append(st.Topics, *t)
		}
	}
	slices.SortFunc(st.Topics, func(a, b TopicStatus) int { return strings.Compare(b.Name, a.Name) })

	groups := map[string]*GroupStatus{}
	group := func(name string) *GroupStatus {
		if groups[name] == nil {
			groups[name] = &GroupStatus{Name: name}
		}
		return groups[name]
	}
	for _, m := range f["ztfbroker_group_members"] {
		group(label(m, "group")).Members = int(value(m))
	}
	for _, m := range f["ztfbroker_group_lag"] {
		group(label(m, "group")).Lag += int64(value(m))
	}
	for _, g := range groups {
		st.Groups = append(st.Groups, *g)
	}
	slices.SortFunc(st.Groups, func(a, b GroupStatus) int { return strings.Compare(a.Name, b.Name) })

	st.Disk = DiskStatus{
		FreeBytes:          int64(f.sum("ztfbroker_log_dir_free_bytes")),
		LogBytes:           int64(f.sum("ztfbroker_log_dir_size_bytes")),
		RetentionBound:     int64(f.sum("ztfbroker_log_retention_total_bytes")),
		Writable:           f.sum("ztfbroker_log_dir_writable") == 1,
		ReadOnlyPartitions: int(f.sum("ztfbroker_partitions_read_only")),
		OfflinePartitions:  int(f.sum("ztfbroker_partitions_offline")),
	}

	programs := map[string]*ArchiveStatus{}
	program := func(p string) *ArchiveStatus {
		if programs[p] == nil {
			n, _ := strconv.Atoi(p)
			programs[p] = &ArchiveStatus{Program: n}
		}
		return programs[p]
	}
	for _, m := range f["ztfbroker_archive_missing_nights"] {
		program(label(m, "program")).MissingNights = int(value(m))
	}
	for _, m := range f["ztfbroker_archive_last_build_timestamp_seconds"] {
		t := time.Unix(int64(value(m)), 0).UTC()
		program(label(m, "program")).LastBuild = &t
	}
	for _, m := range f["ztfbroker_archive_builds_total"] {
		a := program(label(m, "program"))
		if label(m, "result") == "ok" {
			a.BuildsOK += int64(value(m))
		} else {
			a.BuildsFailed += int64(value(m))
		}
	}
	for _, a := range programs {
		st.Archive = append(st.Archive, *a)
	}
	slices.SortFunc(st.Archive, func(a, b ArchiveStatus) int { return a.Program - b.Program })

	if _, ok := f["ztfbroker_packager_alerts_total"]; ok {
		p := &PackagerStatus{
			Alerts:         int64(f.sum("ztfbroker_packager_alerts_total")),
			ProduceFailed:  int64(f.sum("ztfbroker_packager_produce_failures_total")),
			RejectedInputs: int64(f.sum("ztfbroker_packager_rejected_total")),
		}
		for _, m := range f["ztfbroker_packager_exposure_latency_seconds"] {
			h := m.GetHistogram()
			p.Exposures += int64(h.GetSampleCount())
			if h.GetSampleCount() > 0 {
				p.MeanLatency = h.GetSampleSum() / float64(h.GetSampleCount())
			}
		}
		st.Packager = p
	}

	st.Memory = MemoryStatus{
		ResidentBytes: int64(f.sum("process_resident_memory_bytes")),
		BudgetBytes:   int64(f.sum("ztfbroker_memory_budget_bytes")),
		CPUSeconds:    f.sum("process_cpu_seconds_total"),
	}
	for _, m := range f["ztfbroker_tls_certificate_expiry_timestamp_seconds"] {
		st.Certs = append(st.Certs, CertificateAge{Listener: label(m, "listener"), Expires: time.Unix(int64(value(m)), 0).UTC()})
	}
	return st
}

// statusTopics is how many topics the screen shows: a week of nights for
// two programs.
const statusTopics = 14

// runStatus is `ztfbroker status`: the running broker's /api/v1/status on
// one screen.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", "127.0.0.1:8080", "the broker's HTTP listener: HOST:PORT, or a URL (https://HOST:PORT with http.tls.cert)")
	user := fs.String("user", "", "user to log in as (HTTP basic auth) when http.metrics.users is set")
	passwordFile := fs.String("password-file", "", "file holding --user's password")
	caFile := fs.String("tls-ca", "", "PEM CA to check an https:// listener's certificate (default: the system's)")
	asJSON := fs.Bool("json", false, "print the JSON as served instead of the summary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	base := *addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-ca %s: no PEM certificate", *caFile)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/api/v1/status", nil)
	if err != nil {
		return err
	}
	if *user != "" {
		if *passwordFile == "" {
			return errors.New("--user needs --password-file")
		}
		pw, err := os.ReadFile(*passwordFile)
		if err != nil {
			return err
		}
		req.SetBasicAuth(*user, strings.TrimRight(string(pw), "\r\n"))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s (--user and --password-file when http.metrics.users is set)", req.URL, resp.Status)
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("GET %s: %w", req.URL, err)
	}
	return printStatus(stdout, *addr, st)
}

func printStatus(w io.Writer, addr string, st Status) error {
	up := "?"
	if !st.StartTime.IsZero() {
		up = st.Time.Sub(st.StartTime).Round(time.Second).String()
	}
	fmt.Fprintf(w, "ztfbroker at %s, %s, up %s; memory %s of %s budget, %.1f CPU s\n", addr,
		st.Time.Format("2006-01-02 15:04:05 UTC"), up, mb(st.Memory.ResidentBytes), mb(st.Memory.BudgetBytes), st.Memory.CPUSeconds)
	d := st.Disk
	state := "writable"
	if !d.Writable {
		state = "NOT WRITABLE (below log.dir.free.min.bytes)"
	}
	bound := mb(d.RetentionBound)
	if d.RetentionBound < 0 {
		bound = "no bound"
	}
	fmt.Fprintf(w, "disk: %s free, logs %s (bound %s), %s; %d partitions read-only, %d offline\n",
		mb(d.FreeBytes), mb(d.LogBytes), bound, state, d.ReadOnlyPartitions, d.OfflinePartitions)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\ntopic\tpartitions\talerts\ton disk\tin since start\tout since start")
	for i, t := range st.Topics {
		if i == statusTopics {
			fmt.Fprintf(tw, "(%d more)\t\t\t\t\t\n", len(st.Topics)-i)
			break
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", t.Name, t.Partitions, t.Alerts, mb(t.Bytes), mb(t.BytesIn), mb(t.BytesOut))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Groups) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\ngroup\tmembers\tlag")
		for _, g := range st.Groups {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", g.Name, g.Members, g.Lag)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	for _, a := range st.Archive {
		last := "never"
		if a.LastBuild != nil {
			last = a.LastBuild.Format("2006-01-02 15:04 UTC")
		}
		fmt.Fprintf(w, "archive program %d: last built %s; builds %d ok, %d failed; %d nights missing\n",
			a.Program, last, a.BuildsOK, a.BuildsFailed, a.MissingNights)
	}
	if p := st.Packager; p != nil {
		fmt.Fprintf(w, "packager: %d alerts in %d exposures, mean %.2f s to acknowledge; %d inputs refused, %d produce failures\n",
			p.Alerts, p.Exposures, p.MeanLatency, p.RejectedInputs, p.ProduceFailed)
	} else {
		fmt.Fprintln(w, "packager: not running in this process")
	}
	for _, c := range st.Certs {
		fmt.Fprintf(w, "certificate %s: expires %s (in %d days)\n", c.Listener, c.Expires.Format("2006-01-02"),
			int(c.Expires.Sub(st.Time).Hours()/24))
	}
	return nil
}

// mb is bytes as decimal megabytes, one decimal: what the status test reads back.
func mb(n int64) string { return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + " MB" }
