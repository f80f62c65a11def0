// Package configs_test checks the operator's kit in this folder against the
// real tools: promtool, a real Prometheus scraping real `ztfbroker serve`
// processes, systemd-analyze, and `ztfbroker status` against /metrics. The
// folder holds no Go besides these tests.
package configs_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ztfbroker/ztfbroker/internal/binarytest"
)

// binary is ztfbroker built once for these tests.
var binary string

func TestMain(m *testing.M) { binarytest.Main(m, "../cmd/ztfbroker", &binary) }

// tool runs an installed tool and returns its combined output; a missing
// tool fails the test (.ci/run installs it).
func tool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is needed by this test and is not installed (.ci/run installs it): %v", name, err)
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func TestPromtoolChecksRulesAndConfig(t *testing.T) {
	out, err := tool(t, "promtool", "check", "rules", "prometheus/ztfbroker.rules.yml")
	if err != nil || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	// The config names its CA and password files beside itself, as installed.
	dir := t.TempDir()
	for _, f := range []string{"prometheus.yml", "ztfbroker.rules.yml"} {
		copyFile(t, filepath.Join("prometheus", f), filepath.Join(dir, f))
	}
	for _, f := range []string{"ztfbroker-ca.pem", "ztfbroker-prometheus.pw"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err = tool(t, "promtool", "check", "config", filepath.Join(dir, "prometheus.yml"))
	if err != nil || strings.Count(out, "SUCCESS") < 2 {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// Every rule has a summary, a runbook annotation, and a runbook line in the
// README under its name.
func TestRulesHaveRunbooks(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range loadRules(t) {
		if r.Annotations["summary"] == "" || r.Annotations["runbook"] == "" {
			t.Errorf("rule %s: needs summary and runbook annotations", r.Alert)
		}
		if !strings.Contains(string(readme), "- **"+r.Alert+"**") {
			t.Errorf("rule %s has no runbook line (- **%s**: ...) in the README", r.Alert, r.Alert)
		}
	}
}

func TestSystemdUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile("systemd/ztfbroker.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart's program exists: point it at the one
	// just built, nothing else changes.
	dir := t.TempDir()
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/ztfbroker", binary)
	if err := os.WriteFile(filepath.Join(dir, "ztfbroker.service"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := tool(t, "systemd-analyze", "verify", filepath.Join(dir, "ztfbroker.service"))
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	var prod map[string]any
	if err := yaml.Unmarshal(readFile(t, "production.yaml"), &prod); err != nil {
		t.Fatal(err)
	}
	budget := fmt.Sprint(prod["memory.budget.bytes"])
	for k, want := range map[string]string{
		"MemoryMax": budget, "ProtectSystem": "strict", "Restart": "on-failure", "User": "ztfbroker",
		"StateDirectory": "ztfbroker", "StandardOutput": "journal", "NoNewPrivileges": "yes",
		"ExecStart": "/usr/local/bin/ztfbroker serve --config /etc/ztfbroker/production.yaml",
	} {
		if keys[k] != want {
			t.Errorf("unit %s=%q, want %q", k, keys[k], want)
		}
	}
	if keys["LimitNOFILE"] == "" {
		t.Error("unit sets no LimitNOFILE")
	}
	if prod["data.dir"] != "/var/lib/"+keys["StateDirectory"] {
		t.Errorf("production.yaml data.dir %v is not the unit's state directory /var/lib/%s", prod["data.dir"], keys["StateDirectory"])
	}
}

// The kit against the real thing: Prometheus (Debian's package) scrapes two
// brokers, A on a small disk with a simulated night (of yesterday, so that
// the archive builds it) and B packaging an ingest folder behind a SASL_SSL
// listener. Both serve their web pages as production.yaml does: HTTPS,
// /metrics for the user "prometheus" only, and Prometheus runs the shipped
// scrape config. Every dashboard query and every rule expression returns
// data; `ztfbroker status` agrees with /metrics; then A's disk fills, B's
// packager refuses an input, the certificate (10 days left) nears expiry
// and A is killed, and each rule is seen firing in /api/v1/alerts.
func TestPrometheusEvaluatesKit(t *testing.T) {
	site := newSiteAccess(t, 10*24*time.Hour)
	pw, certFile, keyFile := site.passwordFile, site.certFile, site.keyFile

	// A: yesterday's night, 6 exposures of 20 alerts, archived once idle.
	disk := smallDisk(t, 128<<20)
	yesterday := time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02") + "T12:00:00Z"
	addMetricsUser(t, filepath.Join(disk, "data"), pw)
	a := startServe(t, site, "--data-dir", filepath.Join(disk, "data"), "--packager=true",
		"--set", "packager.source.simulate.alerts=20", "--set", "packager.source.simulate.exposures=6",
		"--set", "packager.source.simulate.interval.ms=300", "--set", "packager.source.simulate.night.ms=0",
		"--set", "packager.source.simulate.start="+yesterday,
		"--set", "archive.idle.ms=500", "--set", "archive.poll.ms=300")

	// B: a SASL_SSL listener, a mirror of A's public stream, and an ingest
	// folder with one exposure the packager must refuse.
	dirB := t.TempDir()
	sasl := freeAddr(t)
	cfgB := filepath.Join(dirB, "b.yaml")
	writeFile(t, cfgB, fmt.Sprintf(`listeners:
  - name: PLAINTEXT
    listen: 127.0.0.1:0
  - name: SASL_SSL
    listen: %s
    tls.cert: %s
    tls.key: %s
    sasl.mechanisms: [SCRAM-SHA-512]
mirror:
  enabled: true
  bootstrap: [%s]
  topics: ztf_*_programid1
`, sasl, certFile, keyFile, a.Kafka))
	ingest := filepath.Join(dirB, "ingest")
	writeFile(t, filepath.Join(ingest, "exp-1", "candidates.jsonl"), "this is not a detection\n")
	writeFile(t, filepath.Join(ingest, "exp-1", "READY"), "")
	addMetricsUser(t, filepath.Join(dirB, "data"), pw)
	b := startServe(t, site, "--config", cfgB, "--data-dir", filepath.Join(dirB, "data"), "--packager=true",
		"--set", "packager.source.kind=ingest", "--set", "packager.source.ingest.dir="+ingest,
		"--set", "packager.source.ingest.poll.ms=200")

	prom := startPrometheus(t, site, a.HTTP, b.HTTP)

	// A failed SASL login on B, a consumer group on A that stops 10 alerts
	// into the night, and the night's end and archive on A.
	kcat(t, "-b", sasl, "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
		"-X", "sasl.username=nobody", "-X", "sasl.password=wrong", "-X", "ssl.ca.location="+certFile, "-L", "-m", "5")
	nightTopic := "ztf_" + strings.ReplaceAll(yesterday[:10], "-", "") + "_programid1"
	waitMetric(t, a, "ztfbroker_packager_alerts_total", func(v float64) bool { return v == 120 })
	kcat(t, "-b", a.Kafka, "-G", "night-watch", nightTopic, "-o", "beginning", "-c", "10", "-q", "-e")
	waitMetric(t, a, `ztfbroker_archive_builds_total{program="1",result="ok"}`, func(v float64) bool { return v >= 1 })
	waitMetric(t, b, `ztfbroker_packager_rejected_total{field="json"}`, func(v float64) bool { return v >= 1 })

	t.Run("status", func(t *testing.T) { checkStatus(t, a, nightTopic, site) })

	// Every query has data: the dashboard's panels and the rules' expressions
	// with their comparisons made `bool`, so that a rule not firing still
	// shows that its series exist and its expression evaluates.
	queries := map[string]string{}
	for _, q := range dashboardQueries(t) {
		queries[q] = "dashboard"
	}
	for _, r := range loadRules(t) {
		queries[boolComparisons(r.Expr)] = "rule " + r.Alert
	}
	deadline := time.Now().Add(20 * time.Second)
	for q, from := range queries {
		for {
			n, err := prom.series(q)
			if err != nil {
				t.Fatalf("%s: %q: %v", from, q, err)
			}
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: %q returns no data", from, q)
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	// Force the rules to fire: A's disk below the low-water mark (5% of
	// the file system by default), B's refused input (above) and
	// certificate, then A gone.
	fill(t, disk, 1<<20)
	prom.waitFiring(t, "ZtfbrokerDiskBelowLowWater", a.HTTP)
	prom.waitFiring(t, "ZtfbrokerPackagerRefusingInputs", b.HTTP)
	prom.waitFiring(t, "ZtfbrokerCertificateExpiring", b.HTTP)
	prom.waitFiring(t, "ZtfbrokerCertificateExpiring", a.HTTP)
	a.kill()
	prom.waitFiring(t, "ZtfbrokerDown", a.HTTP)
}

// checkStatus compares `ztfbroker status` with A's /metrics.
func checkStatus(t *testing.T, a *serveProc, nightTopic string, site siteAccess) {
	m := scrape(t, a)
	sum := func(name, match string) (s float64) {
		for k, v := range m {
			if strings.HasPrefix(k, name+"{") && strings.Contains(k, match) {
				s += v
			}
		}
		return s
	}
	topicLabel := `topic="` + nightTopic + `"`
	alerts := sum("ztfbroker_log_end_offset", topicLabel) - sum("ztfbroker_log_start_offset", topicLabel)
	if alerts != 120 {
		t.Fatalf("metrics say %v alerts stored in %s, the night made 120", alerts, nightTopic)
	}
	onDisk := sum("ztfbroker_log_size_bytes", topicLabel)
	// kcat read 10 alerts of the 30 or so in each partition and committed.
	lag := sum("ztfbroker_group_lag", `group="night-watch"`)
	if committed := sum("ztfbroker_group_committed_offset", `group="night-watch"`); committed < 10 || lag <= 0 || lag > 120-10 {
		t.Errorf("metrics: night-watch committed %v offsets and lags %v alerts, of 120", committed, lag)
	}

	url := "https://" + a.HTTP
	out, err := exec.Command(binary, "status", "--http", url, "--tls-ca", site.certFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "401") {
		t.Errorf("status without the metrics user: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "status", "--http", url, "--tls-ca", site.certFile,
		"--user", "prometheus", "--password-file", site.passwordFile).CombinedOutput()
	if err != nil {
		t.Fatalf("ztfbroker status: %v\n%s", err, out)
	}
	screen := string(out)
	t.Logf("ztfbroker status:\n%s", screen)
	wantLines := []string{
		fmt.Sprintf(`(?m)^%s\s+4\s+120\s+%s MB\s`, nightTopic, regexp.QuoteMeta(fmt.Sprintf("%.1f", onDisk/1e6))),
		fmt.Sprintf(`(?m)^night-watch\s+\d+\s+%d\s*$`, int(lag)),
		`(?m)^packager: 120 alerts in 6 exposures`,
		fmt.Sprintf(`(?m)^archive program 1: last built \d{4}-\d\d-\d\d \d\d:\d\d UTC; builds %d ok, 0 failed; 0 nights missing$`,
			int(m[`ztfbroker_archive_builds_total{program="1",result="ok"}`])),
	}
	for _, re := range wantLines {
		if !regexp.MustCompile(re).MatchString(screen) {
			t.Errorf("status has no line matching %s", re)
		}
	}
	// Free space moves with everything else on the machine: within 1%.
	free := regexp.MustCompile(`disk: ([0-9.]+) MB free`).FindStringSubmatch(screen)
	if free == nil {
		t.Fatal("status shows no free disk space")
	}
	shown, _ := strconv.ParseFloat(free[1], 64)
	if want := m["ztfbroker_log_dir_free_bytes"] / 1e6; shown < want*0.99 || shown > want*1.01 {
		t.Errorf("status shows %.1f MB free, /metrics %.1f MB", shown, want)
	}
	// The JSON is what the summary is made of.
	js, err := exec.Command(binary, "status", "--http", url, "--tls-ca", site.certFile,
		"--user", "prometheus", "--password-file", site.passwordFile, "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Disk struct {
			Writable bool `json:"writable"`
		} `json:"disk"`
		Memory struct {
			Budget int64 `json:"budget_bytes"`
		} `json:"memory"`
	}
	if err := json.Unmarshal(js, &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js)
	}
	if !st.Disk.Writable || float64(st.Memory.Budget) != m["ztfbroker_memory_budget_bytes"] {
		t.Errorf("status --json: %s", js)
	}
}

// boolComparisons makes each comparison outside label matchers and strings
// a `bool` one, so that the expression returns its series whether or not
// the threshold is crossed.
func boolComparisons(expr string) string {
	var b strings.Builder
	depth, quote := 0, byte(0)
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote != 0:
			if c == '\\' && i+1 < len(expr) {
				b.WriteByte(c)
				i++
				c = expr[i]
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '{':
			depth++
		case c == '}':
			depth--
		case depth == 0 && strings.ContainsRune("<>=!", rune(c)):
			op := string(c)
			if i+1 < len(expr) && expr[i+1] == '=' {
				op += "="
			}
			if op == "=" || op == "!" { // not a comparison
				break
			}
			b.WriteString(op + " bool")
			i += len(op) - 1
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(readFile(t, "prometheus/ztfbroker.rules.yml"), &f); err != nil {
		t.Fatal(err)
	}
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) < 10 {
		t.Fatalf("%d rules", len(rules))
	}
	return rules
}

// dashboardQueries is every target's expression of every panel.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(readFile(t, "grafana/ztfbroker.json"), &d); err != nil {
		t.Fatal(err)
	}
	var qs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if strings.Contains(tg.Expr, "$") {
				t.Errorf("panel %q: %q uses a Grafana variable the test cannot evaluate", p.Title, tg.Expr)
			}
			qs = append(qs, tg.Expr)
		}
	}
	if len(qs) < 20 {
		t.Fatalf("%d dashboard queries", len(qs))
	}
	return qs
}

// prometheus is a running Prometheus server of the test.
type prometheus struct{ addr string }

// startPrometheus runs Prometheus on the shipped scrape config, changed only
// where a test must: its targets, the test's CA and password files, 1 s
// intervals, and the rules with every `for` cut to 0s (the expressions
// unchanged).
func startPrometheus(t *testing.T, site siteAccess, targets ...string) *prometheus {
	t.Helper()
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Fatalf("prometheus is needed by this test and is not installed (.ci/run installs it): %v", err)
	}
	dir := t.TempDir()
	rules := regexp.MustCompile(`(?m)^(\s+)for: .*$`).ReplaceAll(readFile(t, "prometheus/ztfbroker.rules.yml"), []byte("${1}for: 0s"))
	writeFile(t, filepath.Join(dir, "ztfbroker.rules.yml"), string(rules))
	var cfg map[string]any
	if err := yaml.Unmarshal(readFile(t, "prometheus/prometheus.yml"), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["global"] = map[string]any{"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"}
	delete(cfg, "alerting")
	job := cfg["scrape_configs"].([]any)[0].(map[string]any)
	if job["job_name"] != "ztfbroker" {
		t.Fatalf("the scrape job is %v, the rules select job=\"ztfbroker\"", job["job_name"])
	}
	auth := job["basic_auth"].(map[string]any)
	if auth["username"] != "prometheus" || job["scheme"] != "https" {
		t.Fatalf("the scrape config logs in as %v over %v; production.yaml serves https for the user prometheus", auth["username"], job["scheme"])
	}
	auth["password_file"] = site.passwordFile
	job["tls_config"].(map[string]any)["ca_file"] = site.certFile
	job["static_configs"] = []any{map[string]any{"targets": targets}}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "prometheus.yml"), string(out))

	p := &prometheus{addr: freeAddr(t)}
	cmd := exec.Command("prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address="+p.addr, "--log.level=warn")
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get("http://" + p.addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 20 s:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// series is how many series an instant query returns now.
func (p *prometheus) series(q string) (int, error) {
	resp, err := http.Get("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s: %s", r.Status, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return 0, fmt.Errorf("result type %s, not an instant vector", r.Data.ResultType)
	}
	return len(r.Data.Result), nil
}

// waitFiring waits for alert name on instance in /api/v1/alerts.
func (p *prometheus) waitFiring(t *testing.T, name, instance string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get("http://" + p.addr + "/api/v1/alerts")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = string(body)
		var r struct {
			Data struct {
				Alerts []struct {
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
					State       string            `json:"state"`
				} `json:"alerts"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		for _, a := range r.Data.Alerts {
			if a.Labels["alertname"] == name && a.Labels["instance"] == instance && a.State == "firing" {
				if a.Annotations["summary"] == "" || strings.Contains(a.Annotations["summary"], "{{") {
					t.Errorf("%s fires with summary %q", name, a.Annotations["summary"])
				}
				t.Logf("firing: %s: %s", name, a.Annotations["summary"])
				return
			}
		}
	}
	t.Fatalf("%s on %s not firing within 15 s; /api/v1/alerts:\n%s", name, instance, last)
}

// siteAccess is the brokers' web listeners as production.yaml serves them:
// HTTPS with a certificate for 127.0.0.1 (its own CA), /metrics kept to the
// user "prometheus", and a client that trusts the certificate.
type siteAccess struct {
	certFile, keyFile, passwordFile string
	client                          *http.Client
}

// metricsPassword is the password of the user "prometheus" of the test's brokers.
const metricsPassword = "scrapes-every-second"

func newSiteAccess(t *testing.T, valid time.Duration) siteAccess {
	t.Helper()
	dir := t.TempDir()
	s := siteAccess{passwordFile: filepath.Join(dir, "prometheus.pw")}
	writeFile(t, s.passwordFile, metricsPassword+"\n")
	s.certFile, s.keyFile = writeCertificate(t, dir, valid)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(readFile(t, s.certFile))
	s.client = &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return s
}

// get fetches path from a broker's web listener as the user "prometheus".
func (s siteAccess) get(t *testing.T, addr, path string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("prometheus", metricsPassword)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// serveProc is a running `ztfbroker serve`.
type serveProc struct {
	Kafka, HTTP string
	site        siteAccess
	cmd         *exec.Cmd
	logs        *lockedBuffer
	done        chan struct{}
}

// startServe runs serve on free loopback ports (the Kafka one replaced by
// a config file's first listener when args have --config) and waits until
// /healthz answers.
func startServe(t *testing.T, site siteAccess, args ...string) *serveProc {
	t.Helper()
	p := &serveProc{Kafka: freeAddr(t), HTTP: freeAddr(t), site: site, logs: &lockedBuffer{}, done: make(chan struct{})}
	args = append([]string{"serve", "--listen", p.Kafka, "--http", p.HTTP, "--admin-http=",
		"--set", "http.metrics.users=prometheus", "--set", "http.tls.cert=" + site.certFile,
		"--set", "http.tls.key=" + site.keyFile}, args...)
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("serve %v log:\n%s", args, p.logs.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("serve exited at start:\n%s", p.logs.String())
		default:
		}
		if resp, err := site.client.Get("https://" + p.HTTP + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready after 30 s:\n%s", p.logs.String())
		}
	}
}

func (p *serveProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// scrape reads /metrics into a map from series (name{labels}) to value.
func scrape(t *testing.T, p *serveProc) map[string]float64 {
	t.Helper()
	resp := p.site.get(t, p.HTTP, "/metrics")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics as prometheus: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// waitMetric waits up to 30 s for a series of p's /metrics to satisfy ok.
func waitMetric(t *testing.T, p *serveProc, series string, ok func(float64) bool) {
	t.Helper()
	var v float64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var found bool
		if v, found = scrape(t, p)[series]; found && ok(v) {
			return
		}
	}
	t.Fatalf("%s is %v after 30 s", series, v)
}

// addMetricsUser adds the user "prometheus" to a data directory before
// serve starts on it.
func addMetricsUser(t *testing.T, dataDir, passwordFile string) {
	t.Helper()
	out, err := exec.Command(binary, "user", "add", "--data-dir", dataDir, "--password-file", passwordFile, "prometheus").CombinedOutput()
	if err != nil {
		t.Fatalf("ztfbroker user add prometheus: %v\n%s", err, out)
	}
}

// kcat runs kcat for at most 20 s; its failure is the test's business (a
// refused login is expected to fail).
func kcat(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is needed by this test and is not installed (.ci/run installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	exec.CommandContext(ctx, "kcat", args...).Run()
}

// smallDisk mounts a tmpfs of size bytes (the tests run as root, as the
// disk-full tests of cmd/ztfbroker).
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s (this test needs root): %v: %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file until about leave bytes are free on dir's file system.
func fill(t *testing.T, dir string, leave int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for n := free - leave; n > 0; n -= int64(len(chunk)) {
		if _, err := f.Write(chunk[:min(n, int64(len(chunk)))]); err != nil {
			t.Fatal(err)
		}
	}
}

// writeCertificate writes a self-signed certificate for 127.0.0.1 valid
// for the given time, and its key.
func writeCertificate(t *testing.T, dir string, valid time.Duration) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(valid),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	return certFile, keyFile
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, name, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) { writeFile(t, to, string(readFile(t, from))) }

// lockedBuffer collects a process's output for the test's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
