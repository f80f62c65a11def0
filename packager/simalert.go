package packager

import (
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
)

// The simulated exposure's rows: detections (alerts), upper limits and
// forced photometry, with the values a scientist checks first kept as ZTF
// has them (Masci et al. 2019; Bellm et al. 2019; the sample alerts):
//   - pid = nid*1e9 + floor(UT day fraction*1e5)*1e4 + rcid*100 + 15 and
//     candid = pid*1e6 + 10*1e3 + tblid, tblid counting the quadrant's
//     candidates from 0, nid the days since 2017-01-01;
//   - a detection has S/N >= 5 (sigmapsf <= 1.0857/5) and so magpsf <=
//     diffmaglim; magpsf is the magnitude of the difference flux, fainter
//     than the reference source (magnr) for a variable star;
//   - isdiffpos 'f' when the source is fainter than in the template;
//   - forced photometry is difference flux: near zero for a source that
//     did not vary.

// simMix is the share of a stream's alerts that are artefacts and known
// asteroids; the rest are variable stars and transients of the field.
const (
	simBogusShare    = 0.33
	simAsteroidShare = 0.06
)

// simExposure is what one exposure's alerts share.
type simExposure struct {
	field         *simField
	fid           int
	jd            float64
	lim, zp, fwhm float64
	nid           int
	pidBase       int64
	tblid         [64]int
	fluxLim       float64 // difference flux at diffmaglim (5 sigma) [DN]
	filefracday   string
	exposure      *Exposure
	stamps        [][3]stampSource // of each detection, rendered at the end
	picks         []uint64
	rng           *rand.Rand
	programid     int
}

func (e *simExposure) flux(mag float64) float64 { return math.Pow(10, -0.4*(mag-e.zp)) }

func (s *Simulation) observe(f *simField, fid int, jd float64, rng *rand.Rand) *Exposure {
	e := &simExposure{field: f, fid: fid, jd: jd, rng: rng, programid: s.cfg.Programid}
	e.lim = 20.5 - 0.2*float64(fid-1) + rng.NormFloat64()*0.3
	e.lim = min(max(e.lim, 19.2), 21.2)
	e.zp = 26.3 - 0.1*float64(fid-1) + rng.NormFloat64()*0.05
	e.fwhm = max(1.4, 2.0+rng.NormFloat64()*0.3)
	e.fluxLim = e.flux(e.lim)
	e.nid = int(jd - nidEpoch)
	ut := JDTime(jd)
	frac := jd - 0.5 - math.Floor(jd-0.5)
	e.pidBase = int64(e.nid)*1e9 + int64(frac*1e5)*1e4 + 15
	e.filefracday = ut.Format("20060102") + pad(int(frac*1e6), 6)
	exp := &Exposure{ID: "sim-" + e.filefracday + "-f" + pad(f.id, 6)}
	e.exposure = exp
	exp.Detections = make([]Detection, 0, s.cfg.Alerts)

	// Measure every object of the field; those at S/N >= 5 may be detected.
	type measure struct {
		o           *simObject
		flux, sigma float64
		known       bool
	}
	ms := make([]measure, len(f.objects))
	var detectable []int
	for i, o := range f.objects {
		if o.kind == simTransient && o.ndet > 0 && jd > o.t0 {
			if m, _ := o.mag(jd, fid); m > e.lim+1.5 { // faded for good: a new one takes its place
				s.newTransient(o, jd+rng.Float64()*20, rng)
			}
		}
		o.ncov++
		diff, sigma := s.diffFlux(e, o)
		meas := diff + sigma*rng.NormFloat64()
		ms[i] = measure{o: o, flux: meas, sigma: sigma, known: o.ndet > 0}
		if math.Abs(meas) >= 5*sigma {
			detectable = append(detectable, i)
		}
	}
	rng.Shuffle(len(detectable), func(a, b int) { detectable[a], detectable[b] = detectable[b], detectable[a] })
	detected := make(map[*simObject]bool)
	for range s.cfg.Alerts {
		u := rng.Float64()
		switch {
		case u < simBogusShare:
			s.bogus(e)
		case u < simBogusShare+simAsteroidShare:
			s.asteroid(e)
		case len(detectable) > 0:
			m := ms[detectable[0]]
			detectable = detectable[1:]
			detected[m.o] = true
			s.detect(e, m.o, m.flux, m.sigma)
		default:
			s.bogus(e)
		}
	}
	s.renderStamps(e)
	for _, m := range ms {
		if m.o.ndet == 0 {
			continue
		}
		pid := e.pidBase + int64(m.o.rcid)*100
		if !detected[m.o] && m.known {
			exp.Limits = append(exp.Limits, Row[PrvCandidate]{ObjectID: m.o.id, Row: PrvCandidate{
				JD: jd, Fid: fid, Pid: pid, Diffmaglim: ptr(float32(e.lim)), Programid: e.programid,
				Rcid: ptr(m.o.rcid), Field: ptr(f.id), Magzpsci: ptr(float32(e.zp)), Magzpsciunc: ptr(float32(1e-5)),
				Magzpscirms: ptr(float32(0.03)), Rbversion: "t17_f5_c3",
			}})
		}
		exp.Forced = append(exp.Forced, Row[FpHist]{ObjectID: m.o.id, Row: FpHist{
			Field: ptr(f.id), Rcid: ptr(m.o.rcid), Fid: fid, Pid: pid, Rfid: int64(f.id)*1000 + int64(m.o.rcid),
			Sciinpseeing: ptr(float32(e.fwhm)), Scibckgnd: ptr(float32(180)), Scisigpix: ptr(float32(11)),
			Magzpsci: ptr(float32(e.zp)), Magzpsciunc: ptr(float32(1e-5)), Magzpscirms: ptr(float32(0.03)),
			Clrcoeff: ptr(float32(-0.05)), Clrcounc: ptr(float32(1e-5)),
			Exptime: ptr(float32(30)), Diffmaglim: ptr(float32(e.lim)), Programid: e.programid, JD: jd,
			Forcediffimflux: ptr(float32(m.flux)), Forcediffimfluxunc: ptr(float32(m.sigma)),
			Procstatus: ptr("0"), Distnr: ptr(float32(m.o.nrDist)), Ranr: m.o.ra, Decnr: m.o.dec,
			Magnr: ptr(float32(refMag(m.o, fid))), Sigmagnr: ptr(float32(0.02)), Chinr: ptr(float32(1)), Sharpnr: ptr(float32(0)),
		}})
	}
	return exp
}

// diffFlux is o's true difference flux in e and the noise of its
// measurement: the image's (5 sigma at diffmaglim) and 0.3% of the
// reference source's flux (a bright star subtracts less cleanly).
func (s *Simulation) diffFlux(e *simExposure, o *simObject) (diff, sigma float64) {
	sigma = e.fluxLim / 5
	if o.ref > 0 {
		sigma = math.Hypot(sigma, 0.003*e.flux(refMag(o, e.fid)))
	}
	m, ok := o.mag(e.jd, e.fid)
	if !ok {
		return 0, sigma
	}
	switch o.kind {
	case simVariable:
		return e.flux(m) - e.flux(refMag(o, e.fid)), sigma
	default:
		return e.flux(m), sigma
	}
}

// refMag is the magnitude of o's reference source in fid; 0 for none.
func refMag(o *simObject, fid int) float64 {
	if o.ref == 0 {
		return 0
	}
	if fid == 1 && o.kind == simVariable {
		return o.ref + o.colour
	}
	return o.ref
}

// detect makes a detection of a field object measured at flux +- sigma.
func (s *Simulation) detect(e *simExposure, o *simObject, flux, sigma float64) {
	o.ndet++
	if o.first == 0 {
		o.first = e.jd
	}
	o.last = e.jd
	rng := e.rng
	rb, drb := 0.55+0.4*rng.Float64(), 0.9+0.1*rng.Float64()
	if o.kind == simTransient {
		rb = 0.7 + 0.28*rng.Float64()
	}
	s.emit(e, o, o.x, o.y, o.ra, o.dec, flux, sigma, rb, drb, o.ndet, o.ncov, o.first)
}

// bogus makes an artefact: a new object near the limit with a low score,
// often by a bright star.
func (s *Simulation) bogus(e *simExposure) {
	rng := e.rng
	o := &simObject{kind: simBogus, id: s.objectID(JDTime(e.jd).Year() % 100)}
	place(o, e.field, rng)
	if rng.IntN(2) == 0 {
		o.ref, o.nrDist = 12+rng.Float64()*5, 1+rng.Float64()*6
	}
	mag := e.lim - 1.5*rng.Float64()*rng.Float64()
	sigma := e.fluxLim / 5
	flux := e.flux(mag)
	if rng.IntN(100) < 45 {
		flux = -flux
	}
	rb := 0.02 + 0.33*math.Pow(rng.Float64(), 1.5)
	drb := 0.1 * math.Pow(rng.Float64(), 3)
	s.emit(e, o, o.x, o.y, o.ra, o.dec, flux, sigma, rb, drb, 1, e.field.visits, e.jd)
}

// asteroid makes a detection of a known minor planet: no reference source,
// no history, ssnamenr a number or a provisional designation.
func (s *Simulation) asteroid(e *simExposure) {
	rng := e.rng
	o := &simObject{kind: simAsteroid, id: s.objectID(JDTime(e.jd).Year() % 100)}
	place(o, e.field, rng)
	mag := e.lim - 0.2 - 2.3*rng.Float64()
	rb, drb := 0.6+0.35*rng.Float64(), 0.8+0.2*rng.Float64()
	before := len(e.exposure.Detections)
	s.emit(e, o, o.x, o.y, o.ra, o.dec, e.flux(mag), e.fluxLim/5, rb, drb, 1, e.field.visits, e.jd)
	c := &e.exposure.Detections[before].Candidate
	c.Ssdistnr = ptr(float32(rng.Float64() * 4))
	c.Ssmagnr = ptr(float32(mag + rng.NormFloat64()*0.3))
	if rng.IntN(4) == 0 {
		y := 2000 + rng.IntN(26)
		c.Ssnamenr = ptr(strconv.Itoa(y) + string(rune('A'+rng.IntN(24))) + string(rune('A'+rng.IntN(25))) + strconv.Itoa(1+rng.IntN(300)))
	} else {
		c.Ssnamenr = ptr(strconv.Itoa(1000 + rng.IntN(700000)))
	}
}

// emit appends the detection of o, measured at flux +- sigma [DN], with
// its three cutouts.
func (s *Simulation) emit(e *simExposure, o *simObject, x, y, ra, dec, flux, sigma, rb, drb float64, ndet, ncov int, first float64) {
	rng := e.rng
	f32 := func(v float64) *float32 { return ptr(float32(v)) }
	snr := math.Abs(flux) / sigma
	mag := e.zp - 2.5*math.Log10(math.Abs(flux))
	sig := 1.0857 / snr
	pid := e.pidBase + int64(o.rcid)*100
	tblid := e.tblid[o.rcid]
	e.tblid[o.rcid]++
	candid := pid*1e6 + 10*1e3 + int64(tblid)
	diffpos := "t"
	if flux < 0 {
		diffpos = "f"
	}
	magnr, sigmagnr, distnr := -999.0, -999.0, -999.0
	ranr, decnr := ra, dec
	if m := refMag(o, e.fid); m > 0 {
		magnr, sigmagnr, distnr = m, 0.01+0.02*rng.Float64(), o.nrDist
		decnr = dec + o.nrDist/3600*0.7
		ranr = ra + o.nrDist/3600*0.7/math.Cos(dec*rad)
	}
	sgscore := 0.02 + 0.1*rng.Float64()
	if o.kind == simVariable || o.kind == simBogus {
		sgscore = 0.9 + 0.1*rng.Float64()
	}
	elong := 1 + 0.2*rng.Float64()
	if o.kind == simBogus {
		elong = 1.2 + rng.Float64()
	}
	mindtoedge := min(x, quadrantNX-x, y, quadrantNY-y)
	c := Candidate{
		JD: e.jd, Fid: e.fid, Pid: pid, Diffmaglim: f32(e.lim),
		Pdiffimfilename: ptr("ztf_" + e.filefracday + "_" + pad(e.field.id, 6) + "_z" + string("gri"[e.fid-1]) +
			"_c" + pad(o.rcid/4+1, 2) + "_o_q" + strconv.Itoa(o.rcid%4+1) + "_scimrefdiffimg.fits"),
		Programpi: ptr("Kulkarni"), Programid: e.programid, Candid: candid, Isdiffpos: diffpos,
		Tblid: ptr(int64(tblid)), Nid: ptr(e.nid), Rcid: ptr(o.rcid), Field: ptr(e.field.id),
		Xpos: f32(x), Ypos: f32(y), RA: ra, Dec: dec,
		Magpsf: float32(mag), Sigmapsf: float32(sig), Chipsf: f32(0.5 + rng.ExpFloat64()),
		Magap: f32(mag + rng.NormFloat64()*sig), Sigmagap: f32(sig * 1.2), Distnr: f32(distnr),
		Magnr: f32(magnr), Sigmagnr: f32(sigmagnr), Chinr: f32(0.5 + rng.Float64()), Sharpnr: f32(rng.NormFloat64() * 0.02),
		Sky: f32(rng.NormFloat64()), Magdiff: f32(rng.NormFloat64() * 0.05), Fwhm: f32(e.fwhm * (1 + 0.1*rng.NormFloat64())),
		Classtar: f32(0.7 + 0.3*rng.Float64()), Mindtoedge: f32(mindtoedge), Magfromlim: f32(e.lim - mag),
		Seeratio: f32(0.8 + 0.4*rng.Float64()), Aimage: f32(0.6 * e.fwhm * elong), Bimage: f32(0.6 * e.fwhm),
		Aimagerat: f32(0.6 * elong), Bimagerat: f32(0.6), Elong: f32(elong),
		Nneg: ptr(rng.IntN(8)), Nbad: ptr(0), Rb: f32(rb),
		Ssdistnr: f32(-999), Ssmagnr: f32(-999), Ssnamenr: ptr("null"), Sumrat: f32(0.8 + 0.2*rng.Float64()),
		Magapbig: f32(mag + rng.NormFloat64()*sig), Sigmagapbig: f32(sig * 1.3), Ranr: ranr, Decnr: decnr,
		Sgmag1: f32(-999), Srmag1: f32(-999), Simag1: f32(-999), Szmag1: f32(-999), Sgscore1: f32(sgscore), Distpsnr1: f32(-999),
		Ndethist: ndet, Ncovhist: ncov, Jdstarthist: ptr(first), Jdendhist: ptr(e.jd),
		Scorr: ptr(snr * (0.9 + 0.2*rng.Float64())), Tooflag: ptr(0),
		Objectidps1: ptr(int64(-999)), Nmtchps: 0,
		Rfid: int64(e.field.id)*1000 + int64(o.rcid), Jdstartref: 2458150.5, Jdendref: 2458300.5, Nframesref: 15 + rng.IntN(25),
		Rbversion: "t17_f5_c3", Dsnrms: f32(5 + 5*rng.Float64()), Ssnrms: f32(10 + 10*rng.Float64()), Dsdiff: f32(-5 * rng.Float64()),
		Magzpsci: f32(e.zp), Magzpsciunc: f32(1e-5), Magzpscirms: f32(0.03), Nmatches: 800 + rng.IntN(1500),
		Clrcoeff: f32(-0.05), Clrcounc: f32(1e-5), Zpclrcov: f32(-1e-6), Zpmed: f32(e.zp), Clrmed: f32(0.5), Clrrms: f32(0.2),
		Neargaia: f32(rng.Float64() * 5), Neargaiabright: f32(-999), Maggaia: f32(-999), Maggaiabright: f32(-999),
		Exptime: f32(30), Drb: f32(drb), Drbversion: "d6_m7",
	}
	if magnr > 0 { // the reference source is in Pan-STARRS1 and Gaia
		c.Sgmag1, c.Srmag1 = f32(magnr+0.5), f32(magnr)
		c.Simag1, c.Szmag1 = f32(magnr-0.2), f32(magnr-0.3)
		c.Distpsnr1, c.Nmtchps = f32(distnr), 1+rng.IntN(5)
		c.Objectidps1 = ptr(int64(1e17) + int64(math.Round((dec+90)*1e5))*1e6 + int64(ra*1e3))
		c.Maggaia = f32(magnr - 0.1)
	}
	s.cutouts(e, o, &c, flux)
}

// cutouts renders the alert's science, template and difference stamps: the
// reference source in the template, reference plus difference in the
// science image, and the difference (negative for isdiffpos 'f').
func (s *Simulation) cutouts(e *simExposure, o *simObject, c *Candidate, flux float64) {
	rng := e.rng
	src := stampSource{fwhm: e.fwhm, dx: float64(*c.Xpos) - math.Round(float64(*c.Xpos)), dy: float64(*c.Ypos) - math.Round(float64(*c.Ypos))}
	ref := src
	if m := refMag(o, e.fid); m > 0 && o.nrDist < 1.5 {
		ref.flux = e.flux(m)
	}
	if o.kind == simVariable && ref.flux == 0 {
		ref.flux = max(0, -flux)
	}
	sci, diff := ref, src
	sci.flux = max(0, ref.flux+flux)
	diff.flux = flux
	pick := rng.Uint64()
	name := func(kind string) string {
		return "candid" + strconv.FormatInt(c.Candid, 10) + "_pid" + strconv.FormatInt(c.Pid, 10) + "_targ_" + kind + ".fits.gz"
	}
	e.exposure.Detections = append(e.exposure.Detections, Detection{
		ObjectID:   o.id,
		Candidate:  *c,
		Science:    Cutout{FileName: name("sci")},
		Template:   Cutout{FileName: name("ref")},
		Difference: Cutout{FileName: name("scimref")},
	})
	e.stamps = append(e.stamps, [3]stampSource{sci, ref, diff})
	e.picks = append(e.picks, pick)
}

// renderStamps renders the exposure's cutouts on every core: they are most
// of the work of a simulated exposure (30,000 stamps for 10,000 alerts).
func (s *Simulation) renderStamps(e *simExposure) {
	ds := e.exposure.Detections
	workers := min(runtime.GOMAXPROCS(0), (len(ds)+255)/256)
	size := s.stamps.stampMax()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(ds); i += workers {
				d, src, pick := &ds[i], &e.stamps[i], e.picks[i]
				ra, dec := d.Candidate.RA, d.Candidate.Dec
				// One allocation for the three.
				b := make([]byte, 0, 3*size)
				b = s.stamps.render(b, stampSci, ra, dec, src[0], pick)
				n1 := len(b)
				b = s.stamps.render(b, stampRef, ra, dec, src[1], pick*0x9e3779b97f4a7c15)
				n2 := len(b)
				b = s.stamps.render(b, stampDiff, ra, dec, src[2], pick^0x5bd1e995)
				d.Science.StampData = b[:n1:n1]
				d.Template.StampData = b[n1:n2:n2]
				d.Difference.StampData = b[n2:]
			}
		}()
	}
	wg.Wait()
}

// pad writes n in at least width digits.
func pad(n, width int) string {
	s := strconv.Itoa(n)
	for len(s) < width {
		s = "0" + s
	}
	return s
}
