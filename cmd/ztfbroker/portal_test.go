package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ztfbroker/ztfbroker/alertcat"
	"github.com/ztfbroker/ztfbroker/alertindex"
	"github.com/ztfbroker/ztfbroker/avrofile"
	"github.com/ztfbroker/ztfbroker/packager"
)

// portalSamples are the shared real alerts beside the project root.
const portalSamples = "../../../shared/data/ztf/alerts"

// logAlert is one alert as the test reads it from the log itself, decoded
// by alertcat (not by the index's decoder nor the portal's).
type logAlert struct {
	Topic     string
	Partition int32
	Offset    int64
	Value     []byte
	Candid    int64
	ObjectID  string
	JD        float64
	RA, Dec   float64
	ProgramID int
	Prv       []map[string]any
	FP        []map[string]any
}

// readLog reads every message of the ztf_ topics and decodes it.
func readLog(t *testing.T, kafka string) []logAlert {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(newClient(t, kafka)).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	codec := &alertcat.Codec{Schemas: avrofile.NewSchemas(0)}
	var out []logAlert
	for _, topic := range topics.Names() {
		if !strings.HasPrefix(topic, "ztf_") {
			continue
		}
		for _, r := range consumeTopic(t, kafka, topic) {
			as, err := codec.Decode(r.Value)
			if err != nil || len(as) != 1 {
				t.Fatalf("%s/%d@%d: %d alerts, %v", topic, r.Partition, r.Offset, len(as), err)
			}
			js, err := codec.AppendJSON(nil, as[0])
			if err != nil {
				t.Fatal(err)
			}
			var a struct {
				Candidate struct {
					RA, Dec   float64
					ProgramID int `json:"programid"`
				} `json:"candidate"`
				Prv []map[string]any `json:"prv_candidates"`
				FP  []map[string]any `json:"fp_hists"`
			}
			if err := json.Unmarshal(js, &a); err != nil {
				t.Fatal(err)
			}
			out = append(out, logAlert{Topic: topic, Partition: r.Partition, Offset: r.Offset, Value: r.Value,
				Candid: as[0].Candid, ObjectID: as[0].ObjectID, JD: as[0].JD, RA: a.Candidate.RA, Dec: a.Candidate.Dec,
				ProgramID: a.Candidate.ProgramID, Prv: a.Prv, FP: a.FP})
		}
	}
	return out
}

// lastOfEachCandid keeps each candid's message with the highest offset.
func lastOfEachCandid(as []logAlert) []logAlert {
	last := map[int64]int{}
	var out []logAlert
	for _, a := range as {
		if i, ok := last[a.Candid]; ok {
			if a.Offset > out[i].Offset {
				out[i] = a
			}
			continue
		}
		last[a.Candid] = len(out)
		out = append(out, a)
	}
	return out
}

// portalClient asks the portal's HTTP, as a user or anonymously.
type portalClient struct {
	t          *testing.T
	base       string
	user, pass string
}

func (c portalClient) get(path string) (int, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+c.base+path, nil)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func (c portalClient) json(path string, v any) {
	c.t.Helper()
	code, body := c.get(path)
	if code != 200 {
		c.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
}

type apiList struct {
	Alerts []struct {
		Candid   int64  `json:"candid"`
		ObjectID string `json:"objectId"`
	} `json:"alerts"`
	Next *string `json:"next_cursor"`
}

func (l apiList) has(candid int64) bool {
	for _, a := range l.Alerts {
		if a.Candid == candid {
			return true
		}
	}
	return false
}

type apiStatus struct {
	AlertsIndexed int64 `json:"alerts_indexed"`
	Topics        []struct {
		Name   string `json:"name"`
		Alerts int64  `json:"alerts"`
	} `json:"topics"`
	LatencySeconds float64 `json:"last_exposure_latency_seconds"`
}

func (s apiStatus) topic(name string) int64 {
	for _, t := range s.Topics {
		if t.Name == name {
			return t.Alerts
		}
	}
	return 0
}

// waitIndexed waits until the index holds n alerts in all, or of topic.
func waitIndexed(t *testing.T, c portalClient, b *serveProc, topic string, n int64) apiStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var st apiStatus
	for time.Now().Before(deadline) {
		c.json("/api/v1/index/status", &st)
		got := st.AlertsIndexed
		if topic != "" {
			got = st.topic(topic)
		}
		if got == n {
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the index holds %d alerts (topic %q), want %d\n%s", st.AlertsIndexed, topic, n, tail(b.Logs()))
	return st
}

// TestPortal is the "what must be shown" against the real binary:
// after a replay of the shared real alerts and a short simulated night,
// every alert is found by candid, objectId, a cone and a time window (the
// partnership's only by a user who may read them), an object seen in
// three exposures has every point of its light curve, the pages render in
// headless Chromium, a restart resumes at the committed offsets, retention
// takes index entries with their segment, and reindex rebuilds the same
// index.
func TestPortal(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	b := startBroker(t, dataDir, "--archive=false", "--set", "portal.retention.check.ms=1000",
		"--set", "portal.metadata.max.age.ms=1000", "--set", "log.retention.check.interval.ms=1000")
	anon := portalClient{t: t, base: b.HTTP}
	pkg := func(args ...string) {
		t.Helper()
		out, err := runBinary(t, append([]string{"package", "--bootstrap", b.Kafka, "--data-dir", filepath.Join(dir, "pk")}, args...)...)
		if err != nil {
			t.Fatalf("package %q: %v\n%s", args, err, out)
		}
	}
	pkg("--replay", portalSamples)
	// One night archived, for the status page's list of nights.
	if out, err := runBinary(t, "archive", "--bootstrap", b.Kafka, "--night", "20190110", "--progress", "never",
		"--out", filepath.Join(dataDir, "archive", "public")); err != nil {
		t.Fatalf("archive: %v\n%s", err, out)
	}
	pkg("--simulate", "20", "--exposures", "6", "--interval", "100ms", "--cadence", "40s")
	// Whether the night's fields are seen again within six exposures
	// depends on the hour; an object surely seen in three exposures comes
	// through ingest, each exposure's alert carrying the earlier ones in
	// its history.
	ingest := filepath.Join(dir, "ingest")
	for i := range 3 {
		sim, err := packager.NewSimulation(packager.SimulateConfig{Alerts: 5, Start: time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		exp := sim.Exposure(i)
		d := &exp.Detections[0]
		d.ObjectID, d.Candidate.JD = "ZTF26portalx", 2461008.70+float64(i)*0.02
		// One alert an exposure (the same simulated exposure thrice would
		// make one candid), on numbers no simulated alert has.
		d.Candidate.Candid = 9_000_000_000_000_000_000 + int64(i)
		if err := packager.WriteIngestExposure(ingest, fmt.Sprintf("exp%d", i), exp.Detections, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	pkg("--ingest", ingest)
	for user, pass := range map[string]string{"alice": "alice-secret", "bob": "bob-secret"} {
		pw := filepath.Join(dir, user+".pw")
		os.WriteFile(pw, []byte(pass+"\n"), 0o600)
		if out, err := runBinary(t, "user", "add", "--bootstrap", b.Kafka, "--password-file", pw, user); err != nil {
			t.Fatalf("user add %s: %v\n%s", user, err, out)
		}
	}
	if out, err := runBinary(t, "acl", "add", "--bootstrap", b.Kafka, "--principal", "User:alice",
		"--operation", "READ", "--topic", "ztf_", "--prefixed"); err != nil {
		t.Fatalf("acl add: %v\n%s", err, out)
	}
	alice := portalClient{t: t, base: b.HTTP, user: "alice", pass: "alice-secret"}
	bob := portalClient{t: t, base: b.HTTP, user: "bob", pass: "bob-secret"}

	// The index holds an alert once, at its last place: the samples hold
	// some alerts twice (re-exported under a newer schema).
	alerts := lastOfEachCandid(readLog(t, b.Kafka))
	waitIndexed(t, anon, b, "", int64(len(alerts)))

	// Every alert by candid (the exact bytes), objectId, cone and window.
	public, private := 0, 0
	for _, a := range alerts {
		c := anon
		if a.ProgramID != 1 {
			private++
			if code, _ := anon.get(fmt.Sprintf("/api/v1/alerts/%d", a.Candid)); code != 401 {
				t.Errorf("alert %d of programid %d: anonymous %d, want 401", a.Candid, a.ProgramID, code)
			}
			if code, _ := bob.get(fmt.Sprintf("/api/v1/alerts/%d", a.Candid)); code != 403 {
				t.Errorf("alert %d of programid %d: bob (no ACL) %d, want 403", a.Candid, a.ProgramID, code)
			}
			var l apiList
			anon.json(fmt.Sprintf("/api/v1/cone?ra=%v&dec=%v&radius=2", a.RA, a.Dec), &l)
			if l.has(a.Candid) {
				t.Errorf("alert %d of programid %d listed to an anonymous cone search", a.Candid, a.ProgramID)
			}
			c = alice
		} else {
			public++
		}
		code, body := c.get(fmt.Sprintf("/api/v1/alerts/%d?format=avro", a.Candid))
		if code != 200 || !bytes.Equal(body, a.Value) {
			t.Errorf("alert %d as Avro: %d, %d bytes, want the %d bytes of %s/%d@%d", a.Candid, code, len(body), len(a.Value), a.Topic, a.Partition, a.Offset)
		}
		var js struct {
			Candid   int64  `json:"candid"`
			ObjectID string `json:"objectId"`
		}
		c.json(fmt.Sprintf("/api/v1/alerts/%d", a.Candid), &js)
		if js.Candid != a.Candid || js.ObjectID != a.ObjectID {
			t.Errorf("alert %d as JSON: candid %d objectId %q", a.Candid, js.Candid, js.ObjectID)
		}
		var obj apiList
		c.json("/api/v1/objects/"+a.ObjectID, &obj)
		if !obj.has(a.Candid) {
			t.Errorf("object %s: alert %d not listed", a.ObjectID, a.Candid)
		}
		var cone apiList
		c.json(fmt.Sprintf("/api/v1/cone?ra=%v&dec=%v&radius=1&limit=1000", a.RA, a.Dec), &cone)
		if !cone.has(a.Candid) {
			t.Errorf("alert %d not in a 1-arcsec cone around %v %v", a.Candid, a.RA, a.Dec)
		}
		var win apiList
		c.json(fmt.Sprintf("/api/v1/alerts?since=%.7f&until=%.7f&limit=1000", a.JD-1e-5, a.JD+1e-5), &win)
		if !win.has(a.Candid) {
			t.Errorf("alert %d not in the window around jd %v", a.Candid, a.JD)
		}
	}
	if public < 100 || private == 0 {
		t.Fatalf("%d public and %d other alerts; the replay and the night should give both", public, private)
	}

	// Paging through everything public, 25 at a time, gives each once.
	seen := map[int64]bool{}
	path := "/api/v1/alerts?since=2400000&until=2500000&limit=25"
	for pages := 0; ; pages++ {
		var l apiList
		anon.json(path, &l)
		for _, a := range l.Alerts {
			if seen[a.Candid] {
				t.Fatalf("alert %d listed twice", a.Candid)
			}
			seen[a.Candid] = true
		}
		if l.Next == nil || pages > 100 {
			break
		}
		path = "/api/v1/alerts?since=2400000&until=2500000&limit=25&cursor=" + url.QueryEscape(*l.Next)
	}
	if len(seen) != public {
		t.Errorf("paging listed %d alerts, want the %d public ones", len(seen), public)
	}

	checkBadRequests(t, anon)
	objectID := checkLightCurves(t, anon, alerts)
	checkPages(t, b, objectID)

	// A restart keeps the index and resumes at the committed offsets: of
	// five new alerts after it, only those five are read.
	before := waitIndexed(t, anon, b, "", int64(len(alerts)))
	b.Stop()
	b.Restart()
	if got := waitIndexed(t, anon, b, "", int64(len(alerts))); got.AlertsIndexed != before.AlertsIndexed {
		t.Fatalf("after a restart the index holds %d alerts, before %d", got.AlertsIndexed, before.AlertsIndexed)
	}
	pkg("--simulate", "5", "--exposures", "1", "--interval", "0")
	waitIndexed(t, anon, b, "", int64(len(alerts))+5)
	if read := metric(t, b, "ztfbroker_portal_records_read_total"); read != "5" {
		t.Errorf("after the restart the index read %s messages, want the 5 new ones (it resumes at its committed offsets)", read)
	}

	checkRetention(t, b, anon, pkg)

	// reindex rebuilds the same index from the log, with the portal off.
	b.Stop()
	// places lists where the index holds each alert, for a message when
	// two indexes differ.
	places := map[string]map[int64]string{}
	digest := func(name string) (string, int64) {
		idx, err := alertindex.Open(filepath.Join(dataDir, "portal"), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer idx.Close()
		d, n, err := idx.Digest()
		if err != nil || n == 0 {
			t.Fatalf("digest: %d alerts, %v", n, err)
		}
		places[name] = map[int64]string{}
		idx.Each(func(s alertindex.Summary) bool {
			places[name][s.Candid] = fmt.Sprintf("%s/%d@%d", s.Topic, s.Partition, s.Offset)
			return true
		})
		return d, n
	}
	differences := func() string {
		var out []string
		for c, p := range places["followed"] {
			if places["rebuilt"][c] != p {
				out = append(out, fmt.Sprintf("%d followed at %s, rebuilt at %q", c, p, places["rebuilt"][c]))
			}
		}
		for c, p := range places["rebuilt"] {
			if _, ok := places["followed"][c]; !ok {
				out = append(out, fmt.Sprintf("%d only rebuilt, at %s", c, p))
			}
		}
		return strings.Join(out, "\n")
	}
	want, wantN := digest("followed")
	b2 := startBroker(t, dataDir, "--archive=false", "--set", "portal.enabled=false")
	out, err := runBinary(t, "reindex", "--bootstrap", b2.Kafka, "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("reindex: %v\n%s", err, out)
	}
	if !strings.Contains(out, "digest "+want) {
		t.Errorf("reindex built another index than the one followed (digest %s, %d alerts):\n%s", want, wantN, out)
	}
	if got, _ := digest("rebuilt"); got != want {
		t.Errorf("index after reindex: digest %s, want %s; alerts that differ:\n%s\nserve's logs before:\n%s", got, want, differences(), tail(b.Logs()))
	}
	checkPortalCommand(t, b2.Kafka, filepath.Join(dir, "elsewhere"), int64(wantN), alerts)
	b2.Stop()
}

// checkPortalCommand runs `ztfbroker portal --bootstrap` against the broker
// as against any Kafka cluster: it indexes every alert into its own folder
// and serves the public ones (without the broker's users, nothing else).
func checkPortalCommand(t *testing.T, kafka, index string, want int64, alerts []logAlert) {
	addr := freeAddr(t)
	cmd := exec.Command(binary, "portal", "--bootstrap", kafka, "--index", index, "--http", addr, "--group", "portal-elsewhere")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	c := portalClient{t: t, base: addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st apiStatus
		req, _ := http.Get("http://" + addr + "/api/v1/index/status")
		if req != nil {
			json.NewDecoder(req.Body).Decode(&st)
			req.Body.Close()
		}
		if st.AlertsIndexed == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ztfbroker portal indexed %d alerts, want %d:\n%s", st.AlertsIndexed, want, tail(logs.String()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	checked := map[bool]int{}
	for _, a := range alerts {
		if checked[a.ProgramID == 1] >= 5 {
			continue
		}
		checked[a.ProgramID == 1]++
		code, body := c.get(fmt.Sprintf("/api/v1/alerts/%d?format=avro", a.Candid))
		switch {
		case a.ProgramID == 1 && (code != 200 || !bytes.Equal(body, a.Value)):
			t.Errorf("ztfbroker portal: public alert %d: %d, %d bytes", a.Candid, code, len(body))
		case a.ProgramID != 1 && code != 401:
			t.Errorf("ztfbroker portal: alert %d of programid %d: %d, want 401", a.Candid, a.ProgramID, code)
		}
	}
	if checked[true] < 5 || checked[false] < 5 {
		t.Errorf("checked %d public and %d other alerts through ztfbroker portal", checked[true], checked[false])
	}
}

// checkBadRequests: a wrong parameter answers 400 naming it, an unknown id 404.
func checkBadRequests(t *testing.T, c portalClient) {
	for _, tc := range []struct {
		path string
		code int
		says string
	}{
		{"/api/v1/cone?ra=10&dec=10&radius=3601", 400, "radius"},
		{"/api/v1/cone?ra=10&dec=91&radius=5", 400, "dec"},
		{"/api/v1/cone?dec=10&radius=5", 400, "ra"},
		{"/api/v1/cone?ra=10&dec=10&radius=5&limit=0", 400, "limit"},
		{"/api/v1/alerts?limit=1001", 400, "limit"},
		{"/api/v1/alerts?since=yesterday", 400, "since"},
		{"/api/v1/alerts?fid=4", 400, "fid"},
		{"/api/v1/alerts?rb_min=2", 400, "rb_min"},
		{"/api/v1/alerts?cursor=AAAA", 400, "cursor"},
		{"/api/v1/alerts/abc", 400, "candid"},
		{"/api/v1/alerts/1/cutouts/raw.fits", 400, "cutout"},
		{"/api/v1/alerts/1", 404, "not in the index"},
		{"/api/v1/objects/ZTF00nothing", 404, "no alert"},
		{"/api/v1/objects/bad%20id", 400, "objectId"},
	} {
		code, body := c.get(tc.path)
		if code != tc.code || !strings.Contains(string(body), tc.says) {
			t.Errorf("GET %s: %d %s, want %d naming %q", tc.path, code, body, tc.code, tc.says)
		}
	}
}

// checkLightCurves: for every simulated object seen in three exposures or
// more, its light curve has each alert's candidate, each row of their
// prv_candidates (detections by candid, upper limits by time and band) and
// each forced photometry point. It returns one such object.
func checkLightCurves(t *testing.T, c portalClient, alerts []logAlert) string {
	byObject := map[string][]logAlert{}
	for _, a := range alerts {
		if a.ProgramID == 1 {
			byObject[a.ObjectID] = append(byObject[a.ObjectID], a)
		}
	}
	var chosen []string
	for id, as := range byObject {
		if len(as) >= 3 {
			chosen = append(chosen, id)
		}
	}
	if !slices.Contains(chosen, "ZTF26portalx") {
		t.Fatalf("the object ingested in three exposures has %d alerts", len(byObject["ZTF26portalx"]))
	}
	sort.Strings(chosen)
	type point struct {
		JD     float64 `json:"jd"`
		Fid    int     `json:"fid"`
		Candid *int64  `json:"candid"`
	}
	for _, id := range chosen {
		var obj struct {
			Alerts     []json.RawMessage `json:"alerts"`
			LightCurve struct {
				Detections  []point `json:"detections"`
				UpperLimits []point `json:"upper_limits"`
				Forced      []point `json:"forced_photometry"`
			} `json:"light_curve"`
		}
		c.json("/api/v1/objects/"+id, &obj)
		if len(obj.Alerts) != len(byObject[id]) {
			t.Errorf("object %s: %d alerts listed, the log has %d", id, len(obj.Alerts), len(byObject[id]))
		}
		dets := map[int64]bool{}
		for _, p := range obj.LightCurve.Detections {
			if p.Candid != nil {
				dets[*p.Candid] = true
			}
		}
		near := func(ps []point, jd float64, fid int) bool {
			for _, p := range ps {
				if p.Fid == fid && math.Abs(p.JD-jd) < 1e-9 {
					return true
				}
			}
			return false
		}
		want := 0
		for _, a := range byObject[id] {
			want++
			if !dets[a.Candid] {
				t.Errorf("object %s: alert %d's candidate missing from the light curve", id, a.Candid)
			}
			for _, r := range a.Prv {
				want++
				jd, _ := r["jd"].(float64)
				fid, _ := r["fid"].(float64)
				if cand, ok := r["candid"].(float64); ok && r["magpsf"] != nil {
					if !dets[int64(cand)] && !near(obj.LightCurve.Detections, jd, int(fid)) {
						t.Errorf("object %s: detection at jd %v (alert %d's history) missing", id, jd, a.Candid)
					}
				} else if !near(obj.LightCurve.UpperLimits, jd, int(fid)) {
					t.Errorf("object %s: upper limit at jd %v (alert %d's history) missing", id, jd, a.Candid)
				}
			}
			for _, r := range a.FP {
				jd, _ := r["jd"].(float64)
				fid, _ := r["fid"].(float64)
				if f, _ := r["forcediffimflux"].(float64); f > -99999 && !near(obj.LightCurve.Forced, jd, int(fid)) {
					t.Errorf("object %s: forced photometry at jd %v (alert %d) missing", id, jd, a.Candid)
				}
			}
		}
		if got := len(obj.LightCurve.Detections) + len(obj.LightCurve.UpperLimits); got < len(byObject[id]) {
			t.Errorf("object %s: %d points for %d alerts", id, got, len(byObject[id]))
		}
	}
	return chosen[0]
}

// checkRetention: alerts of a segment retention deleted leave the index.
func checkRetention(t *testing.T, b *serveProc, c portalClient, pkg func(...string)) {
	const topic = "ztf_20200101_programid1"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b.Kafka))
	one := func(s string) *string { return &s }
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"segment.bytes": one("1048576")}, topic); err != nil {
		t.Fatal(err)
	}
	// The simulation numbers candids by its first exposure's time to
	// 0.864 s (ZTF's pid): a second after the last run, none is the same
	// as an alert of tonight's topic (which would move here, then go with
	// retention, while reindex keeps it there).
	time.Sleep(time.Second)
	pkg("--simulate", "40", "--exposures", "1", "--interval", "0", "--topic", topic, "--compression", "none")
	waitIndexed(t, c, b, topic, 40)
	logs, _ := filepath.Glob(filepath.Join(b.DataDir, topic+"-0", "*.log"))
	if len(logs) < 2 {
		t.Fatalf("%d segments of %s, want several", len(logs), topic)
	}
	codec := &alertcat.Codec{Schemas: avrofile.NewSchemas(0)}
	candids := map[int64]int64{} // offset -> candid
	for _, r := range consumeTopic(t, b.Kafka, topic) {
		as, err := codec.Decode(r.Value)
		if err != nil || len(as) != 1 {
			t.Fatalf("%s@%d: %v", topic, r.Offset, err)
		}
		candids[r.Offset] = as[0].Candid
	}
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: one("1000")}}, topic)
	if err == nil {
		_, err = resp.On(topic, nil)
	}
	if err != nil {
		t.Fatalf("set retention.ms: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var start int64
	for {
		starts, err := adm.ListStartOffsets(ctx, topic)
		ends, err2 := adm.ListEndOffsets(ctx, topic)
		s, _ := starts.Lookup(topic, 0)
		e, _ := ends.Lookup(topic, 0)
		var st apiStatus
		c.json("/api/v1/index/status", &st)
		// Every sealed segment gone (the active one stays), and the
		// index down to what the log holds.
		segs, _ := filepath.Glob(filepath.Join(b.DataDir, topic+"-0", "*.log"))
		if err == nil && err2 == nil && s.Offset > 0 && len(segs) == 1 && st.topic(topic) == e.Offset-s.Offset {
			start = s.Offset
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log start %d, end %d of %s; the index holds %d of its alerts (%v %v)\n%s", s.Offset, e.Offset, topic, st.topic(topic), err, err2, tail(b.Logs()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if removed, _ := strconv.Atoi(metric(t, b, "ztfbroker_portal_alerts_removed_total")); removed != int(start) {
		t.Errorf("ztfbroker_portal_alerts_removed_total %d, want the %d alerts below the log start offset", removed, start)
	}
	for off, candid := range candids {
		code, _ := c.get(fmt.Sprintf("/api/v1/alerts/%d?format=avro", candid))
		if want := map[bool]int{true: 404, false: 200}[off < start]; code != want {
			t.Errorf("alert %d at offset %d, log start %d: %d, want %d", candid, off, start, code, want)
		}
	}
}

// checkPages: the status, search and object pages in headless Chromium,
// the object page with its plot and three cutouts drawn; screenshots go to
// testdata/portal/.
func checkPages(t *testing.T, b *serveProc, objectID string) {
	// The screenshots kept in testdata/portal/ are refreshed with
	// ZTFBROKER_UPDATE_SCREENSHOTS=1; otherwise they go to a temporary
	// folder, so running the tests leaves the tree as it was.
	shots := t.TempDir()
	if os.Getenv("ZTFBROKER_UPDATE_SCREENSHOTS") != "" {
		shots = filepath.Join("testdata", "portal")
		os.MkdirAll(shots, 0o755)
	}
	dom := func(path, shot string) string {
		t.Helper()
		u := "http://" + b.HTTP + path
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--window-size=900,1000"}
		// One run writes the screenshot and prints the DOM.
		out := runTool(t, ctx, nil, "chromium", append(args, "--screenshot="+filepath.Join(shots, shot), "--dump-dom", u)...)
		return string(out)
	}
	defer func() {
		for _, name := range []string{"status.png", "search.png", "object.png"} {
			f, err := os.Open(filepath.Join(shots, name))
			if err != nil {
				t.Errorf("screenshot %s: %v", name, err)
				continue
			}
			cfg, err := png.DecodeConfig(f)
			f.Close()
			if err != nil || cfg.Width != 900 || cfg.Height != 1000 {
				t.Errorf("screenshot %s: %dx%d, %v", name, cfg.Width, cfg.Height, err)
			}
		}
	}()
	status := dom("/", "status.png")
	m := regexp.MustCompile(`id="alerts-indexed">(\d+)<`).FindStringSubmatch(status)
	if m == nil || m[1] != metric(t, b, "ztfbroker_portal_index_alerts") {
		t.Errorf("status page's alerts %v, metric ztfbroker_portal_index_alerts %s", m, metric(t, b, "ztfbroker_portal_index_alerts"))
	}
	if !regexp.MustCompile(`<tr class="night"><td>20190110</td><td><a href="/alerts/public/[^"]+">`).MatchString(status) {
		t.Errorf("the status page does not list the archived night 20190110")
	}
	lat, _ := strconv.ParseFloat(metric(t, b, "ztfbroker_portal_last_exposure_latency_seconds"), 64)
	if !strings.Contains(status, fmt.Sprintf(`id="latency">%.1f s<`, lat)) {
		t.Errorf("status page's latency is not the metric's %.1f s", lat)
	}
	search := dom("/search?since=2400000&until=2500000&limit=20&go=1", "search.png")
	if n := strings.Count(search, `<tr class="alert">`); n != 20 || !strings.Contains(search, `id="next"`) {
		t.Errorf("search page: %d result rows, want 20 and a next page link", n)
	}
	object := dom("/objects/"+objectID, "object.png")
	if !strings.Contains(object, `<svg id="lightcurve"`) || strings.Count(object, `class="detection"`) < 3 {
		t.Errorf("object page without a light curve of 3 detections or more")
	}
	for _, kind := range []string{"science", "template", "difference"} {
		want := fmt.Sprintf(`id="cutout-%s"`, kind)
		re := regexp.MustCompile(want + `[^>]*data-natural="(\d+)x(\d+)"`)
		if m := re.FindStringSubmatch(object); m == nil || m[1] == "0" || m[1] != m[2] {
			t.Errorf("cutout %s not drawn in the page: %v", kind, m)
		}
	}
}
