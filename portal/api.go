package portal

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hamba/avro/v2"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/alertindex"
)

// paramError is a bad request parameter: 400 with its name.
type paramError struct {
	name, value, want string
}

func (e *paramError) Error() string {
	return fmt.Sprintf("parameter %s=%q: %s", e.name, e.value, e.want)
}

func badParam(name, value, want string) error { return &paramError{name, value, want} }

// statusError is an answer other than 200 with a message.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func notFound(format string, args ...any) error {
	return &statusError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

// writeError answers err as JSON with its status.
func (p *Portal) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	var pe *paramError
	var se *statusError
	switch {
	case errors.As(err, &pe):
		code = http.StatusBadRequest
	case errors.As(err, &se):
		code = se.code
	case errors.Is(err, alertindex.ErrGone):
		code = http.StatusGone
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="ztfbroker", charset="UTF-8"`)
	}
	if code == http.StatusInternalServerError {
		p.log.Warn("portal request failed", zap.String("path", r.URL.Path), zap.Error(err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "status": code})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	enc.Encode(v)
}

// AlertJSON is an alert's summary as the API lists it; nulls for NaN.
type AlertJSON struct {
	Candid    int64    `json:"candid"`
	ObjectID  string   `json:"objectId"`
	RA        float64  `json:"ra"`
	Dec       float64  `json:"dec"`
	JD        float64  `json:"jd"`
	Fid       int32    `json:"fid"`
	MagPSF    *float64 `json:"magpsf"`
	SigmaPSF  *float64 `json:"sigmapsf"`
	RB        *float64 `json:"rb"`
	DRB       *float64 `json:"drb"`
	IsDiffPos string   `json:"isdiffpos"`
	NDetHist  int32    `json:"ndethist"`
	ProgramID int32    `json:"programid"`
	Topic     string   `json:"topic"`
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	// Separation from a cone's centre, in arcseconds.
	Separation *float64 `json:"separation_arcsec,omitempty"`
	URL        string   `json:"url"`
}

func f32(v float32) *float64 {
	if math.IsNaN(float64(v)) {
		return nil
	}
	f := float64(v)
	return &f
}

func summaryJSON(s *alertindex.Summary) AlertJSON {
	return AlertJSON{Candid: s.Candid, ObjectID: s.ObjectID, RA: s.RA, Dec: s.Dec, JD: s.JD, Fid: s.Fid,
		MagPSF: f32(s.MagPSF), SigmaPSF: f32(s.SigmaPSF), RB: f32(s.RB), DRB: f32(s.DRB),
		IsDiffPos: s.IsDiffPos, NDetHist: s.NDetHist, ProgramID: s.ProgramID,
		Topic: s.Topic, Partition: s.Partition, Offset: s.Offset,
		URL: "/api/v1/alerts/" + strconv.FormatInt(s.Candid, 10)}
}

func summariesJSON(ss []alertindex.Summary) []AlertJSON {
	out := make([]AlertJSON, len(ss))
	for i := range ss {
		out[i] = summaryJSON(&ss[i])
	}
	return out
}

// candidOf reads the {candid} wildcard.
func candidOf(r *http.Request) (int64, error) {
	v := r.PathValue("candid")
	c, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, badParam("candid", v, "want an integer")
	}
	return c, nil
}

var objectIDPattern = regexp.MustCompile(`^[A-Za-z0-9_]{1,32}$`)

func objectIDOf(r *http.Request) (string, error) {
	v := r.PathValue("objectId")
	if !objectIDPattern.MatchString(v) {
		return "", badParam("objectId", v, "want letters, digits and _, at most 32 (ZTF18abcdefg)")
	}
	return v, nil
}

// summary finds an alert the request may see: 404 when unknown, 401 or
// 403 when its program is not the user's to read.
func (p *Portal) summary(r *http.Request, candid int64) (alertindex.Summary, error) {
	s, err := p.d.Index.Get(candid)
	if errors.Is(err, alertindex.ErrNotFound) {
		return s, notFound("alert %d: not in the index", candid)
	}
	if err != nil {
		return s, err
	}
	if !p.accessFor(r).allow(&s) {
		if _, _, ok := r.BasicAuth(); !ok {
			return s, &statusError{http.StatusUnauthorized, fmt.Sprintf("alert %d is of programid %d: log in as a user who may read %s", candid, s.ProgramID, s.Topic)}
		}
		return s, &statusError{http.StatusForbidden, fmt.Sprintf("alert %d is of programid %d, which this user may not read", candid, s.ProgramID)}
	}
	return s, nil
}

// loaded is an alert read back from the log.
type loaded struct {
	raw    []byte
	fields map[string]any // hamba's generic form
	schema *avro.RecordSchema
}

// load reads s's alert from the log and decodes it.
func (p *Portal) load(ctx context.Context, s *alertindex.Summary) (*loaded, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := p.d.Read(ctx, s.Topic, s.Partition, s.Offset)
	if err != nil {
		return nil, err
	}
	as, err := p.codec.Decode(raw)
	if err != nil || len(as) == 0 {
		return nil, fmt.Errorf("alert %d at %s/%d@%d: %w", s.Candid, s.Topic, s.Partition, s.Offset, err)
	}
	if as[0].HasCandid && as[0].Candid != s.Candid {
		return nil, fmt.Errorf("%w: %s/%d@%d holds alert %d, not %d", alertindex.ErrGone, s.Topic, s.Partition, s.Offset, as[0].Candid, s.Candid)
	}
	var m map[string]any
	if err := avro.Unmarshal(as[0].Schema, as[0].Body, &m); err != nil {
		return nil, fmt.Errorf("alert %d: %w", s.Candid, err)
	}
	rec, _ := as[0].Schema.(*avro.RecordSchema)
	return &loaded{raw: raw, fields: m, schema: rec}, nil
}

// apiAlert is the alert as JSON (its fields, cutouts as data: URIs) or,
// with ?format=avro, the exact bytes of the message.
func (p *Portal) apiAlert(w http.ResponseWriter, r *http.Request) {
	candid, err := candidOf(r)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "avro" {
		p.writeError(w, r, badParam("format", format, "want json or avro"))
		return
	}
	s, err := p.summary(r, candid)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	raw, err := p.d.Read(ctx, s.Topic, s.Partition, s.Offset)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	if format == "avro" {
		w.Header().Set("Content-Type", "application/avro")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%d.avro"`, candid))
		w.Write(raw)
		return
	}
	js, err := p.alertJSON(raw)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(js)
}

// alertJSON is the record's fields as alertcat writes them, without its
// "$avro" member (the writer schema, 20 kB of it).
func (p *Portal) alertJSON(raw []byte) ([]byte, error) {
	as, err := p.codec.Decode(raw)
	if err != nil || len(as) == 0 {
		return nil, fmt.Errorf("decode alert: %w", err)
	}
	js, err := p.codec.AppendJSON(nil, as[0])
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	if _, err := dec.Token(); err != nil { // "$avro"
		return nil, err
	}
	var skip json.RawMessage
	if err := dec.Decode(&skip); err != nil {
		return nil, err
	}
	rest := bytes.TrimLeft(js[dec.InputOffset():], " ,")
	return append([]byte{'{'}, rest...), nil
}

// cutoutFields are the cutout files served and their fields.
var cutoutFields = map[string]string{
	"science.png": "cutoutScience", "template.png": "cutoutTemplate", "difference.png": "cutoutDifference",
}

// CutoutScale magnifies the 63-pixel stamps for the page.
const CutoutScale = 4

func (p *Portal) apiCutout(w http.ResponseWriter, r *http.Request) {
	candid, err := candidOf(r)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	file := r.PathValue("file")
	field, ok := cutoutFields[file]
	if !ok {
		p.writeError(w, r, badParam("cutout", file, "want science.png, template.png or difference.png"))
		return
	}
	s, err := p.summary(r, candid)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	a, err := p.load(r.Context(), &s)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	data, _ := record(a.fields, field)["stampData"].([]byte)
	if len(data) == 0 {
		p.writeError(w, r, notFound("alert %d has no %s", candid, field))
		return
	}
	stamp, err := ReadStamp(data)
	if err != nil {
		p.writeError(w, r, &statusError{http.StatusUnprocessableEntity, fmt.Sprintf("alert %d %s: %v", candid, field, err)})
		return
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, stamp.Render(CutoutScale)); err != nil {
		p.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "max-age=86400")
	w.Write(buf.Bytes())
}

// ObjectJSON is an object's alerts and light curve.
type ObjectJSON struct {
	ObjectID   string      `json:"objectId"`
	Alerts     []AlertJSON `json:"alerts"`
	LightCurve LightCurve  `json:"light_curve"`
}

// maxObjectAlerts bounds the alerts of one object read back for its light
// curve (ZTF's busiest objects have a few hundred a year).
const maxObjectAlerts = 200

// object finds the object's alerts the request may see and reads them.
func (p *Portal) object(r *http.Request, id string) ([]alertindex.Summary, []*loaded, error) {
	all, err := p.d.Index.Object(id, maxObjectAlerts)
	if err != nil {
		return nil, nil, err
	}
	acc := p.accessFor(r)
	var sums []alertindex.Summary
	for i := range all {
		if acc.allow(&all[i]) {
			sums = append(sums, all[i])
		}
	}
	if len(sums) == 0 {
		return nil, nil, notFound("object %s: no alert in the index", id)
	}
	var alerts []*loaded
	for i := range sums {
		a, err := p.load(r.Context(), &sums[i])
		if err != nil {
			p.log.Warn("object alert not read", zap.Int64("candid", sums[i].Candid), zap.Error(err))
			continue
		}
		alerts = append(alerts, a)
	}
	return sums, alerts, nil
}

func (p *Portal) apiObject(w http.ResponseWriter, r *http.Request) {
	id, err := objectIDOf(r)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	sums, alerts, err := p.object(r, id)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	writeJSON(w, ObjectJSON{ObjectID: id, Alerts: summariesJSON(sums), LightCurve: lightCurve(fieldsOf(alerts))})
}

func fieldsOf(as []*loaded) []map[string]any {
	out := make([]map[string]any, len(as))
	for i, a := range as {
		out[i] = a.fields
	}
	return out
}

// ListJSON is a page of alerts.
type ListJSON struct {
	Alerts []AlertJSON `json:"alerts"`
	Count  int         `json:"count"`
	// Next continues the listing (pass it as cursor); null at the end.
	Next *string `json:"next_cursor"`
	// Truncated: the cone held more positions than one answer reads.
	Truncated bool `json:"truncated,omitempty"`
}

// floatParam reads an optional number within [lo, hi].
func floatParam(r *http.Request, name string, def, lo, hi float64) (float64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || f < lo || f > hi {
		return 0, badParam(name, v, fmt.Sprintf("want a number from %g to %g", lo, hi))
	}
	return f, nil
}

func requiredFloat(r *http.Request, name string, lo, hi float64) (float64, error) {
	if r.URL.Query().Get(name) == "" {
		return 0, badParam(name, "", fmt.Sprintf("missing: want a number from %g to %g", lo, hi))
	}
	return floatParam(r, name, 0, lo, hi)
}

func (p *Portal) limitParam(r *http.Request) (int, error) {
	l, err := floatParam(r, "limit", 100, 1, float64(p.cfg.MaxLimit))
	if err == nil && l != math.Trunc(l) {
		err = badParam("limit", r.URL.Query().Get("limit"), "want a whole number")
	}
	return int(l), err
}

// Cone is a parsed cone search.
type cone struct {
	ra, dec, radius float64 // degrees
	limit           int
}

func (p *Portal) coneParams(r *http.Request) (cone, error) {
	var c cone
	var errs []error
	var err error
	c.ra, err = requiredFloat(r, "ra", 0, 360)
	errs = append(errs, err)
	c.dec, err = requiredFloat(r, "dec", -90, 90)
	errs = append(errs, err)
	radius, err := requiredFloat(r, "radius", 0, p.cfg.MaxRadius)
	errs = append(errs, err)
	if err == nil && radius <= 0 {
		errs = append(errs, badParam("radius", r.URL.Query().Get("radius"), "want more than 0 arcsec"))
	}
	c.radius = radius / 3600
	c.limit, err = p.limitParam(r)
	errs = append(errs, err)
	return c, errors.Join(errs...)
}

func (p *Portal) runCone(r *http.Request, c cone) (ListJSON, error) {
	sums, truncated, err := p.d.Index.Cone(c.ra, c.dec, c.radius, c.limit, p.cfg.ScanMax, p.accessFor(r).allow)
	if err != nil {
		return ListJSON{}, err
	}
	out := ListJSON{Alerts: summariesJSON(sums), Count: len(sums), Truncated: truncated}
	for i := range out.Alerts {
		sep := alertindex.Separation(c.ra, c.dec, sums[i].RA, sums[i].Dec) * 3600
		out.Alerts[i].Separation = &sep
	}
	return out, nil
}

func (p *Portal) apiCone(w http.ResponseWriter, r *http.Request) {
	c, err := p.coneParams(r)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	out, err := p.runCone(r, c)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	writeJSON(w, out)
}

// timeParam reads a time as a Julian date, an RFC 3339 time or a date.
func timeParam(r *http.Request, name string, def float64) (float64, error) {
	v := strings.TrimSpace(r.URL.Query().Get(name))
	if v == "" {
		return def, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 2_400_000 || f > 2_500_000 {
			return 0, badParam(name, v, "want a Julian date from 2400000 to 2500000, an RFC 3339 time or YYYY-MM-DD")
		}
		return f, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return alertindex.TimeJD(t), nil
		}
	}
	return 0, badParam(name, v, "want a Julian date, an RFC 3339 time or YYYY-MM-DD")
}

// cursorVersion starts every cursor, so a future layout can be told apart.
const cursorVersion = 1

func encodeCursor(c *alertindex.Cursor) string {
	b := []byte{cursorVersion}
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(c.JD))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Candid))
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(v string, since, until float64) (*alertindex.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) != 17 || b[0] != cursorVersion {
		return nil, badParam("cursor", v, "not a cursor this server gave")
	}
	c := &alertindex.Cursor{JD: math.Float64frombits(binary.BigEndian.Uint64(b[1:])), Candid: int64(binary.BigEndian.Uint64(b[9:]))}
	if !(c.JD >= since && c.JD < until) {
		return nil, badParam("cursor", v, "outside the window since-until: pass the same since and until as the first page")
	}
	return c, nil
}

// windowQuery is the parsed alerts listing.
func (p *Portal) windowQuery(r *http.Request) (alertindex.Window, error) {
	now := alertindex.TimeJD(p.d.Now())
	var errs []error
	until, err := timeParam(r, "until", now+1.0/24)
	errs = append(errs, err)
	since, err := timeParam(r, "since", until-1)
	errs = append(errs, err)
	if err == nil && since >= until {
		errs = append(errs, badParam("since", r.URL.Query().Get("since"), "want a time before until"))
	}
	var fid float64
	if v := r.URL.Query().Get("fid"); v != "" {
		fid, err = floatParam(r, "fid", 0, 1, 3)
		if err == nil && fid != math.Trunc(fid) {
			err = badParam("fid", v, "want 1 (g), 2 (r) or 3 (i)")
		}
		errs = append(errs, err)
	}
	magMin, err := floatParam(r, "mag_min", math.Inf(-1), -10, 40)
	errs = append(errs, err)
	magMax, err := floatParam(r, "mag_max", math.Inf(1), -10, 40)
	errs = append(errs, err)
	rbMin, err := floatParam(r, "rb_min", 0, 0, 1)
	errs = append(errs, err)
	var program float64
	if v := r.URL.Query().Get("program"); v != "" {
		program, err = floatParam(r, "program", 0, 1, 3)
		if err == nil && program != math.Trunc(program) {
			err = badParam("program", v, "want 1, 2 or 3")
		}
		errs = append(errs, err)
	}
	limit, err := p.limitParam(r)
	errs = append(errs, err)
	w := alertindex.Window{Since: since, Until: until, Limit: limit, ScanMax: p.cfg.ScanMax}
	if v := r.URL.Query().Get("cursor"); v != "" && errors.Join(errs...) == nil {
		w.After, err = decodeCursor(v, since, until)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return w, err
	}
	acc := p.accessFor(r)
	w.Match = func(s *alertindex.Summary) bool {
		mag := float64(s.MagPSF)
		switch {
		case fid != 0 && float64(s.Fid) != fid,
			program != 0 && float64(s.ProgramID) != program,
			(magMin > math.Inf(-1) || magMax < math.Inf(1)) && (math.IsNaN(mag) || mag < magMin || mag > magMax),
			rbMin > 0 && !(float64(s.RB) >= rbMin):
			return false
		}
		return acc.allow(s)
	}
	return w, nil
}

func (p *Portal) runWindow(w alertindex.Window) (ListJSON, error) {
	sums, next, err := p.d.Index.Window(w)
	if err != nil {
		return ListJSON{}, err
	}
	out := ListJSON{Alerts: summariesJSON(sums), Count: len(sums)}
	if next != nil {
		c := encodeCursor(next)
		out.Next = &c
	}
	return out, nil
}

func (p *Portal) apiAlerts(w http.ResponseWriter, r *http.Request) {
	q, err := p.windowQuery(r)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	out, err := p.runWindow(q)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	writeJSON(w, out)
}
