package portal

import (
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"
)

// Point is one measurement of a light curve.
type Point struct {
	JD  float64 `json:"jd"`
	Fid int     `json:"fid"`
	// Mag and MagErr are the PSF magnitude of a detection, or of forced
	// photometry where its flux is significant (S/N >= 3).
	Mag    *float64 `json:"magpsf,omitempty"`
	MagErr *float64 `json:"sigmapsf,omitempty"`
	// Limit is the 5-sigma limiting magnitude of a non-detection.
	Limit     *float64 `json:"diffmaglim,omitempty"`
	Candid    *int64   `json:"candid,omitempty"`
	IsDiffPos string   `json:"isdiffpos,omitempty"`
	// Flux and FluxErr are forced photometry's difference flux (DN).
	Flux    *float64 `json:"forcediffimflux,omitempty"`
	FluxErr *float64 `json:"forcediffimfluxunc,omitempty"`
}

// LightCurve merges the candidates, prv_candidates and fp_hists of an
// object's alerts: each detection once (by candid), each upper limit and
// forced measurement once (by time and band).
type LightCurve struct {
	Detections       []Point `json:"detections"`
	UpperLimits      []Point `json:"upper_limits"`
	ForcedPhotometry []Point `json:"forced_photometry"`
}

// lightCurve builds the curve from decoded alerts (hamba's generic form).
func lightCurve(alerts []map[string]any) LightCurve {
	lc := LightCurve{Detections: []Point{}, UpperLimits: []Point{}, ForcedPhotometry: []Point{}}
	dets := map[int64]bool{}
	lims := map[[2]float64]bool{}
	fps := map[[2]float64]bool{}
	addDet := func(c map[string]any) {
		p, ok := point(c)
		if !ok {
			return
		}
		cand, hasCand := asInt(c["candid"])
		mag, hasMag := asFloat(c["magpsf"])
		if hasCand && hasMag {
			if dets[cand] {
				return
			}
			dets[cand] = true
			p.Candid, p.Mag = &cand, &mag
			if e, ok := asFloat(c["sigmapsf"]); ok {
				p.MagErr = &e
			}
			p.IsDiffPos, _ = c["isdiffpos"].(string)
			lc.Detections = append(lc.Detections, p)
			return
		}
		lim, ok := asFloat(c["diffmaglim"])
		key := [2]float64{p.JD, float64(p.Fid)}
		if !ok || lims[key] {
			return
		}
		lims[key] = true
		p.Limit = &lim
		lc.UpperLimits = append(lc.UpperLimits, p)
	}
	for _, a := range alerts {
		if c := record(a, "candidate"); c != nil {
			addDet(c)
		}
		for _, v := range asSlice(a["prv_candidates"]) {
			if c, ok := v.(map[string]any); ok {
				addDet(c)
			}
		}
		for _, v := range asSlice(a["fp_hists"]) {
			f, ok := v.(map[string]any)
			if !ok {
				continue
			}
			p, ok := point(f)
			key := [2]float64{p.JD, float64(p.Fid)}
			flux, okF := asFloat(f["forcediffimflux"])
			unc, okU := asFloat(f["forcediffimfluxunc"])
			if !ok || !okF || !okU || fps[key] || flux <= -99999 {
				continue
			}
			fps[key] = true
			p.Flux, p.FluxErr = &flux, &unc
			if zp, ok := asFloat(f["magzpsci"]); ok && unc > 0 && flux/unc >= 3 {
				m := zp - 2.5*math.Log10(flux)
				e := 1.0857 * unc / flux
				p.Mag, p.MagErr = &m, &e
			} else if lim, ok := asFloat(f["diffmaglim"]); ok {
				p.Limit = &lim
			}
			lc.ForcedPhotometry = append(lc.ForcedPhotometry, p)
		}
	}
	for _, ps := range [][]Point{lc.Detections, lc.UpperLimits, lc.ForcedPhotometry} {
		sort.Slice(ps, func(i, j int) bool { return ps[i].JD < ps[j].JD })
	}
	return lc
}

func point(m map[string]any) (Point, bool) {
	jd, ok := asFloat(m["jd"])
	fid, ok2 := asInt(m["fid"])
	return Point{JD: jd, Fid: int(fid)}, ok && ok2
}

func asSlice(v any) []any {
	s, _ := unwrap(v).([]any)
	return s
}

// unwrap takes a value out of hamba's generic form of a union of complex
// types, a map of one entry keyed by the branch's type name ("array",
// "ztf.alert.cutout").
func unwrap(v any) any {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return v
	}
	for k, inner := range m {
		switch inner.(type) {
		case map[string]any, []any:
			if k == "array" || k == "map" || strings.Contains(k, ".") || k == "cutout" || k == "candidate" {
				return inner
			}
		}
	}
	return v
}

// record is a record field of a decoded alert, unwrapped.
func record(a map[string]any, name string) map[string]any {
	m, _ := unwrap(a[name]).(map[string]any)
	return m
}

// asFloat reads a number of hamba's generic form; NaN is no number.
func asFloat(v any) (float64, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int:
		f = float64(x)
	case int32:
		f = float64(x)
	case int64:
		f = float64(x)
	default:
		return 0, false
	}
	return f, !math.IsNaN(f) && !math.IsInf(f, 0)
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

// bandColour and bandName by ZTF filter id.
var (
	bandColour = map[int]string{1: "#2a9d3a", 2: "#d62728", 3: "#c9a000"}
	bandName   = map[int]string{1: "g", 2: "r", 3: "i"}
)

// plotSVG draws the light curve: magnitude (bright up) against MJD, one
// colour per band, detections with error bars, forced photometry as small
// squares, upper limits as open triangles pointing down.
func plotSVG(lc LightCurve) template.HTML {
	const w, h, left, right, top, bottom = 720.0, 320.0, 56.0, 16.0, 16.0, 40.0
	var all []Point
	all = append(all, lc.Detections...)
	all = append(all, lc.UpperLimits...)
	all = append(all, lc.ForcedPhotometry...)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="lightcurve" xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" role="img" aria-label="light curve">`, w, h, w, h)
	if len(all) == 0 {
		b.WriteString(`<text x="20" y="40">no measurements</text></svg>`)
		return template.HTML(b.String())
	}
	x0, x1 := math.Inf(1), math.Inf(-1)
	y0, y1 := math.Inf(1), math.Inf(-1)
	for _, p := range all {
		x0, x1 = math.Min(x0, p.JD), math.Max(x1, p.JD)
		for _, m := range []*float64{p.Mag, p.Limit} {
			if m != nil {
				y0, y1 = math.Min(y0, *m), math.Max(y1, *m)
			}
		}
	}
	if math.IsInf(y0, 0) {
		y0, y1 = 15, 21
	}
	if x1-x0 < 1 {
		x0, x1 = x0-0.5, x1+0.5
	}
	y0, y1 = y0-0.3, y1+0.3
	px := func(jd float64) float64 { return left + (jd-x0)/(x1-x0)*(w-left-right) }
	py := func(m float64) float64 { return top + (m-y0)/(y1-y0)*(h-top-bottom) } // bright (small) at the top
	fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#888"/>`, left, top, w-left-right, h-top-bottom)
	for i := 0; i <= 4; i++ {
		m := y0 + (y1-y0)*float64(i)/4
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" font-size="11" text-anchor="end">%.1f</text>`, left-4, py(m)+4, m)
		jd := x0 + (x1-x0)*float64(i)/4
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" font-size="11" text-anchor="middle">%.1f</text>`, px(jd), h-bottom+14, jd-2400000.5)
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="11" text-anchor="middle">MJD</text>`, (left+w-right)/2, h-6)
	fmt.Fprintf(&b, `<text x="12" y="%g" font-size="11" transform="rotate(-90 12 %g)" text-anchor="middle">magnitude</text>`, (top+h-bottom)/2, (top+h-bottom)/2)
	for _, p := range lc.UpperLimits {
		x, y := px(p.JD), py(*p.Limit)
		fmt.Fprintf(&b, `<polygon class="limit" points="%.1f,%.1f %.1f,%.1f %.1f,%.1f" fill="none" stroke="%s"/>`,
			x-4, y-3, x+4, y-3, x, y+4, colour(p.Fid))
	}
	for _, p := range lc.ForcedPhotometry {
		if p.Mag == nil {
			continue
		}
		fmt.Fprintf(&b, `<rect class="forced" x="%.1f" y="%.1f" width="4" height="4" fill="%s" opacity="0.5"/>`, px(p.JD)-2, py(*p.Mag)-2, colour(p.Fid))
	}
	for _, p := range lc.Detections {
		x, y := px(p.JD), py(*p.Mag)
		if p.MagErr != nil && *p.MagErr > 0 && *p.MagErr < 5 {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, x, py(*p.Mag-*p.MagErr), x, py(*p.Mag+*p.MagErr), colour(p.Fid))
		}
		fmt.Fprintf(&b, `<circle class="detection" cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s %.3f ± %s at JD %.5f</title></circle>`,
			x, y, colour(p.Fid), band(p.Fid), *p.Mag, errText(p.MagErr), p.JD)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func colour(fid int) string {
	if c, ok := bandColour[fid]; ok {
		return c
	}
	return "#555"
}

func band(fid int) string {
	if n, ok := bandName[fid]; ok {
		return n
	}
	return fmt.Sprint(fid)
}

func errText(e *float64) string {
	if e == nil {
		return "?"
	}
	return fmt.Sprintf("%.3f", *e)
}
