package packager

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

const ztfSamples = "/work/shared/data/ztf/alerts"

// sampleIDs are the id fields of a real alert's candidate.
type sampleIDs struct {
	JD     float64 `avro:"jd"`
	Pid    int64   `avro:"pid"`
	Candid int64   `avro:"candid"`
	Rcid   *int    `avro:"rcid"`
	Tblid  *int64  `avro:"tblid"`
	Nid    *int    `avro:"nid"`
	Field  *int    `avro:"field"`
}

// readSampleIDs decodes the candidates of the real ZTF alerts (the survey's,
// with an objectId and a positive candid), whatever their schema.
func readSampleIDs(t *testing.T) []sampleIDs {
	t.Helper()
	var out []sampleIDs
	filepath.Walk(ztfSamples, func(path string, fi os.FileInfo, err error) error {
		if err != nil || !strings.HasSuffix(path, ".avro") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		r, err := avrofile.NewReader(f)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		var text []byte
		for _, m := range r.Header.Meta {
			if m.Key == "avro.schema" {
				text = m.Value
			}
		}
		schema, err := avrofile.ParseSchema(text)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		for {
			b, err := r.Next()
			if err != nil {
				break
			}
			dec := avro.NewDecoderForSchema(schema, bytes.NewReader(b.Data))
			for range b.Count {
				var a struct {
					ObjectID  string    `avro:"objectId"` // "" in the 2016 prototypes
					Candidate sampleIDs `avro:"candidate"`
				}
				if err := dec.Decode(&a); err != nil {
					t.Errorf("%s: %v", path, err)
					break
				}
				if a.ObjectID != "" && a.Candidate.Candid > 0 {
					out = append(out, a.Candidate)
				}
			}
		}
		return nil
	})
	if len(out) < 20 {
		t.Fatalf("%d sample alerts in %s", len(out), ztfSamples)
	}
	return out
}

// checkIDs is ZTF's numbering, read off the sample alerts: nid counts days
// from 2017-01-01 UT; pid is nid, the UT fraction of the day to 1e-5, the
// quadrant and 15; candid is pid, three digits (010 or 015 in the survey's
// alerts, others in the development samples) and tblid.
func checkIDs(c sampleIDs) string {
	nid := int64(math.Floor(c.JD - nidEpoch))
	frac := c.JD - 0.5 - math.Floor(c.JD-0.5)
	want := nid*1e9 + int64(frac*1e5)*1e4 + int64(*c.Rcid)*100 + 15
	switch {
	case c.Nid != nil && int64(*c.Nid) != nid:
		return "nid " + strconv.Itoa(*c.Nid) + ", want " + strconv.FormatInt(nid, 10)
	case c.Pid != want:
		return "pid " + strconv.FormatInt(c.Pid, 10) + ", want " + strconv.FormatInt(want, 10)
	case c.Candid/1e6 != c.Pid:
		return "candid " + strconv.FormatInt(c.Candid, 10) + " does not start with pid"
	case c.Tblid != nil && c.Candid%1000 != *c.Tblid:
		return "candid " + strconv.FormatInt(c.Candid, 10) + " does not end with tblid " + strconv.FormatInt(*c.Tblid, 10)
	}
	return ""
}

func TestSimulateIDsAsZTFNumbersThem(t *testing.T) {
	for _, c := range readSampleIDs(t) {
		if msg := checkIDs(c); msg != "" {
			t.Errorf("real alert %d: %s", c.Candid, msg)
		}
	}
	sim, _ := NewSimulation(SimulateConfig{Alerts: 300, Interval: 40 * time.Second, Start: nightStart}, nil)
	seen := map[int64]bool{}
	for seq := range 20 {
		for _, d := range sim.Exposure(seq).Detections {
			c := d.Candidate
			ids := sampleIDs{JD: c.JD, Pid: c.Pid, Candid: c.Candid, Rcid: c.Rcid, Tblid: c.Tblid, Nid: c.Nid}
			if msg := checkIDs(ids); msg != "" || c.Candid/1000%1000 != 10 {
				t.Fatalf("simulated %s: %s (candid %d)", d.ObjectID, msg, c.Candid)
			}
			if seen[c.Candid] {
				t.Fatalf("candid %d twice", c.Candid)
			}
			seen[c.Candid] = true
		}
	}
	// A restart names its objects afresh: history outlives a run.
	names := map[string]bool{}
	for _, d := range sim.Exposure(20).Detections {
		names[d.ObjectID] = true
	}
	again, _ := NewSimulation(SimulateConfig{Alerts: 300, Interval: 40 * time.Second, Start: nightStart.Add(time.Hour)}, nil)
	for _, d := range again.Exposure(0).Detections {
		if names[d.ObjectID] {
			t.Fatalf("%s named again after a restart", d.ObjectID)
		}
	}
}

// TestSimulateNightLikeZTF simulates a whole night (8 h, an exposure every
// 40 s) and compares it with the real stream.
func TestSimulateNightLikeZTF(t *testing.T) {
	const alerts = 60
	sim, _ := NewSimulation(SimulateConfig{Alerts: alerts, Interval: 40 * time.Second, Night: 8 * time.Hour,
		Start: nightStart}, nil)
	type place struct {
		field, rcid int
		x, y        float32
		ra, dec     float64
	}
	var (
		n, neg, bogus, real, asteroids, varStars, fainterThanRef int
		fields                                                   = map[int]bool{}
		rcids                                                    = map[int]bool{}
		places                                                   = map[string]place{}
		stamps                                                   = map[[32]byte]bool{}
		forced, forcedQuiet                                      int
		topics                                                   = map[string]bool{}
	)
	grid := map[int]simField{}
	for _, f := range ztfGrid() {
		grid[f.id] = f
	}
	for seq := range sim.perNight {
		exp := sim.Exposure(seq)
		if len(exp.Detections) != alerts {
			t.Fatalf("exposure %d: %d alerts", seq, len(exp.Detections))
		}
		for _, d := range exp.Detections {
			c := d.Candidate
			n++
			topics[NightTopic(c.JD, c.Programid)] = true
			if c.Sigmapsf > 1.0857/5+1e-6 || c.Magpsf > *c.Diffmaglim {
				t.Fatalf("%s: magpsf %v +- %v, diffmaglim %v: below 5 sigma", d.ObjectID, c.Magpsf, c.Sigmapsf, *c.Diffmaglim)
			}
			if c.Isdiffpos == "f" {
				neg++
			}
			switch rb := *c.Rb; {
			case rb < 0.3:
				bogus++
			case rb > 0.7:
				real++
			}
			if *c.Ssnamenr != "null" {
				asteroids++
				if *c.Ssdistnr < 0 || *c.Ssmagnr < 10 || c.Ndethist != 1 {
					t.Errorf("asteroid %s: ssdistnr %v ssmagnr %v ndethist %d", d.ObjectID, *c.Ssdistnr, *c.Ssmagnr, c.Ndethist)
				}
			}
			if *c.Sgscore1 > 0.5 && *c.Distnr >= 0 && *c.Distnr < 0.6 && *c.Rb > 0.5 { // variable stars
				varStars++
				if c.Magpsf > *c.Magnr {
					fainterThanRef++
				}
			}
			fields[*c.Field] = true
			rcids[*c.Rcid] = true
			if x, y := *c.Xpos, *c.Ypos; x < 0 || x > quadrantNX || y < 0 || y > quadrantNY {
				t.Fatalf("%s at %v, %v: off the quadrant", d.ObjectID, x, y)
			}
			f := grid[*c.Field]
			if sep := angularSep(c.RA, c.Dec, f.ra, f.dec); sep > 5 { // a field is ~7x7 deg
				t.Fatalf("%s is %.1f deg from the centre of field %d", d.ObjectID, sep, f.id)
			}
			p := place{*c.Field, *c.Rcid, *c.Xpos, *c.Ypos, c.RA, c.Dec}
			if old, ok := places[d.ObjectID]; ok && (old != p) {
				t.Fatalf("%s moved: %+v then %+v", d.ObjectID, old, p)
			}
			places[d.ObjectID] = p
			if seq < 40 { // distinct, valid cutouts centred on the alert
				for i, st := range [][]byte{d.Science.StampData, d.Template.StampData, d.Difference.StampData} {
					h := sha256.Sum256(st)
					if stamps[h] {
						t.Fatalf("%s: cutout %d is another alert's", d.ObjectID, i)
					}
					stamps[h] = true
					ra, dec := stampCRVALs(t, st)
					if sep := angularSep(ra, dec, c.RA, c.Dec) * 3600; sep > 1 {
						t.Fatalf("%s: cutout %d centred %.2f arcsec from the alert", d.ObjectID, i, sep)
					}
				}
			}
		}
		for _, f := range exp.Forced {
			r := f.Row
			if *r.Magnr <= 0 {
				continue
			}
			forced++
			// Difference flux: well under the reference source's own.
			if ref := math.Pow(10, -0.4*float64(*r.Magnr-*r.Magzpsci)); math.Abs(float64(*r.Forcediffimflux)) < ref/2 {
				forcedQuiet++
			}
		}
	}
	frac := func(k int) float64 { return float64(k) / float64(n) }
	t.Logf("%d alerts from %d fields, %d quadrants; negative %.2f, rb<0.3 %.2f, rb>0.7 %.2f, asteroids %.2f; "+
		"variable stars fainter in the difference than in the reference %d/%d; forced photometry under half the reference flux: %d/%d",
		n, len(fields), len(rcids), frac(neg), frac(bogus), frac(real), frac(asteroids), fainterThanRef, varStars, forcedQuiet, forced)
	if len(topics) != 1 || !topics[NightTopic(TimeJD(nightStart), 1)] {
		t.Errorf("topics %v", topics)
	}
	if len(fields) < 200 {
		t.Errorf("%d fields in a night, ZTF covers hundreds", len(fields))
	}
	if len(rcids) != 64 {
		t.Errorf("%d quadrants, want all 64", len(rcids))
	}
	// ZTF: about a third to a half of alerts are negative subtractions
	// (variable stars below their template); the samples: 11 of 24.
	if f := frac(neg); f < 0.2 || f > 0.55 {
		t.Errorf("negative subtractions %.2f", f)
	}
	if frac(bogus) < 0.2 || frac(real) < 0.3 {
		t.Errorf("real/bogus not bimodal: rb<0.3 %.2f, rb>0.7 %.2f", frac(bogus), frac(real))
	}
	if f := frac(asteroids); f < 0.02 || f > 0.15 {
		t.Errorf("asteroids %.2f", f)
	}
	if varStars < n/5 || fainterThanRef < varStars*8/10 {
		t.Errorf("variable stars: %d of %d alerts, %d fainter in the difference than their reference", varStars, n, fainterThanRef)
	}
	if forcedQuiet < forced*6/10 {
		t.Errorf("forced photometry: %d of %d under half the reference flux; it should be difference flux", forcedQuiet, forced)
	}
}

func angularSep(ra1, dec1, ra2, dec2 float64) float64 {
	c := math.Sin(dec1*rad)*math.Sin(dec2*rad) + math.Cos(dec1*rad)*math.Cos(dec2*rad)*math.Cos((ra1-ra2)*rad)
	return math.Acos(min(1, c)) / rad
}

// stampCRVALs inflates a whole stamp (so the deflate stream, CRC and size
// are checked too), checks it as FITS and returns its CRVAL1, CRVAL2.
func stampCRVALs(t *testing.T, st []byte) (ra, dec float64) {
	t.Helper()
	if err := CheckStamp(st); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(st))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	if len(raw) != fitsBlock+stampDataLen {
		t.Fatalf("%d bytes inflated", len(raw))
	}
	for off := 0; off < fitsBlock; off += 80 {
		c := string(raw[off : off+80])
		v, _ := strconv.ParseFloat(strings.TrimSpace(strings.SplitN(c[10:], "/", 2)[0]), 64)
		switch c[:8] {
		case "CRVAL1  ":
			ra = v
		case "CRVAL2  ":
			dec = v
		}
	}
	return ra, dec
}

// sizeProducer keeps each alert's size and history length.
type sizeProducer struct {
	mu    sync.Mutex
	sizes []int
	prv   []int
	kinds []string
}

func (p *sizeProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	dec, err := ocf.NewDecoder(bytes.NewReader(r.Value))
	var a Alert
	if err == nil && dec.HasNext() {
		err = dec.Decode(&a)
	}
	p.mu.Lock()
	p.sizes = append(p.sizes, len(r.Value))
	n := -1
	if err == nil && a.PrvCandidates != nil {
		n = len(*a.PrvCandidates)
	} else if err == nil {
		n = 0
	}
	p.prv = append(p.prv, n)
	p.mu.Unlock()
	promise(r, nil)
}

// TestSimulateThirtyDays: after 30 nights at the default shape, histories
// are tens of rows, not hundreds, and alerts are about ZTF's size.
func TestSimulateThirtyDays(t *testing.T) {
	if testing.Short() {
		t.Skip("30 simulated nights")
	}
	cfg := testConfig(t)
	prod := &sizeProducer{}
	p := newTestPackager(t, cfg, prod)
	sim, _ := NewSimulation(SimulateConfig{Alerts: 6, Objects: 15, Interval: 40 * time.Second, Night: 8 * time.Hour,
		Cadence: 45 * time.Minute, Start: nightStart}, nil)
	last := 30 * sim.perNight
	for seq := range last {
		exp := sim.Exposure(seq)
		if seq < last-60 { // history only: encoding is not what is measured
			if err := p.record(exp); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := p.Package(context.Background(), exp); err != nil {
			t.Fatal(err)
		}
	}
	sizes := append([]int(nil), prod.sizes...)
	sort.Ints(sizes)
	var withHistory []int
	for _, n := range prod.prv {
		if n < 0 {
			t.Fatal("an alert did not decode")
		}
		if n > 0 {
			withHistory = append(withHistory, n)
		}
	}
	sort.Ints(withHistory)
	if len(withHistory) < len(prod.prv)/5 {
		t.Fatalf("%d of %d alerts have history", len(withHistory), len(prod.prv))
	}
	med, maxPrv := withHistory[len(withHistory)/2], withHistory[len(withHistory)-1]
	medSize, total := sizes[len(sizes)/2], 0
	for _, n := range sizes {
		total += n
	}
	t.Logf("%d alerts on night 30: size median %d, mean %d, max %d bytes; prv_candidates of those with history: median %d, max %d",
		len(sizes), medSize, total/len(sizes), sizes[len(sizes)-1], med, maxPrv)
	if med < 10 || med > 99 || maxPrv > 200 {
		t.Errorf("prv_candidates median %d max %d: want tens", med, maxPrv)
	}
	if medSize < 40_000 || medSize > 90_000 {
		t.Errorf("median alert %d bytes, ZTF's are ~60 kB", medSize)
	}
}

// TestSimulateKeepsToTheClock: the sky time of an exposure is the clock's,
// so the topic is tonight's as minutes pass; a clock that jumps ahead is
// caught up with; after Night, nothing until the same time the next day.
func TestSimulateKeepsToTheClock(t *testing.T) {
	now := time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	sim, _ := NewSimulation(SimulateConfig{Alerts: 5, Interval: 40 * time.Second, Night: 8 * time.Hour}, clock)
	ctx := context.Background()
	next := func() float64 {
		t.Helper()
		exp, err := sim.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		jd := exp.Detections[0].Candidate.JD
		if d := JDTime(jd).Sub(now); d > time.Second || d < -40*time.Second {
			t.Fatalf("exposure at sky time %v, clock %v", JDTime(jd), now)
		}
		return jd
	}
	for range 8 { // five minutes and more
		if topic := NightTopic(next(), 1); topic != "ztf_20261203_programid1" {
			t.Fatalf("at %v: topic %s", now, topic)
		}
		now = now.Add(40 * time.Second)
	}
	now = now.Add(3 * time.Hour) // the packager fell behind or the laptop slept
	next()
	// Past the night's 8 hours the next exposure is tomorrow's first, at 05:00.
	if got := sim.due(sim.seqAt(time.Date(2026, 12, 3, 13, 30, 0, 0, time.UTC))); !got.Equal(time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)) {
		t.Errorf("after the night, next exposure due %v", got)
	}

	// Back to back (Interval 0) on a fixed clock, the topic is the clock's date.
	fixed := time.Date(2026, 6, 1, 3, 0, 0, 0, time.UTC)
	sim, _ = NewSimulation(SimulateConfig{Alerts: 3, Exposures: 20}, func() time.Time { return fixed })
	for {
		exp, err := sim.Next(ctx)
		if err == io.EOF {
			break
		}
		if topic := NightTopic(exp.Detections[0].Candidate.JD, 1); topic != "ztf_20260601_programid1" {
			t.Fatalf("topic %s", topic)
		}
	}
}
