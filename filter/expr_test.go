package filter

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztfbroker/ztfbroker/avrofile"
	"github.com/ztfbroker/ztfbroker/packager"
)

// samples are the shared sample alerts (beside the project root).
func samples(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir("../../shared/data/ztf/alerts", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".avro" {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = b
		return err
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("sample alerts: %v (%d found)", err, len(out))
	}
	return out
}

func TestCompileRefuses(t *testing.T) {
	c, err := NewCompiler(0)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		expr string
		want error
	}{
		"type-wrong":    {"candidate.magpsf + 'bright' > 1.0", ErrExpression},
		"unknown field": {"candidate.brightness < 18.0", ErrExpression},
		"not bool":      {"candidate.magpsf", ErrExpression},
		"syntax":        {"candidate.rb >", ErrExpression},
		"runaway":       {"prv_candidates.all(a, prv_candidates.all(b, prv_candidates.all(c, a.jd <= b.jd || c.jd > 0.0)))", ErrTooCostly},
		"empty":         {"  ", ErrExpression},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Compile(tc.expr)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Compile(%q) = %v, want %v", tc.expr, err, tc.want)
			}
			t.Log(err)
		})
	}
	for _, ok := range []string{
		"candidate.rb > 0.65 && candidate.magpsf < 18.5 && candidate.isdiffpos in ['t', '1'] && size(prv_candidates) >= 2",
		"cone(candidate.ra, candidate.dec, 1.0) && ndet() >= 1 && days_since_first() >= 0.0",
		"mag_rate() < -0.1 || !has(candidate.ssnamenr)",
		"size(cutoutScience.stampData) > 0",
		"prv_candidates.exists(p, p.fid == candidate.fid && p.magpsf > candidate.magpsf)",
	} {
		if _, err := c.Compile(ok); err != nil {
			t.Errorf("Compile(%q): %v", ok, err)
		}
	}
}

func TestHelpersOverSamples(t *testing.T) {
	c, _ := NewCompiler(0)
	d := NewDecoder()
	cone, err := c.Compile("cone(candidate.ra, candidate.dec, 0.5) && angdist(candidate.ra, candidate.dec, candidate.ra, candidate.dec + 1.0) > 3599.0")
	if err != nil {
		t.Fatal(err)
	}
	cut, _ := c.Compile("size(cutoutScience.stampData) > 0")
	if !cut.Cutouts || cone.Cutouts {
		t.Fatalf("cutouts wanted: %v %v", cut.Cutouts, cone.Cutouts)
	}
	read := 0
	for p, b := range samples(t) {
		var a Alert
		if err := d.Decode(b, Parts{true, true, true}, &a); err != nil {
			t.Logf("%s: %v", p, err)
			continue
		}
		read++
		if m, err := cone.Eval(&a); err != nil || !m {
			t.Errorf("%s: cone of itself = %v, %v", p, m, err)
		}
		if m, err := cut.Eval(&a); err != nil || !m {
			t.Errorf("%s: cutout = %v, %v", p, m, err)
		}
		n := Detections(a.Prv)
		days := DaysSinceFirst(&a.Candidate, a.Prv)
		rate := MagRate(&a.Candidate, a.Prv)
		if n < 1 || days < 0 || math.IsInf(rate, 0) {
			t.Errorf("%s: ndet %d days %v rate %v", p, n, days, rate)
		}
		t.Logf("%s: %s ndet %d days %.2f rate %.3f", filepath.Base(p), a.ObjectID, n, days, rate)
	}
	if read < 20 {
		t.Fatalf("only %d sample alerts decoded", read)
	}
}

// TestCostLimitAtRunTime: an expression within the estimate for ZTF-sized
// histories stops with an error, rather than running on, over an alert
// whose history is far longer than any ZTF sends.
func TestCostLimitAtRunTime(t *testing.T) {
	c, err := NewCompiler(20_000)
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Compile("prv_candidates.exists(p, p.jd < 0.0)")
	if err != nil {
		t.Fatal(err)
	}
	a := &Alert{Prv: make([]packager.PrvCandidate, 100)}
	if m, err := e.Eval(a); err != nil || m {
		t.Fatalf("short history: %v %v", m, err)
	}
	a.Prv = make([]packager.PrvCandidate, 50_000)
	if _, err := e.Eval(a); err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Fatalf("long history: %v, want the cost limit exceeded", err)
	}
}

// TestDecodeConfluentFrame: an alert framed as Confluent's (schema id,
// then the record, as packager --format confluent writes) reads as its
// container file does.
func TestDecodeConfluentFrame(t *testing.T) {
	b, err := os.ReadFile("../../shared/data/ztf/alerts/other-sources/boom/2695378462115010012.avro") // schema 4.02
	if err != nil {
		t.Fatal(err)
	}
	h, n, err := avrofile.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	blk, _, err := avrofile.ReadBlock(b[n:], h.Sync)
	if err != nil {
		t.Fatal(err)
	}
	frame := append([]byte{0, 0, 0, 0, 7}, blk.Data...)
	d := NewDecoder()
	var ocf, conf Alert
	all := Parts{true, true, true}
	if err := d.Decode(b, all, &ocf); err != nil {
		t.Fatal(err)
	}
	if err := d.Decode(frame, all, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Candid != ocf.Candid || conf.ObjectID != ocf.ObjectID || len(conf.Prv) != len(ocf.Prv) ||
		len(conf.Cutouts[2].StampData) != len(ocf.Cutouts[2].StampData) || conf.Candidate.RA != ocf.Candidate.RA ||
		conf.Candidate.Rb == nil || *conf.Candidate.Rb != *ocf.Candidate.Rb {
		t.Fatalf("confluent frame read as %s %d, container file as %s %d", conf.ObjectID, conf.Candid, ocf.ObjectID, ocf.Candid)
	}
}
