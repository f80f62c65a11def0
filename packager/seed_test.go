package packager

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

const boomAlert = "other-sources/boom/2695378462115010012.avro" // 4.02, ZTF18abudxnw

// writeTarball writes files as the members of a .tar.gz, as the archive does.
func writeTarball(t *testing.T, path string, files []string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.Base(f), Size: int64(len(b)), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.WriteHeader(&tar.Header{Name: "MD5SUMS", Size: 0, Mode: 0o644, Typeflag: tar.TypeReg})
	tw.Close()
	gz.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSeedHistorySamples seeds from the 36 sample files and a tarball, then
// packages a detection of the 4.02 sample's object: its prv_candidates hold
// the seeded candidate and history, its fp_hists the seeded forced points.
func TestSeedHistorySamples(t *testing.T) {
	cfg := testConfig(t)
	prod := &captureProducer{}
	p := newTestPackager(t, cfg, prod)
	tarball := filepath.Join(t.TempDir(), "ztf_public_20191125.tar.gz")
	writeTarball(t, tarball, []string{
		filepath.Join(sampleDir(t), "other-sources/fink-client/ZTF19acihgng.avro"),
		filepath.Join(sampleDir(t), "ztf-avro-alert/history/v0-unversioned/87704463155000.avro"),
	})
	res, err := SeedHistory(context.Background(), p.History(), []string{sampleDir(t), tarball}, cfg.RejectDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	// 36 files and 2 members, 40 alerts: refused are the 6+1 prototypes
	// without objectId, the 5 alerts of schema 1.7 and 1.8 (no rbversion)
	// and the 2 forced-photometry prototypes of 3.5.
	if res.Files != 38 || res.Alerts != 26 || res.Rejected != 14 || res.Forced != 10 || res.Detections < 26 {
		t.Fatalf("result %+v", res)
	}
	reasons := 0
	filepath.WalkDir(cfg.RejectDir, func(path string, d os.DirEntry, err error) error {
		if strings.HasSuffix(path, ".reason") {
			b, _ := os.ReadFile(path)
			if !strings.Contains(string(b), "field objectId: \"\" is not ZTF") && !strings.Contains(string(b), "rbversion: missing in this schema") {
				t.Errorf("%s: %s", path, b)
			}
			reasons++
		}
		return nil
	})
	if reasons != 14 {
		t.Errorf("%d reasons written, want 14", reasons)
	}

	// The seeded candidate is the row prvFromCandidate makes of it.
	b, err := os.ReadFile(filepath.Join(sampleDir(t), boomAlert))
	if err != nil {
		t.Fatal(err)
	}
	var boom Alert
	decodeSample(t, p.Schema(), b, &boom)
	prv, fp, err := p.History().Get(boom.ObjectID, boom.Candidate.JD-30, boom.Candidate.JD+1)
	if err != nil {
		t.Fatal(err)
	}
	want := prvFromCandidate(&boom.Candidate)
	i := slices.IndexFunc(prv, func(r PrvCandidate) bool { return r.Candid != nil && *r.Candid == boom.Candid })
	if i < 0 {
		t.Fatalf("candidate %d not in the history (%d rows)", boom.Candid, len(prv))
	}
	wb, _ := avro.Marshal(p.Schema().PrvCandidate, &want)
	gb, _ := avro.Marshal(p.Schema().PrvCandidate, &prv[i])
	if !bytes.Equal(wb, gb) {
		t.Errorf("seeded candidate row differs from prvFromCandidate's")
	}
	if len(fp) != len(*boom.FpHists) {
		t.Errorf("%d fp_hists seeded, the alert has %d", len(fp), len(*boom.FpHists))
	}

	// A new detection of the object carries the seeded rows.
	sim, _ := NewSimulation(SimulateConfig{Alerts: 1, Start: nightStart}, nil)
	exp := sim.Exposure(0)
	d := exp.Detections[0]
	d.ObjectID = boom.ObjectID
	d.Candidate.JD = boom.Candidate.JD + 1
	d.Candidate.Candid = boom.Candid + 1000
	if res, err := p.Package(context.Background(), &Exposure{ID: "after-seed", Detections: []Detection{d}}); err != nil || res.Alerts != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	var got Alert
	decodeSample(t, p.Schema(), prod.recs[len(prod.recs)-1].Value, &got)
	if got.PrvCandidates == nil || got.FpHists == nil {
		t.Fatal("no history in the alert")
	}
	candids := map[int64]bool{}
	for _, r := range *got.PrvCandidates {
		if r.Candid != nil {
			candids[*r.Candid] = true
		}
	}
	if !candids[boom.Candid] {
		t.Errorf("prv_candidates lack the seeded candidate %d", boom.Candid)
	}
	for _, r := range *boom.PrvCandidates {
		if r.Candid != nil && r.JD >= d.Candidate.JD-30 && !candids[*r.Candid] {
			t.Errorf("prv_candidates lack the seeded prv_candidate %d", *r.Candid)
		}
	}
	if len(*got.FpHists) != len(*boom.FpHists) {
		t.Errorf("%d fp_hists, seeded %d", len(*got.FpHists), len(*boom.FpHists))
	}

	// Seeding again adds nothing: the rows have their keys.
	before, _, _ := p.History().Get(boom.ObjectID, 0, 3e6)
	if _, err := SeedHistory(context.Background(), p.History(), []string{filepath.Join(sampleDir(t), boomAlert)}, cfg.RejectDir, nil); err != nil {
		t.Fatal(err)
	}
	after, _, _ := p.History().Get(boom.ObjectID, 0, 3e6)
	if len(after) != len(before) {
		t.Errorf("reseeding: %d rows, then %d", len(before), len(after))
	}
}

func TestSeedHistoryBadInputs(t *testing.T) {
	cfg := testConfig(t)
	p := newTestPackager(t, cfg, &captureProducer{})
	dir := t.TempDir()
	good, _ := os.ReadFile(filepath.Join(sampleDir(t), boomAlert))
	os.WriteFile(filepath.Join(dir, "a.avro"), []byte("not avro"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.avro"), good[:len(good)-200], 0o644)
	os.WriteFile(filepath.Join(dir, "c.tar.gz"), []byte("not gzip"), 0o644)
	os.WriteFile(filepath.Join(dir, "d.avro"), good, 0o644)
	res, err := SeedHistory(context.Background(), p.History(), []string{dir}, cfg.RejectDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Alerts != 1 || res.Rejected != 3 {
		t.Fatalf("%+v", res)
	}
	if _, err := SeedHistory(context.Background(), p.History(), []string{filepath.Join(dir, "missing")}, cfg.RejectDir, nil); err == nil {
		t.Error("a missing path is not an error")
	}
}

// TestReplayRoutesByProgramid: replayed alerts go to their own night's
// programid topic; programid 0 and the prototypes (64), an unreadable
// record and a file that is no container are refused with their reason.
func TestReplayRoutesByProgramid(t *testing.T) {
	dir := t.TempDir()
	good, _ := os.ReadFile(filepath.Join(sampleDir(t), boomAlert))
	h, _, _ := avrofile.ParseHeader(good)
	garbage := avrofile.AppendBlock(avrofile.AppendHeader(nil, h), 1, []byte{0x80, 0x80, 0x80}, h.Sync)
	os.WriteFile(filepath.Join(dir, "garbage-record.avro"), garbage, 0o644)
	os.WriteFile(filepath.Join(dir, "not-avro.avro"), []byte("corrupt"), 0o644)
	cfg := testConfig(t)
	prod := &captureProducer{}
	p := newTestPackager(t, cfg, prod)
	src, err := NewReplay([]string{sampleDir(t), dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]int{}
	for {
		exp, err := src.Next(context.Background())
		if err != nil {
			break
		}
		for _, r := range exp.Rejects {
			fields[r.Field]++
		}
		if _, err := p.Package(context.Background(), exp); err != nil {
			t.Fatal(err)
		}
	}
	if len(prod.recs) != 27 || fields["programid"] != 11 || fields["alert"] != 1 || fields["file"] != 1 {
		t.Fatalf("%d sent, refused by field %v", len(prod.recs), fields)
	}
	schemas := avrofile.NewSchemas(0)
	for _, r := range prod.recs {
		as, err := SplitAlerts(r.Value, schemas)
		if err != nil || len(as) != 1 {
			t.Fatal(err)
		}
		if want := NightTopic(as[0].JD, as[0].Programid); r.Topic != want || !KnownProgram(as[0].Programid) {
			t.Errorf("alert %d of programid %d on %s, want %s", as[0].Candid, as[0].Programid, r.Topic, want)
		}
	}
	reason, err := os.ReadFile(filepath.Join(cfg.RejectDir, safeName(filepath.Join(dir, "garbage-record.avro")), "-.reason"))
	if err != nil || !strings.Contains(string(reason), "field alert: cannot be read") {
		t.Errorf("reason %q, %v", reason, err)
	}
	prog0 := filepath.Join(sampleDir(t), "ztf-avro-alert/history/v1.7/396522680015020000.avro")
	reason, err = os.ReadFile(filepath.Join(cfg.RejectDir, safeName(prog0), "396522680015020000.reason"))
	if err != nil || !strings.Contains(string(reason), "field programid: 0 is not 1 (public)") {
		t.Errorf("reason %q, %v", reason, err)
	}
}

// decodeSample decodes a single-alert container of the 4.02 schema into v.
func decodeSample(t *testing.T, s *Schema, b []byte, v any) {
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

// FuzzSeedAlerts: seeding reads files from outside; any bytes are seeded or
// refused, never a panic or a store error.
func FuzzSeedAlerts(f *testing.F) {
	for _, name := range []string{boomAlert, "other-sources/alertbase/single.avro", "ztf-avro-alert/history/v1.1/1726958725155000.avro"} {
		b, err := os.ReadFile(filepath.Join(sampleDir(f), name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	cfg := testConfig(f)
	p := newTestPackager(f, cfg, &captureProducer{})
	s := newSeeder(p.History(), cfg.RejectDir, zap.NewNop())
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := s.alerts("fuzz.avro", b); err != nil {
			t.Fatal(err)
		}
		if err := s.commit(); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkSeedAlert: one 4.02 alert (candidate, 10 prv_candidates, 10
// fp_hists) decoded, converted and added to the history.
func BenchmarkSeedAlert(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join(sampleDir(b), boomAlert))
	if err != nil {
		b.Fatal(err)
	}
	cfg := testConfig(b)
	p := newTestPackager(b, cfg, &captureProducer{})
	s := newSeeder(p.History(), cfg.RejectDir, zap.NewNop())
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.alerts("bench.avro", raw); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.commit(); err != nil {
		b.Fatal(err)
	}
	if s.res.Alerts != b.N {
		b.Fatalf("%d alerts seeded of %d", s.res.Alerts, b.N)
	}
}
