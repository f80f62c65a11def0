// Package portal is the alert portal's HTTP: a JSON API under /api/v1/ and
// server-rendered pages (the stream's status at /, a search page, object
// pages with the light curve and the cutouts). Its searches run on the
// alert index (package alertindex); the alerts themselves are read back
// from the log by the caller's Read, so the portal stores nothing.
//
// Routes, as handed to the web server (Routes; Home is "/"):
//
//	GET /api/v1/alerts/{candid}                       the alert as JSON; ?format=avro: its bytes
//	GET /api/v1/alerts/{candid}/cutouts/{kind}.png    science, template or difference, drawn
//	GET /api/v1/objects/{objectId}                    the object's alerts, newest first, and light curve
//	GET /api/v1/cone?ra=&dec=&radius=                 radius in arcsec, at most max.radius.arcsec
//	GET /api/v1/alerts?since=&until=&fid=&mag_min=&mag_max=&rb_min=&program=&limit=&cursor=
//	GET /api/v1/index/status                                the status page's figures
//	GET /search, GET /objects/{objectId}              pages
//
// Access. Alerts of programid 1 are public. Others (the partnership's 2,
// Caltech's 3) are shown only when MayRead says the request's user may
// read the alert's topic: a list leaves them out, an alert asked for by id
// answers 401 to an anonymous request and 403 to a user.
//
// Bounds. Every parameter is checked and a wrong one answers 400 naming
// it; limits and radii are capped; a listing reads at most ScanMax index
// entries per page and then returns a cursor, which is opaque (base64 of
// a version, a time and a candid) and checked when it comes back.
package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/alertcat"
	"github.com/ztfbroker/ztfbroker/alertindex"
	"github.com/ztfbroker/ztfbroker/avrofile"
)

// Config is the portal's limits.
type Config struct {
	// MaxRadius caps a cone search's radius, in arcseconds.
	MaxRadius float64 `yaml:"max.radius.arcsec"`
	// MaxLimit caps the alerts one answer lists.
	MaxLimit int `yaml:"max.limit"`
	// ScanMax bounds the index entries one listing reads.
	ScanMax int `yaml:"scan.max"`
}

// DefaultConfig: cones up to a degree, 1000 alerts an answer.
func DefaultConfig() Config {
	return Config{MaxRadius: 3600, MaxLimit: 1000, ScanMax: 100_000}
}

// Validate names every wrong setting.
func (c Config) Validate() error {
	var errs []error
	if !(c.MaxRadius > 0 && c.MaxRadius <= 36000) {
		errs = append(errs, fmt.Errorf("portal.max.radius.arcsec %v: must be more than 0 and at most 36000 (10 degrees)", c.MaxRadius))
	}
	if c.MaxLimit < 1 || c.MaxLimit > 100_000 {
		errs = append(errs, fmt.Errorf("portal.max.limit %d: must be 1 to 100000", c.MaxLimit))
	}
	if c.ScanMax < 1000 || c.ScanMax > 10_000_000 {
		errs = append(errs, fmt.Errorf("portal.scan.max %d: must be 1000 to 10000000", c.ScanMax))
	}
	return errors.Join(errs...)
}

// Deps are what the portal runs on, handed in by its caller.
type Deps struct {
	Index *alertindex.Index
	// Read returns the message at a place in the log: the alert's bytes.
	Read func(ctx context.Context, topic string, partition int32, offset int64) ([]byte, error)
	// Progress is the follower's figures for the status page; nil: none.
	Progress func() alertindex.Progress
	// Admin lists the consumer groups and their lag; nil: none shown.
	Admin *kadm.Client
	// MayRead says whether the request's user may read a topic's alerts
	// beyond the public ones; nil: public alerts only.
	MayRead func(r *http.Request, topic string) bool
	// Links are other pages listed on the status page.
	Links []Link
	// Nights lists the nightly archive's public tarballs, newest first;
	// nil: no archive here.
	Nights func() ([]ArchiveNight, error)
	// Now is the clock (nil: time.Now).
	Now    func() time.Time
	Logger *zap.Logger
}

// Link is a page listed on the status page.
type Link struct{ Title, Path string }

// ArchiveNight is one night's tarball of the archive.
type ArchiveNight struct {
	Night string `json:"night"`
	Name  string `json:"name"`
	Size  int64  `json:"size"`
	URL   string `json:"url"`
}

// Route is one page or API endpoint, for the web server (the fields of
// web.Route that an owner gives).
type Route struct {
	Pattern string
	Handler http.Handler
	Title   string
}

// Portal serves the API and pages.
type Portal struct {
	cfg   Config
	d     Deps
	log   *zap.Logger
	codec *alertcat.Codec

	statusMu   sync.Mutex
	groupsAt   time.Time
	groupsMemo []GroupLag
}

// New checks cfg and builds the portal.
func New(cfg Config, d Deps) (*Portal, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Index == nil || d.Read == nil {
		return nil, errors.New("portal: an index and a reader are needed")
	}
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Portal{cfg: cfg, d: d, log: d.Logger, codec: &alertcat.Codec{Schemas: avrofile.NewSchemas(0), Bytes: alertcat.DataURI}}, nil
}

// Home is the status page, for "/".
func (p *Portal) Home() http.Handler { return http.HandlerFunc(p.statusPage) }

// Routes are the API and the pages but Home.
func (p *Portal) Routes() []Route {
	return []Route{
		{Pattern: "GET /search", Handler: http.HandlerFunc(p.searchPage), Title: "Search alerts"},
		{Pattern: "GET /objects/{objectId}", Handler: http.HandlerFunc(p.objectPage), Title: "Object page"},
		{Pattern: "GET /api/v1/alerts/{candid}", Handler: http.HandlerFunc(p.apiAlert), Title: "Alert as JSON or Avro"},
		{Pattern: "GET /api/v1/alerts/{candid}/cutouts/{file}", Handler: http.HandlerFunc(p.apiCutout), Title: "Alert cutout as PNG"},
		{Pattern: "GET /api/v1/objects/{objectId}", Handler: http.HandlerFunc(p.apiObject), Title: "Object's alerts and light curve"},
		{Pattern: "GET /api/v1/cone", Handler: http.HandlerFunc(p.apiCone), Title: "Cone search"},
		{Pattern: "GET /api/v1/alerts", Handler: http.HandlerFunc(p.apiAlerts), Title: "Alerts in a time window"},
		{Pattern: "GET /api/v1/index/status", Handler: http.HandlerFunc(p.apiStatus), Title: "Stream status"},
	}
}

// access decides, for one request, which alerts it may see: public ones,
// and those of topics MayRead allows (asked once per topic).
type access struct {
	r       *http.Request
	mayRead func(*http.Request, string) bool
	topics  map[string]bool
}

func (p *Portal) accessFor(r *http.Request) *access {
	return &access{r: r, mayRead: p.d.MayRead, topics: map[string]bool{}}
}

func (a *access) allow(s *alertindex.Summary) bool {
	if s.ProgramID == 1 {
		return true
	}
	if a.mayRead == nil {
		return false
	}
	ok, seen := a.topics[s.Topic]
	if !seen {
		ok = a.mayRead(a.r, s.Topic)
		a.topics[s.Topic] = ok
	}
	return ok
}

// GroupLag is one consumer group's total lag.
type GroupLag struct {
	Group string `json:"group"`
	State string `json:"state"`
	Lag   int64  `json:"lag"`
}

// groups lists the consumer groups and their lag, asked at most every 5 s.
func (p *Portal) groups(ctx context.Context) []GroupLag {
	if p.d.Admin == nil {
		return nil
	}
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	if p.d.Now().Sub(p.groupsAt) < 5*time.Second {
		return p.groupsMemo
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	lags, err := p.d.Admin.Lag(ctx)
	if err != nil {
		p.log.Debug("group lag", zap.Error(err))
	}
	var out []GroupLag
	for _, g := range lags.Sorted() {
		out = append(out, GroupLag{Group: g.Group, State: g.State, Lag: g.Lag.Total()})
	}
	p.groupsAt, p.groupsMemo = p.d.Now(), out
	return out
}
