package packager

import (
	"math"
	"math/rand/v2"
	"sort"
)

// The simulated sky: ZTF's grid of fields, each with a population of
// variable stars and transients fixed to a place on one of its 64 CCD
// quadrants, and the night's plan of which field each exposure looks at.

const (
	rad        = math.Pi / 180
	pixelScale = 1.01 / 3600 // [deg/pixel]
	quadrantNX = 3072
	quadrantNY = 3080
	palomarLon = -116.8599 // [deg east]
	// nidEpoch is the JD at which ZTF's night id counts 0 (2017-01-01 UT):
	// nid = floor(jd - nidEpoch), as every sample alert has it.
	nidEpoch = 2457754.5
)

// simField is a field of the grid; its population is made at its first visit.
type simField struct {
	id      int
	ra, dec float64
	objects []*simObject
	visits  int
}

type simKind uint8

const (
	simVariable  simKind = iota // a star of the reference image that varies
	simTransient                // new light that rises and fades, on a host or not
	simBogus                    // a subtraction artefact
	simAsteroid                 // a known minor planet passing through
)

// simObject is a source at one place on one quadrant.
type simObject struct {
	id      string
	kind    simKind
	rcid    int
	x, y    float64 // [pixels on the quadrant]
	ra, dec float64
	ref     float64 // r magnitude of the reference source (star or host); 0: none
	colour  float64 // g-r
	nrDist  float64 // distance to the reference source [arcsec]
	// variable star
	amp, period, phase float64
	// transient
	peak, t0, rise, decline float64
	// history counts
	ndet, ncov  int
	first, last float64
}

// ztfGrid lays fields of ~7x7 deg in declination bands, numbered from the
// south pole as ZTF's primary grid is (to 831 here, 879 at ZTF).
func ztfGrid() []simField {
	var fs []simField
	id := 1
	for dec := -89.0; dec < 90; dec += 6.9 {
		n := max(1, int(math.Ceil(360*math.Cos(dec*rad)/7.3)))
		for i := range n {
			fs = append(fs, simField{id: id, ra: (float64(i) + 0.5) * 360 / float64(n), dec: dec})
			id++
		}
	}
	return fs
}

// quadrantOffset is where pixel x, y of quadrant rcid lies from the field
// centre [deg]: 16 CCDs in 4x4, each 2x2 quadrants (gaps left out).
func quadrantOffset(rcid int, x, y float64) (dx, dy float64) {
	ccd, q := rcid/4, rcid%4
	qx, qy := [4]int{1, 0, 0, 1}[q], [4]int{1, 1, 0, 0}[q]
	px := float64((ccd%4*2+qx)*quadrantNX) + x - 4*quadrantNX
	py := float64((ccd/4*2+qy)*quadrantNY) + y - 4*quadrantNY
	return px * pixelScale, py * pixelScale
}

// place puts o at a random spot of field f.
func place(o *simObject, f *simField, rng *rand.Rand) {
	o.rcid = rng.IntN(64)
	o.x, o.y = 5+rng.Float64()*(quadrantNX-10), 5+rng.Float64()*(quadrantNY-10)
	dx, dy := quadrantOffset(o.rcid, o.x, o.y)
	// From the tangent plane (gnomonic projection) at the field centre.
	xi, eta, d0 := dx*rad, dy*rad, f.dec*rad
	o.dec = math.Asin((math.Sin(d0)+eta*math.Cos(d0))/math.Sqrt(1+xi*xi+eta*eta)) / rad
	o.ra = math.Mod(f.ra+math.Atan2(xi, math.Cos(d0)-eta*math.Sin(d0))/rad+360, 360)
}

// populate makes field f's variable stars and transients (n in all, one in
// twelve a transient) at its first visit.
func (s *Simulation) populate(f *simField, jd float64) {
	if f.objects != nil {
		return
	}
	rng := rand.New(rand.NewPCG(s.cfg.Seed, uint64(f.id)<<20|0xf1e1d))
	n := max(1, s.cfg.Objects)
	f.objects = make([]*simObject, n)
	for i := range f.objects {
		o := &simObject{}
		place(o, f, rng)
		if i%12 == 11 {
			s.newTransient(o, jd-40+rng.Float64()*60, rng)
		} else {
			o.kind = simVariable
			o.id = s.objectID(18)
			o.ref = 13.5 + 5.5*math.Sqrt(rng.Float64())
			o.colour = 0.2 + rng.Float64()
			o.nrDist = 0.05 + rng.Float64()*0.45
			o.amp = 0.05 + rng.ExpFloat64()*0.25
			if rng.IntN(10) < 3 { // barely variable: detected now and then, forced photometry near 0
				o.amp = 0.01 + rng.Float64()*0.04
			}
			o.period = math.Exp(math.Log(0.1) + rng.Float64()*math.Log(1000))
			o.phase = rng.Float64() * 2 * math.Pi
		}
		f.objects[i] = o
	}
}

// newTransient turns o into a new transient peaking at t0.
func (s *Simulation) newTransient(o *simObject, t0 float64, rng *rand.Rand) {
	*o = simObject{rcid: o.rcid, x: o.x, y: o.y, ra: o.ra, dec: o.dec, kind: simTransient}
	o.id = s.objectID(JDTime(t0).Year() % 100)
	o.t0, o.peak = t0, 17.5+rng.Float64()*2.5
	o.rise, o.decline = 0.1+rng.Float64()*0.15, 0.02+rng.Float64()*0.04
	o.colour = -0.1 + rng.Float64()*0.3
	if rng.IntN(10) < 7 { // on a galaxy of the reference image
		o.ref, o.nrDist = 19+rng.Float64()*3, 0.3+rng.Float64()*3
	}
}

// simNames is how many names seven letters spell.
const simNames = 26 * 26 * 26 * 26 * 26 * 26 * 26

// objectID names a new object as ZTF does: ZTF, the year, seven letters.
func (s *Simulation) objectID(year int) string {
	s.nextID++
	return "ZTF" + string([]byte{byte('0' + year/10%10), byte('0' + year%10)}) + letters((s.nextID+s.idBase)%simNames)
}

// mag is o's true magnitude in filter fid at jd; ok false when it adds no
// light (a transient before it began or long faded).
func (o *simObject) mag(jd float64, fid int) (float64, bool) {
	c := 0.0
	if fid == 1 {
		c = o.colour
	}
	switch o.kind {
	case simVariable:
		return o.ref + c + o.amp*math.Sin(2*math.Pi*jd/o.period+o.phase), true
	case simTransient:
		m := o.peak + c
		if jd < o.t0 {
			m += o.rise * (o.t0 - jd)
		} else {
			m += o.decline * (jd - o.t0)
		}
		return m, m < 24
	}
	return 0, false
}

// palomarLST is the local sidereal time at Palomar [deg].
func palomarLST(jd float64) float64 {
	gmst := 280.46061837 + 360.98564736629*(jd-2451545)
	return math.Mod(math.Mod(gmst+palomarLon, 360)+360, 360)
}

// simVisit is one exposure of the night's plan.
type simVisit struct {
	field int // index into Simulation.fields
	fid   int
}

// plan lays out night n: blocks of fields near the meridian, each field
// taken Cadence apart two or three times, alternating g and r, and no field
// in two blocks of a night.
func (s *Simulation) plan(n int) []simVisit {
	rng := rand.New(rand.NewPCG(s.cfg.Seed, 0x9a11+uint64(n)))
	perBlock := min(max(1, int(s.cfg.Cadence/s.skyStep)), 100)
	visits := make([]simVisit, 0, s.perNight)
	used := make(map[int]bool)
	type cand struct {
		i  int
		ha float64
	}
	startJD := TimeJD(s.skyStart) + float64(n)
	for len(visits) < s.perNight {
		repeats := 2
		if rng.IntN(3) == 0 {
			repeats = 3
		}
		mid := startJD + float64(len(visits)+perBlock*repeats/2)*s.skyStep.Hours()/24
		lst := palomarLST(mid)
		var cs []cand
		for i, f := range s.fields {
			if f.dec < -30 || used[i] {
				continue
			}
			ha := math.Abs(math.Mod(f.ra-lst+540, 360) - 180)
			cs = append(cs, cand{i, ha})
		}
		if len(cs) < 2*perBlock { // the sky is used up: start over
			clear(used)
			continue
		}
		sort.Slice(cs, func(a, b int) bool { return cs[a].ha < cs[b].ha })
		cs = cs[:2*perBlock]
		rng.Shuffle(len(cs), func(a, b int) { cs[a], cs[b] = cs[b], cs[a] })
		block := cs[:perBlock]
		sort.Slice(block, func(a, b int) bool { return s.fields[block[a].i].ra < s.fields[block[b].i].ra })
		for r := range repeats {
			for _, c := range block {
				if len(visits) == s.perNight {
					break
				}
				used[c.i] = true
				visits = append(visits, simVisit{field: c.i, fid: 1 + r%2})
			}
		}
	}
	return visits
}
