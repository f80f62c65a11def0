package packager

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

const samples = "../../shared/data/ztf/alerts"

func sampleDir(t testing.TB) string {
	if _, err := os.Stat(samples); err != nil {
		t.Fatalf("sample alerts not found at %s (the shared folder beside the project root): %v", samples, err)
	}
	return samples
}

var nightStart = time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)

// TestPackageReplaySamples replays every sample alert onto a three-broker
// kfake cluster: one-alert files arrive byte-identical, the three-alert file
// as three containers that decode, every message decodes.
func TestPackageReplaySamples(t *testing.T) {
	c := newCluster(t, 3)
	p := newTestPackager(t, testConfig(t), newProducer(t, c))
	src, err := NewReplay([]string{sampleDir(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	files := src.Files()
	if len(files) != 36 {
		t.Fatalf("found %d sample files, want 36", len(files))
	}
	if err := p.RunSource(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	// 27 alerts have programid 1 or 3; the 5 of programid 0 and the 6
	// prototypes (programid 64) are refused, not sent (issue 13).
	recs := consume(t, c.ListenAddrs(), "^ztf_.*", 27)
	got := map[string]int{}
	for _, r := range recs {
		got[string(r.Value)]++
		if !strings.HasPrefix(r.Topic, "ztf_20") {
			t.Errorf("topic %s", r.Topic)
		}
		// Every message decodes with its own writer schema (read leniently).
		h, blocks, err := readContainer(r.Value)
		if err != nil {
			t.Fatalf("%s: %v", r.Key, err)
		}
		s, err := avrofile.ParseSchema(h.Schema())
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) != 1 || blocks[0].Count != 1 {
			t.Fatalf("%s: %d blocks, want one of one alert", r.Key, len(blocks))
		}
		var m map[string]any
		if err := avro.Unmarshal(s, blocks[0].Data, &m); err != nil {
			t.Fatalf("%s: decode: %v", r.Key, err)
		}
		if m["candidate"] == nil {
			t.Fatalf("%s: no candidate", r.Key)
		}
	}
	identical := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "avro_multi_alerts_other.avro") {
			continue
		}
		if got[string(b)] == 1 {
			identical++
		}
	}
	if identical != 24 {
		t.Errorf("%d identical files, want 24", identical)
	}
	// The 4.02 sample also opens with hamba's strict ocf reader.
	b, _ := os.ReadFile(filepath.Join(sampleDir(t), "other-sources/boom/2695378462115010012.avro"))
	if _, err := ocf.NewDecoder(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

func TestPackageSplitMultiAlertFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(sampleDir(t), "other-sources/fink-client/avro_multi_alerts_other.avro"))
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := SplitAlerts(b, avrofile.NewSchemas(0))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ZTF19abbpaqb", "ZTF18acjzbxi", "ZTF18abecvir"}
	if len(alerts) != 3 {
		t.Fatalf("%d alerts, want 3", len(alerts))
	}
	origHeader, origBlocks, _ := readContainer(b)
	for i, a := range alerts {
		if string(a.Key) != want[i] {
			t.Errorf("alert %d key %s, want %s", i, a.Key, want[i])
		}
		h, blocks, err := readContainer(a.Value)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(h.Schema(), origHeader.Schema()) {
			t.Error("schema text changed")
		}
		if !bytes.Equal(blocks[0].Data, origBlocks[i].Data) {
			t.Errorf("alert %d: record bytes changed", i)
		}
		if a.JD < 2459542 || a.Programid != 1 {
			t.Errorf("alert %d: jd %v programid %d", i, a.JD, a.Programid)
		}
	}
}

// TestPackageReplayParsesEachSchemaOnce: a replay keeps one parsed schema
// per schema text, however many files carry it, and the files it holds are
// still described (key, jd) from the cached schema.
func TestPackageReplayParsesEachSchemaOnce(t *testing.T) {
	one := filepath.Join(sampleDir(t), "other-sources/boom/2695378462115010012.avro")
	paths := []string{sampleDir(t)}
	for range 500 {
		paths = append(paths, one)
	}
	src, err := NewReplay(paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string]bool{}
	alerts, exposures := 0, 0
	for {
		exp, err := src.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || len(exp.Raw)+len(exp.Rejects) == 0 {
			t.Fatalf("%v: %v", exp, err)
		}
		alerts += len(exp.Raw) + len(exp.Rejects)
		exposures++
		if len(exp.Raw) > replayGroupAlerts {
			t.Fatalf("an exposure of %d alerts, over %d", len(exp.Raw), replayGroupAlerts)
		}
		for _, r := range exp.Rejects { // programid 0 and 64 (issue 13)
			h, _, err := readContainer(r.Input)
			if r.Field != "programid" || err != nil {
				t.Fatalf("%s: %+v", exp.ID, r)
			}
			texts[string(h.Schema())] = true
		}
		if len(exp.Raw) == 0 {
			continue
		}
		for _, a := range exp.Raw {
			h, _, err := readContainer(a.Value)
			if err != nil {
				t.Fatal(err)
			}
			texts[string(h.Schema())] = true
			if a.Candid == 2695378462115010012 && (string(a.Key) != "ZTF18abudxnw" || a.JD != 2460449.8784606) {
				t.Fatalf("4.02 alert described as %s, jd %v", a.Key, a.JD)
			}
		}
	}
	// 500 copies of one file and the samples: 538 alerts in 3 exposures.
	if alerts != 538 || exposures != 3 {
		t.Errorf("%d alerts in %d exposures, want 538 in 3 (of up to %d alerts)", alerts, exposures, replayGroupAlerts)
	}
	if src.schemas.Len() != len(texts) {
		t.Errorf("%d schemas parsed for %d schema texts in %d files", src.schemas.Len(), len(texts), len(src.Files()))
	}
	b, err := os.ReadFile(one)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := readContainer(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.schemas.Parse(string(h.Schema())); err != nil || src.schemas.Len() != len(texts) {
		t.Errorf("the 4.02 schema was not held parsed: %v, %d schemas", err, src.schemas.Len())
	}
}

// simulatedConfig is a night whose fields come back every other exposure
// (80 s of sky time, two exposures of 40 s).
func simulatedConfig(exposures, alerts int) SimulateConfig {
	return SimulateConfig{Alerts: alerts, Exposures: exposures, Start: nightStart, Cadence: 80 * time.Second, Seed: 7}
}

// simulated runs n exposures of a small simulated night through a packager
// on a kfake cluster and returns the messages and python's view of them.
func simulated(t *testing.T, cfg Config, exposures, alerts int) (*Packager, *Simulation, [][]pySummary) {
	c := newCluster(t, 1)
	p := newTestPackager(t, cfg, newProducer(t, c))
	sim, err := NewSimulation(simulatedConfig(exposures, alerts), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RunSource(context.Background(), sim); err != nil {
		t.Fatal(err)
	}
	topic := NightTopic(TimeJD(nightStart), 1)
	if topic != "ztf_20261129_programid1" {
		t.Fatalf("topic %s", topic)
	}
	recs := consume(t, c.ListenAddrs(), "^"+topic+"$", exposures*alerts)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Timestamp.Before(recs[j].Timestamp) })
	sums := pyCheck(t, p.Schema(), "ocf", nil, values(recs))
	byJD := map[float64][]pySummary{}
	for _, s := range sums {
		byJD[s.JD] = append(byJD[s.JD], s)
	}
	jds := make([]float64, 0, len(byJD))
	for jd := range byJD {
		jds = append(jds, jd)
	}
	sort.Float64s(jds)
	var out [][]pySummary
	for _, jd := range jds {
		out = append(out, byJD[jd])
	}
	if len(out) != exposures {
		t.Fatalf("%d exposures on the topic, want %d", len(out), exposures)
	}
	for i, r := range recs {
		if len(r.Value) < 50_000 || len(r.Value) > 90_000 {
			t.Errorf("alert %d is %d bytes, want about 60 kB", i, len(r.Value))
		}
	}
	return p, sim, out
}

// TestPackageSimulateHistories: four exposures (two fields, each taken in g
// then r) decode with python3-avro, validate against 4.02, and carry the
// right history: every earlier detection and upper limit of the object and
// its forced photometry, as the simulation emitted them.
func TestPackageSimulateHistories(t *testing.T) {
	const alerts, exposures = 40, 4
	_, _, exps := simulated(t, testConfig(t), exposures, alerts)
	// The same night again, to know each object's earlier rows.
	twin, _ := NewSimulation(simulatedConfig(exposures, alerts), nil)
	prv, fp := map[string][]float64{}, map[string]int{}
	recurring := 0
	for e, exp := range exps {
		for _, s := range exp {
			if !s.Gzip || len(s.Cutouts) != 3 || s.Cutouts[0] < 5000 {
				t.Errorf("%s: cutouts %v gzip %v", s.ObjectID, s.Cutouts, s.Gzip)
			}
			prev := prv[s.ObjectID]
			if s.Detections+s.Limits != len(prev) || s.FpHists != fp[s.ObjectID] {
				t.Errorf("exposure %d %s: %d detections + %d limits, %d fp_hists; want %d and %d",
					e, s.ObjectID, s.Detections, s.Limits, s.FpHists, len(prev), fp[s.ObjectID])
			}
			if s.Detections != s.Ndethist-1 {
				t.Errorf("exposure %d %s: %d earlier detections, ndethist %d", e, s.ObjectID, s.Detections, s.Ndethist)
			}
			for i, jd := range s.PrvJDs {
				if i < len(prev) && jd != prev[i] {
					t.Errorf("%s: prv jd %v, want %v", s.ObjectID, jd, prev[i])
				}
			}
			if len(prev) > 0 {
				recurring++
			}
		}
		x := twin.Exposure(e)
		for _, d := range x.Detections {
			prv[d.ObjectID] = append(prv[d.ObjectID], d.Candidate.JD)
		}
		for _, l := range x.Limits {
			prv[l.ObjectID] = append(prv[l.ObjectID], l.Row.JD)
		}
		for _, f := range x.Forced {
			fp[f.ObjectID]++
		}
	}
	if recurring == 0 {
		t.Error("no alert of an object seen before")
	}
}

func TestPackageHistoryPrunedAndKept(t *testing.T) {
	cfg := testConfig(t)
	schema, err := LoadSchema()
	if err != nil {
		t.Fatal(err)
	}
	h, err := OpenHistory(cfg.HistoryDir, schema, HistoryMemory{})
	if err != nil {
		t.Fatal(err)
	}
	b := h.Batch()
	for _, jd := range []float64{2461000.5, 2461020.5, 2461040.5} {
		row := PrvCandidate{JD: jd, Fid: 1, Pid: 7, Programid: 1, Rbversion: "x", Candid: ptr(int64(jd))}
		if err := b.AddDetection("ZTF26aaaaaab", &row); err != nil {
			t.Fatal(err)
		}
		if err := b.AddForced("ZTF26aaaaaab", &FpHist{JD: jd, Fid: 1, Pid: int64(jd), Programid: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h, err = OpenHistory(cfg.HistoryDir, schema, HistoryMemory{}) // a restart keeps it
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	prv, fp, err := h.Get("ZTF26aaaaaab", 0, 2461041)
	if err != nil || len(prv) != 3 || len(fp) != 3 {
		t.Fatalf("after reopen: %d prv %d fp %v", len(prv), len(fp), err)
	}
	n, err := h.Prune(2461040.5 - 30)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d rows (%v), want 2", n, err)
	}
	prv, fp, _ = h.Get("ZTF26aaaaaab", 0, 2461041)
	if len(prv) != 2 || len(fp) != 2 || prv[0].JD != 2461020.5 {
		t.Fatalf("after prune: %d prv %d fp", len(prv), len(fp))
	}
}

// TestPackageConfluent: the framed variant decodes with the schema fetched
// from /schemas/ids/<id>, in Go and in python3-avro.
func TestPackageConfluent(t *testing.T) {
	cfg := testConfig(t)
	cfg.Format = FormatConfluent
	cfg.SchemaID = 7
	c := newCluster(t, 1)
	p := newTestPackager(t, cfg, newProducer(t, c))
	srv := httptest.NewServer(p.SchemaHandler())
	defer srv.Close()
	sim, _ := NewSimulation(SimulateConfig{Alerts: 20, Exposures: 2, Start: nightStart, Seed: 3}, nil)
	if err := p.RunSource(context.Background(), sim); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, c.ListenAddrs(), "^ztf_20261129_programid1$", 40)
	id := binary.BigEndian.Uint32(recs[0].Value[1:5])
	resp, err := http.Get(srv.URL + "/schemas/ids/" + itoa(int(id)))
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Schema string }
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET schema: %d %v", resp.StatusCode, err)
	}
	s, err := avrofile.ParseSchema([]byte(body.Schema))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Value[0] != 0 || binary.BigEndian.Uint32(r.Value[1:5]) != 7 {
			t.Fatalf("frame %x", r.Value[:5])
		}
		var a Alert
		if err := avro.Unmarshal(s, r.Value[5:], &a); err != nil {
			t.Fatal(err)
		}
		if a.ObjectID != string(r.Key) || a.CutoutScience == nil {
			t.Fatalf("alert %s key %s", a.ObjectID, r.Key)
		}
		if len(r.Value) > 60_000 {
			t.Errorf("framed alert %d bytes: the schema text should not be in it", len(r.Value))
		}
	}
	pyCheck(t, p.Schema(), "confluent", []string{srv.URL}, values(recs))
	resp, _ = http.Get(srv.URL + "/schemas/ids/8")
	if resp.StatusCode != 404 {
		t.Errorf("unknown id: %d", resp.StatusCode)
	}
	resp.Body.Close()
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestPackageIngest: an exposure folder with good and bad candidates; the
// good go out and validate, each bad one is refused naming exposure,
// candidate and field, counted, and written to the reject folder.
func TestPackageIngest(t *testing.T) {
	cfg := testConfig(t)
	c := newCluster(t, 1)
	reg := prometheus.NewRegistry()
	p, err := New(cfg, newProducer(t, c), nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sim, _ := NewSimulation(SimulateConfig{Alerts: 12, Start: nightStart, Seed: 5}, nil)
	exp := sim.Exposure(0)
	dir := t.TempDir()
	if err := WriteIngestExposure(dir, "ztf_20261129_e0001", exp.Detections, exp.Limits, exp.Forced); err != nil {
		t.Fatal(err)
	}
	ed := filepath.Join(dir, "ztf_20261129_e0001")
	lines := strings.Split(strings.TrimSpace(readFile(t, filepath.Join(ed, IngestCandidates))), "\n")
	candid := func(i int) string { return itoa(int(exp.Detections[i].Candidate.Candid)) }
	edit := func(i int, f func(m map[string]any)) {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(lines[i]))
		dec.UseNumber() // candids (~3.6e18) do not fit a float64
		dec.Decode(&m)
		f(m["candidate"].(map[string]any))
		b, _ := json.Marshal(m)
		lines[i] = string(b)
	}
	edit(0, func(m map[string]any) { delete(m, "magpsf") })
	edit(1, func(m map[string]any) { m["fid"] = "r" })
	edit(2, func(m map[string]any) { m["dec"] = 95.0 })
	edit(3, func(m map[string]any) { m["colour"] = 1 })
	lines[4] = lines[4][:40]
	os.WriteFile(filepath.Join(ed, IngestCutouts, candid(5)+"_diff.fits.gz"), []byte("SIMPLE  = T not gzipped"), 0o644)
	os.Remove(filepath.Join(ed, IngestCutouts, candid(6)+"_sci.fits.gz"))
	os.WriteFile(filepath.Join(ed, IngestCandidates), []byte(strings.Join(lines, "\n")+"\n"), 0o644)

	in := NewIngest(dir, 0, nil, p.Schema())
	if err := p.RunSource(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ed, IngestDone)); err != nil {
		t.Error("exposure not marked done")
	}
	recs := consume(t, c.ListenAddrs(), "^ztf_20261129_programid1$", 5)
	sums := pyCheck(t, p.Schema(), "ocf", nil, values(recs))
	for _, s := range sums {
		if !s.Gzip {
			t.Errorf("%s: cutouts not gzip", s.ObjectID)
		}
	}
	want := map[string]string{
		candid(0): "field magpsf: missing",
		candid(1): "field fid: wrong type",
		candid(2): "field dec: 95 is outside",
		candid(3): "field colour: not a field",
		"line5":   "field json:",
		candid(5): "field cutoutDifference: " + candid(5) + "_diff.fits.gz: not a gzipped FITS",
		candid(6): "field cutoutScience: " + candid(6) + "_sci.fits.gz",
	}
	rd := filepath.Join(cfg.RejectDir, "ztf_20261129_e0001")
	for cand, msg := range want {
		reason := readFile(t, filepath.Join(rd, cand+".reason"))
		prefix := "exposure ztf_20261129_e0001 candidate " + cand + " "
		if !strings.HasPrefix(reason, prefix+msg) {
			t.Errorf("reason %q, want prefix %q", reason, prefix+msg)
		}
		if _, err := os.Stat(filepath.Join(rd, cand+".json")); err != nil {
			t.Errorf("%s: input not kept: %v", cand, err)
		}
	}
	if _, err := os.Stat(filepath.Join(rd, candid(5)+"_diff.fits.gz")); err != nil {
		t.Error("bad cutout not kept")
	}
	if n := counterValue(p.m.alerts); n != 5 {
		t.Errorf("alerts metric %v, want 5", n)
	}
	var total float64
	for _, f := range []string{"magpsf", "fid", "dec", "colour", "json", "cutoutDifference", "cutoutScience"} {
		total += counterValue(p.m.rejected.WithLabelValues(f))
	}
	if total != 7 {
		t.Errorf("rejected metric %v, want 7", total)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range fams {
		if f.GetName() == "ztfbroker_packager_exposure_latency_seconds" {
			found = f.GetMetric()[0].GetHistogram().GetSampleCount() == 1
		}
	}
	if !found {
		t.Error("latency histogram has no exposure")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPackageStamp(t *testing.T) {
	b := MakeStamp(StampSpec{RA: 10, Dec: 20, Background: 100, Noise: 10, Flux: 5000, FWHM: 2, Seed: 1, Kind: "sci"})
	if err := CheckStamp(b); err != nil {
		t.Fatal(err)
	}
	if b[0] != 0x1f || b[1] != 0x8b || len(b) < 10_000 || len(b) > 18_000 {
		t.Errorf("stamp %d bytes", len(b))
	}
	if err := CheckStamp([]byte("nope")); err == nil {
		t.Error("accepted non-gzip")
	}
}

func TestPackageConfigValidate(t *testing.T) {
	err := Config{Format: "xml", Source: SourceConfig{Kind: "camera"}}.Validate()
	for _, s := range []string{"history.dir", "reject.dir", "format", "source.kind"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("Validate: %v, want mention of %s", err, s)
		}
	}
	if err := testConfig(t).Validate(); err != nil {
		t.Error(err)
	}
}

func TestPackageContainerMatchesHamba(t *testing.T) {
	p := newTestPackager(t, testConfig(t), nopProducer{})
	sim, _ := NewSimulation(SimulateConfig{Alerts: 1, Start: nightStart}, nil)
	d := sim.Exposure(0).Detections[0]
	rec, err := p.encode(&d)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := ocf.NewDecoder(bytes.NewReader(rec.Value))
	if err != nil {
		t.Fatal(err)
	}
	var a Alert
	if !dec.HasNext() || dec.Decode(&a) != nil || dec.HasNext() {
		t.Fatal("hamba ocf does not read one alert")
	}
	if a.Candid != d.Candidate.Candid || a.Schemavsn != "4.02" {
		t.Errorf("decoded %+v", a.Candid)
	}
	if got := string(dec.Metadata()["avro.schema"]); got != string(p.Schema().Text) {
		t.Error("schema text differs")
	}
	_ = io.EOF
}

func counterValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	return d.GetCounter().GetValue()
}
