package packager

import (
	"context"
	"io"
	"math/rand/v2"
	"time"
)

// Simulation is a synthetic ZTF night that keeps to the clock. An exposure
// is taken every Interval for Night hours from the first, then none until
// the same time the next day: the first night begins when the simulation
// starts, whatever the hour, and an exposure taken at wall time T has
// jd = TimeJD(T), so its topic is that UT date's.
//
// Each exposure looks at one field of ZTF's grid (fields near the meridian,
// each taken two or three times a night, Cadence apart, alternating g and
// r) and yields Alerts detections in the mix a real stream has: variable
// stars of the field (half of them fainter than in the template, so negative
// subtractions), transients that rise and fade, subtraction artefacts with
// low real/bogus scores, and known asteroids, the last two new objects each
// time. Objects already detected get an upper limit when they are not
// detected and forced photometry at every visit, so histories grow with the
// real cadence: a few dozen rows over 30 days. Every alert has its own
// cutouts (see stampRenderer).
type Simulation struct {
	cfg       SimulateConfig
	clock     func() time.Time
	wallStart time.Time     // when exposure 0 is due
	skyStart  time.Time     // its sky time (Start, or wallStart)
	skyStep   time.Duration // sky time between exposures
	perNight  int           // exposures a night
	seq       int           // the exposure Next makes next
	made      int
	fields    []simField
	night     int
	visits    []simVisit // night's plan
	stamps    *stampRenderer
	nextID    uint64
	idBase    uint64 // where names start: a restart must not reuse the last run's
}

// simSurveyStep is a ZTF exposure and readout: the sky time between
// exposures when Interval is under a second (tests that run back to back).
const simSurveyStep = 40 * time.Second

// NewSimulation prepares the grid and the stamp pools; fields are populated
// at their first visit.
func NewSimulation(cfg SimulateConfig, clock func() time.Time) (*Simulation, error) {
	d := DefaultConfig().Source.Simulate
	if cfg.Alerts <= 0 {
		cfg.Alerts = d.Alerts
	}
	if cfg.Objects <= 0 {
		cfg.Objects = 2 * cfg.Alerts
	}
	if cfg.Cadence <= 0 {
		cfg.Cadence = d.Cadence
	}
	if cfg.Night <= 0 || cfg.Night > 24*time.Hour {
		cfg.Night = 24 * time.Hour
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
	s := &Simulation{cfg: cfg, clock: clock, wallStart: clock(), skyStep: cfg.Interval, night: -1}
	s.skyStart = s.wallStart
	if !cfg.Start.IsZero() {
		s.skyStart = cfg.Start
	}
	if s.skyStep < time.Second {
		s.skyStep = simSurveyStep
	}
	s.perNight = max(1, int(cfg.Night/s.skyStep))
	// The history store outlives a run: a restarted simulation names its
	// objects from elsewhere in the 8e9 names (a run makes ~60,000 a night),
	// or a new artefact would inherit an old star's history.
	s.idBase = (cfg.Seed*0x9e3779b97f4a7c15 ^ uint64(s.skyStart.Unix())*0xbf58476d1ce4e5b9) % simNames
	s.fields = ztfGrid()
	s.stamps = newStampRenderer(cfg.Seed)
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

// skyOffset is exposure seq's time after exposure 0.
func (s *Simulation) skyOffset(seq int) time.Duration {
	return time.Duration(seq/s.perNight)*24*time.Hour + time.Duration(seq%s.perNight)*s.skyStep
}

// due is when Next should return exposure seq.
func (s *Simulation) due(seq int) time.Time {
	if s.cfg.Interval < time.Second {
		return s.wallStart.Add(time.Duration(seq) * s.cfg.Interval)
	}
	return s.wallStart.Add(s.skyOffset(seq))
}

// seqAt is the first exposure due at or after t.
func (s *Simulation) seqAt(t time.Time) int {
	e := t.Sub(s.wallStart)
	day := int(e / (24 * time.Hour))
	k := int((e - time.Duration(day)*24*time.Hour + s.skyStep - 1) / s.skyStep)
	if k >= s.perNight {
		return (day + 1) * s.perNight
	}
	return day*s.perNight + k
}

// Programid is the program of every simulated alert.
func (s *Simulation) Programid() int { return s.cfg.Programid }

// Next waits until the next exposure is due and returns it; io.EOF after
// Exposures. When the clock has run ahead (a slow packager, a laptop that
// slept) it skips to the exposure due now, so sky time keeps to the clock.
func (s *Simulation) Next(ctx context.Context) (*Exposure, error) {
	if s.cfg.Exposures > 0 && s.made >= s.cfg.Exposures {
		return nil, io.EOF
	}
	now := s.clock()
	if s.cfg.Interval >= time.Second && now.Sub(s.due(s.seq)) > 2*s.cfg.Interval {
		s.seq = s.seqAt(now)
	}
	if d := s.due(s.seq).Sub(now); d > 0 && s.cfg.Interval > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	exp := s.Exposure(s.seq)
	s.seq++
	s.made++
	exp.Arrived = s.clock()
	return exp, nil
}

// Exposure builds exposure number seq. Call in increasing order (gaps are
// fine): objects keep their detection counts from one to the next.
func (s *Simulation) Exposure(seq int) *Exposure {
	night, k := seq/s.perNight, seq%s.perNight
	if night != s.night {
		s.night, s.visits = night, s.plan(night)
	}
	v := s.visits[k]
	f := &s.fields[v.field]
	jd := TimeJD(s.skyStart.Add(s.skyOffset(seq)))
	s.populate(f, jd)
	f.visits++
	rng := rand.New(rand.NewPCG(s.cfg.Seed, uint64(seq)<<8|1))
	return s.observe(f, v.fid, jd, rng)
}
