package packager

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"
)

// Simulation is a synthetic but plausible night on one ZTF field: a fixed
// population of objects (variable stars and transients, magnitudes 14-21),
// revisited every Cadence of sky time. Each exposure detects Alerts of them,
// records upper limits for the others and forced photometry for all, so
// histories grow from exposure to exposure. Cutouts are real gzipped FITS
// images (63x63 float32) rendered once per object family at start: rendering
// 30,000 stamps per exposure is the camera's work, not the packager's.
type Simulation struct {
	cfg     SimulateConfig
	clock   func() time.Time
	startJD float64
	seq     int
	objects []simObject
	stamps  [][3][]byte
	field   int
	ra, dec float64
	rng     *rand.Rand
}

type simObject struct {
	id         string
	ra, dec    float64
	mag        float64 // mean magnitude
	amp        float64 // variability amplitude [mag]
	period     float64 // [days]
	phase      float64
	transient  bool // fades linearly after its first detection
	rcid       int
	ndet, ncov int
	first      float64
	last       float64
	stamp      int
}

const simStampSets = 32

// NewSimulation prepares the field, its objects and the cutout pool.
func NewSimulation(cfg SimulateConfig, clock func() time.Time) (*Simulation, error) {
	d := DefaultConfig().Source.Simulate
	if cfg.Alerts <= 0 {
		cfg.Alerts = d.Alerts
	}
	if cfg.Objects < cfg.Alerts {
		cfg.Objects = cfg.Alerts * 5 / 4
	}
	if cfg.Cadence <= 0 {
		cfg.Cadence = d.Cadence
	}
	if cfg.Seed == 0 {
		cfg.Seed = d.Seed
	}
	if cfg.Programid == 0 {
		cfg.Programid = d.Programid
	}
	if clock == nil {
		clock = time.Now
	}
	start := cfg.Start
	if start.IsZero() {
		start = clock()
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x2f7))
	s := &Simulation{cfg: cfg, clock: clock, startJD: TimeJD(start), rng: rng}
	s.field = 400 + rng.IntN(480)
	s.ra = 20 + rng.Float64()*320
	s.dec = -20 + rng.Float64()*80
	year := start.UTC().Year() % 100
	s.objects = make([]simObject, cfg.Objects)
	for i := range s.objects {
		o := &s.objects[i]
		o.id = fmt.Sprintf("ZTF%02d%s", year, letters(uint64(i)+cfg.Seed*7919))
		dx, dy := (rng.Float64()-0.5)*3.4, (rng.Float64()-0.5)*3.4
		o.ra = s.ra + dx/math.Cos(s.dec*math.Pi/180)
		o.dec = s.dec + dy
		o.rcid = int((dx+1.7)/3.4*8)*8 + int((dy+1.7)/3.4*8)
		o.mag = 14 + 7*math.Sqrt(rng.Float64())
		o.amp = 0.05 + rng.ExpFloat64()*0.3
		o.period = 0.1 + rng.Float64()*20
		o.phase = rng.Float64() * 2 * math.Pi
		o.transient = rng.IntN(10) == 0
		o.stamp = rng.IntN(simStampSets)
	}
	s.stamps = make([][3][]byte, simStampSets)
	for i := range s.stamps {
		base := StampSpec{RA: s.ra, Dec: s.dec, Background: 150 + rng.Float64()*100, Noise: 8 + rng.Float64()*6,
			FWHM: 1.8 + rng.Float64()*1.2, DX: rng.Float64() - 0.5, DY: rng.Float64() - 0.5}
		flux := 2000 + rng.Float64()*20000
		sci, ref, diff := base, base, base
		sci.Flux, sci.Seed, sci.Kind = flux*1.4, uint64(i)*3+1, "sci"
		ref.Flux, ref.Seed, ref.Kind, ref.Noise = flux, uint64(i)*3+2, "ref", base.Noise/3
		diff.Flux, diff.Seed, diff.Kind, diff.Background = flux*0.4, uint64(i)*3+3, "diff", 0
		s.stamps[i] = [3][]byte{MakeStamp(sci), MakeStamp(ref), MakeStamp(diff)}
	}
	return s, nil
}

// letters spells n as seven lower-case letters, as ZTF object names end.
func letters(n uint64) string {
	b := []byte("aaaaaaa")
	for i := 6; i >= 0 && n > 0; i-- {
		b[i] = byte('a' + n%26)
		n /= 26
	}
	return string(b)
}

// Next waits Interval after the previous exposure (not before the first)
// and returns the next one; io.EOF after Exposures.
func (s *Simulation) Next(ctx context.Context) (*Exposure, error) {
	if s.cfg.Exposures > 0 && s.seq >= s.cfg.Exposures {
		return nil, io.EOF
	}
	if s.seq > 0 && s.cfg.Interval > 0 {
		t := time.NewTimer(s.cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	exp := s.Exposure(s.seq)
	s.seq++
	exp.Arrived = s.clock()
	return exp, nil
}

// Exposure builds exposure number seq (call in order: objects keep counts).
func (s *Simulation) Exposure(seq int) *Exposure {
	rng := rand.New(rand.NewPCG(s.cfg.Seed, uint64(seq)+1))
	jd := s.startJD + float64(seq)*s.cfg.Cadence.Hours()/24
	fid := 2 - seq%2
	nid := int(jd - 2458000)
	pidBase := int64(nid)*1e6 + int64(seq%10000)*100
	exp := &Exposure{ID: fmt.Sprintf("sim-f%d-%06d", s.field, seq)}
	exp.Detections = make([]Detection, 0, s.cfg.Alerts)
	order := rng.Perm(len(s.objects))
	diffmaglim := 20.2 + rng.Float64()*0.6
	magzp := 26.1 + rng.Float64()*0.3
	seeing := 1.8 + rng.Float64()*1.0
	for n, oi := range order {
		o := &s.objects[oi]
		pid := pidBase + int64(o.rcid)
		mag := o.mag + o.amp*math.Sin(2*math.Pi*(jd-s.startJD)/o.period+o.phase)
		if o.transient && o.first > 0 {
			mag += 0.08 * (jd - o.first)
		}
		if fid == 1 {
			mag += 0.3
		}
		o.ncov++
		sig := float32(0.02 + 0.2*math.Pow(10, 0.4*(mag-diffmaglim)))
		flux := math.Pow(10, -0.4*(mag-magzp))
		fluxunc := flux*float64(sig)/1.0857 + 20
		exp.Forced = append(exp.Forced, Row[FpHist]{ObjectID: o.id, Row: FpHist{
			Field: ptr(s.field), Rcid: ptr(o.rcid), Fid: fid, Pid: pid, Rfid: int64(s.field)*1000 + int64(o.rcid),
			Sciinpseeing: ptr(float32(seeing)), Scibckgnd: ptr(float32(180)), Scisigpix: ptr(float32(9)),
			Magzpsci: ptr(float32(magzp)), Magzpsciunc: ptr(float32(1e-5)), Magzpscirms: ptr(float32(0.03)),
			Exptime: ptr(float32(30)), Diffmaglim: ptr(float32(diffmaglim)), Programid: s.cfg.Programid, JD: jd,
			Forcediffimflux: ptr(float32(flux + rng.NormFloat64()*fluxunc)), Forcediffimfluxunc: ptr(float32(fluxunc)),
			Procstatus: ptr("0"), Distnr: ptr(float32(rng.Float64())), Ranr: o.ra, Decnr: o.dec,
			Magnr: ptr(float32(o.mag + 0.5)), Sigmagnr: ptr(float32(0.02)), Chinr: ptr(float32(1)), Sharpnr: ptr(float32(0)),
		}})
		if n >= s.cfg.Alerts {
			exp.Limits = append(exp.Limits, Row[PrvCandidate]{ObjectID: o.id, Row: PrvCandidate{
				JD: jd, Fid: fid, Pid: pid, Diffmaglim: ptr(float32(diffmaglim)), Programid: s.cfg.Programid,
				Rcid: ptr(o.rcid), Field: ptr(s.field), Magzpsci: ptr(float32(magzp)), Rbversion: "t17_f5_c3",
			}})
			continue
		}
		o.ndet++
		if o.first == 0 {
			o.first = jd
		}
		o.last = jd
		candid := pid*1e6 + int64(n)
		exp.Detections = append(exp.Detections, s.detection(o, rng, jd, fid, pid, candid, float32(mag), sig, diffmaglim, magzp, seeing))
	}
	return exp
}

func (s *Simulation) detection(o *simObject, rng *rand.Rand, jd float64, fid int, pid, candid int64, mag, sig float32, lim, magzp, seeing float64) Detection {
	f32 := func(v float64) *float32 { return ptr(float32(v)) }
	c := Candidate{
		JD: jd, Fid: fid, Pid: pid, Diffmaglim: f32(lim),
		Pdiffimfilename: ptr(fmt.Sprintf("ztf_%d_%06d_z%c_c%02d_o_q%d_scimrefdiffimg.fits", pid/1e6, s.field, "gri"[fid-1], o.rcid/4+1, o.rcid%4+1)),
		Programpi:       ptr("Kulkarni"), Programid: s.cfg.Programid, Candid: candid, Isdiffpos: "t",
		Tblid: ptr(candid % 1e6), Nid: ptr(int(jd - 2458000)), Rcid: ptr(o.rcid), Field: ptr(s.field),
		Xpos: f32(30 + rng.Float64()*3010), Ypos: f32(30 + rng.Float64()*3020),
		RA: o.ra + rng.NormFloat64()*2e-5, Dec: o.dec + rng.NormFloat64()*2e-5,
		Magpsf: mag + float32(rng.NormFloat64())*sig, Sigmapsf: sig, Chipsf: f32(0.8 + rng.Float64()),
		Magap: ptr(mag + 0.05), Sigmagap: ptr(sig * 1.2), Distnr: f32(rng.Float64() * 0.8),
		Magnr: f32(o.mag + 0.5), Sigmagnr: f32(0.02), Chinr: f32(1), Sharpnr: f32(0.01),
		Sky: f32(rng.NormFloat64()), Magdiff: f32(rng.NormFloat64() * 0.05), Fwhm: f32(seeing),
		Classtar: f32(0.98), Mindtoedge: f32(100 + rng.Float64()*1400), Magfromlim: ptr(float32(lim) - mag),
		Seeratio: f32(1), Aimage: f32(0.9), Bimage: f32(0.8), Aimagerat: f32(0.45), Bimagerat: f32(0.4),
		Elong: f32(1.1), Nneg: ptr(rng.IntN(10)), Nbad: ptr(0), Rb: f32(0.5 + rng.Float64()*0.5),
		Ssdistnr: f32(-999), Ssmagnr: f32(-999), Ssnamenr: ptr("null"), Sumrat: f32(0.95),
		Magapbig: ptr(mag + 0.03), Sigmagapbig: ptr(sig * 1.3), Ranr: o.ra, Decnr: o.dec,
		Sgmag1: f32(o.mag + 0.7), Srmag1: f32(o.mag + 0.2), Simag1: f32(o.mag), Szmag1: f32(o.mag - 0.1),
		Sgscore1: f32(rng.Float64()), Distpsnr1: f32(rng.Float64()),
		Ndethist: o.ndet, Ncovhist: o.ncov, Jdstarthist: ptr(o.first), Jdendhist: ptr(o.last),
		Scorr: ptr(5 + rng.Float64()*40), Tooflag: ptr(0),
		Objectidps1: ptr(int64(1e17) + int64(o.stamp)*1e9 + candid%1e9), Nmtchps: 3,
		Rfid: int64(s.field)*1000 + int64(o.rcid), Jdstartref: 2458150.5, Jdendref: 2458300.5, Nframesref: 15,
		Rbversion: "t17_f5_c3", Dsnrms: f32(7), Ssnrms: f32(12), Dsdiff: f32(-5),
		Magzpsci: f32(magzp), Magzpsciunc: f32(1e-5), Magzpscirms: f32(0.03), Nmatches: 800 + rng.IntN(800),
		Clrcoeff: f32(-0.05), Clrcounc: f32(1e-5), Zpclrcov: f32(-1e-6), Zpmed: f32(magzp), Clrmed: f32(0.5), Clrrms: f32(0.2),
		Neargaia: f32(rng.Float64() * 5), Neargaiabright: f32(-999), Maggaia: f32(o.mag), Maggaiabright: f32(-999),
		Exptime: f32(30), Drb: f32(0.6 + rng.Float64()*0.4), Drbversion: "d6_m7",
	}
	st := s.stamps[o.stamp]
	name := func(kind string) string { return fmt.Sprintf("candid%d_pid%d_targ_%s.fits.gz", candid, pid, kind) }
	return Detection{
		ObjectID:   o.id,
		Candidate:  c,
		Science:    Cutout{FileName: name("sci"), StampData: st[0]},
		Template:   Cutout{FileName: name("ref"), StampData: st[1]},
		Difference: Cutout{FileName: name("scimref"), StampData: st[2]},
	}
}
