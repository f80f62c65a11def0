package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ztfbroker/ztfbroker/avrofile"
	"github.com/ztfbroker/ztfbroker/packager"
)

// End-to-end tests of issue 13: the formats at rest and the packager's
// inputs, through the real binary.

// TestArchiveConfluentNight: a night packaged with --format confluent is
// archived as single-alert container files carrying their schema, the same
// bytes whether the schema comes from the packager's own copy or from a
// schema registry, and python3-avro reads every member.
func TestArchiveConfluentNight(t *testing.T) {
	b := startBroker(t, "")
	dir := t.TempDir()
	out, err := runBinary(t, "package", "--bootstrap", b.Kafka, "--simulate", "25", "--exposures", "1", "--interval", "0",
		"--format", "confluent", "--history", filepath.Join(dir, "h"), "--rejects", filepath.Join(dir, "r"))
	if err != nil {
		t.Fatalf("package: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tds, err := kadm.NewClient(newClient(t, b.Kafka)).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	night := ""
	for _, name := range tds.Names() {
		if strings.HasPrefix(name, "ztf_") && strings.HasSuffix(name, "_programid1") {
			night = strings.TrimSuffix(strings.TrimPrefix(name, "ztf_"), "_programid1")
		}
	}
	if night == "" {
		t.Fatalf("no nightly topic among %q", tds.Names())
	}

	schema, err := packager.LoadSchema()
	if err != nil {
		t.Fatal(err)
	}
	registry := httptest.NewServer(packager.SchemaHandler(1, schema))
	defer registry.Close()
	var tarballs []string
	for i, extra := range [][]string{nil, {"--schema-registry", registry.URL}} {
		outDir := filepath.Join(dir, "archive"+strconv.Itoa(i))
		out, err := runBinary(t, append([]string{"archive", "--bootstrap", b.Kafka, "--night", night, "--out", outDir, "--level", "1"}, extra...)...)
		if err != nil || strings.Contains(out, "nocandid") {
			t.Fatalf("archive %q: %v\n%s", extra, err, out)
		}
		tarballs = append(tarballs, filepath.Join(outDir, "ztf_public_"+night+".tar.gz"))
	}
	a, _ := os.ReadFile(tarballs[0])
	r, _ := os.ReadFile(tarballs[1])
	if len(a) == 0 || !bytes.Equal(a, r) {
		t.Errorf("embedded schema and registry give different archives (%d and %d bytes)", len(a), len(r))
	}
	// An id the registry does not know keeps the messages verbatim, counted.
	out, err = runBinary(t, "archive", "--bootstrap", b.Kafka, "--night", night, "--out", filepath.Join(dir, "archive-id7"),
		"--level", "1", "--schema-id", "7")
	if err != nil || !strings.Contains(out, "25 messages had no readable candid") {
		t.Errorf("archive with the wrong schema id: %v\n%s", err, out)
	}

	ex := t.TempDir()
	for _, args := range [][]string{{"tar", "-xzf", tarballs[0]}, {"md5sum", "-c", "--strict", "--quiet", "MD5SUMS"}} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = ex
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	members, _ := filepath.Glob(filepath.Join(ex, "*.avro"))
	if len(members) != 25 {
		t.Fatalf("%d members, want 25", len(members))
	}
	script := `
import sys, avro.datafile, avro.io
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        r = avro.datafile.DataFileReader(f, avro.io.DatumReader())
        alerts = list(r)
    a = alerts[0]
    print(path.rsplit("/", 1)[-1], len(alerts), a["candid"], a["schemavsn"], len(a["cutoutScience"]["stampData"]) > 0)
`
	got := runTool(t, ctx, nil, "/usr/bin/python3", append([]string{"-c", script}, members...)...)
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(lines) != 25 {
		t.Fatalf("python3-avro read %d members:\n%s", len(lines), got)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 5 || f[0] != f[2]+".avro" || f[1] != "1" || f[3] != "4.02" || f[4] != "True" {
			t.Errorf("python3-avro: %s", l)
		}
	}
}

// ingestExposure writes one exposure folder of n simulated detections, the
// first one made a detection of objectID at jd.
func ingestExposure(t *testing.T, dir, name string, n int, objectID string, jd float64) {
	t.Helper()
	sim, err := packager.NewSimulation(packager.SimulateConfig{Alerts: n, Start: time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := sim.Exposure(0)
	if objectID != "" {
		d := &exp.Detections[0]
		d.ObjectID, d.Candidate.JD = objectID, jd
	}
	if err := packager.WriteIngestExposure(dir, name, exp.Detections, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// runPackageBinary runs `ztfbroker package` and fails when it does not exit
// within a minute: --ingest without --follow must end.
func runPackageBinary(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, append([]string{"package"}, args...)...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("package %q did not exit within a minute:\n%s", args, out)
	}
	if err != nil {
		t.Fatalf("package %q: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestPackageIngestExits: --ingest without --follow packages what is READY
// and exits; a second run finds everything DONE and exits too.
func TestPackageIngestExits(t *testing.T) {
	c := packageCluster(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "ingest")
	ingestExposure(t, in, "000001", 4, "", 0)
	ingestExposure(t, in, "000002", 3, "", 0)
	args := []string{"--bootstrap", c.ListenAddrs()[0], "--data-dir", filepath.Join(dir, "data"), "--ingest", in}
	if out := runPackageBinary(t, args...); !strings.Contains(out, "total: 2 exposures, 7 alerts, 0 rejected") {
		t.Fatalf("output:\n%s", out)
	}
	for _, e := range []string{"000001", "000002"} {
		if _, err := os.Stat(filepath.Join(in, e, packager.IngestDone)); err != nil {
			t.Errorf("exposure %s not marked done: %v", e, err)
		}
	}
	if out := runPackageBinary(t, args...); !strings.Contains(out, "total: 0 exposures") {
		t.Fatalf("second run:\n%s", out)
	}
	packageConsume(t, c.ListenAddrs(), 7)
}

// TestPackageSeedHistory: --seed-history reads the sample alerts (schemas
// 0.x to 4.02) into the history store and exits; a detection of the 4.02
// sample's object packaged afterwards carries the seeded rows.
func TestPackageSeedHistory(t *testing.T) {
	samples := "../../../shared/data/ztf/alerts"
	boomFile := filepath.Join(samples, "other-sources/boom/2695378462115010012.avro")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	out := runPackageBinary(t, "--data-dir", data, "--seed-history", filepath.Join(samples, "ztf-avro-alert"), filepath.Join(samples, "other-sources"))
	// 38 alerts in 36 files: 25 seeded, 13 refused (the 6 prototypes without
	// objectId, the 5 of schemas 1.7 and 1.8 without rbversion, the 2
	// forced-photometry prototypes of 3.5).
	if !strings.Contains(out, "36 files, 25 alerts") || !strings.Contains(out, "; 13 refused") {
		t.Fatalf("output:\n%s", out)
	}
	reasons, _ := filepath.Glob(filepath.Join(data, "packager", "rejects", "*", "*.reason"))
	if len(reasons) != 13 {
		t.Errorf("%d reasons in the reject folder, want 13", len(reasons))
	}

	b, err := os.ReadFile(boomFile)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := packager.LoadSchema()
	if err != nil {
		t.Fatal(err)
	}
	var boom packager.Alert
	decodeAlert(t, schema, b, &boom)

	c := packageCluster(t)
	in := filepath.Join(dir, "ingest")
	ingestExposure(t, in, "000001", 2, boom.ObjectID, boom.Candidate.JD+1)
	out = runPackageBinary(t, "--bootstrap", c.ListenAddrs()[0], "--data-dir", data, "--ingest", in)
	if !strings.Contains(out, "total: 1 exposures, 2 alerts, 0 rejected") {
		t.Fatalf("output:\n%s", out)
	}
	found := false
	for _, rec := range packageConsume(t, c.ListenAddrs(), 2) {
		if string(rec.Key) != boom.ObjectID {
			continue
		}
		found = true
		var a packager.Alert
		decodeAlert(t, schema, rec.Value, &a)
		candids := map[int64]bool{}
		if a.PrvCandidates != nil {
			for _, p := range *a.PrvCandidates {
				if p.Candid != nil {
					candids[*p.Candid] = true
				}
			}
		}
		if !candids[boom.Candid] {
			t.Errorf("prv_candidates (%d candids) lack the seeded candidate %d", len(candids), boom.Candid)
		}
		if a.FpHists == nil || len(*a.FpHists) != len(*boom.FpHists) {
			t.Errorf("fp_hists: %v, seeded %d", a.FpHists, len(*boom.FpHists))
		}
	}
	if !found {
		t.Fatalf("no alert of %s", boom.ObjectID)
	}
}

// decodeAlert decodes a single-alert container file of the 4.02 schema.
func decodeAlert(t *testing.T, s *packager.Schema, b []byte, v any) {
	t.Helper()
	h, off, err := avrofile.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	blk, _, err := avrofile.ReadBlock(b[off:], h.Sync)
	if err != nil {
		t.Fatal(err)
	}
	if err := avro.Unmarshal(s.Alert, blk.Data, v); err != nil {
		t.Fatal(err)
	}
}
