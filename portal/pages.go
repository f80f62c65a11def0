package portal

import (
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/alertindex"
)

// statusNights is how many archive nights the status page lists.
const statusNights = 14

// Status is the stream's figures, on the status page and /api/v1/index/status.
type Status struct {
	// AlertsIndexed is ztfbroker_portal_index_alerts.
	AlertsIndexed int64         `json:"alerts_indexed"`
	Topics        []TopicStatus `json:"topics"`
	// LastMinute is ztfbroker_portal_alerts_last_minute.
	LastMinute int `json:"alerts_last_minute"`
	// LastExposureJD and LatencySeconds (ztfbroker_portal_last_exposure_latency_seconds):
	// the newest exposure indexed and how long after it its alerts were.
	LastExposureJD float64    `json:"last_exposure_jd"`
	LastExposure   string     `json:"last_exposure"`
	LatencySeconds float64    `json:"last_exposure_latency_seconds"`
	Groups         []GroupLag `json:"groups"`
	// Nights are the archive's newest public nights (statusNights).
	Nights []ArchiveNight `json:"archive_nights"`
	Links  []Link         `json:"links"`
}

// TopicStatus is one alert topic.
type TopicStatus struct {
	Name   string `json:"name"`
	Alerts int64  `json:"alerts"`
}

func (p *Portal) status(r *http.Request) Status {
	st := Status{AlertsIndexed: p.d.Index.Count(), Links: p.d.Links}
	acc := p.accessFor(r)
	for t, n := range p.d.Index.Topics() {
		// A topic of other programs than the public one is listed to
		// those who may read it (the figures count every alert).
		if strings.HasSuffix(t, "_programid1") || (acc.mayRead != nil && acc.mayRead(r, t)) {
			st.Topics = append(st.Topics, TopicStatus{t, n})
		}
	}
	sort.Slice(st.Topics, func(i, j int) bool { return st.Topics[i].Name > st.Topics[j].Name }) // tonight first
	if p.d.Progress != nil {
		pr := p.d.Progress()
		st.LastMinute, st.LastExposureJD, st.LatencySeconds = pr.LastMinute, pr.LastJD, pr.LatencySeconds
		if pr.LastJD > 0 {
			st.LastExposure = alertindex.JDTime(pr.LastJD).Format("2006-01-02 15:04:05 UTC")
		}
	}
	st.Groups = p.groups(r.Context())
	if p.d.Nights != nil {
		nights, err := p.d.Nights()
		if err != nil {
			p.d.Logger.Warn("status page: list the archive", zap.Error(err))
		}
		st.Nights = nights[:min(len(nights), statusNights)]
	}
	return st
}

func (p *Portal) apiStatus(w http.ResponseWriter, r *http.Request) { writeJSON(w, p.status(r)) }

func (p *Portal) statusPage(w http.ResponseWriter, r *http.Request) {
	p.render(w, "status", map[string]any{"S": p.status(r)})
}

// searchPage is the search form and, when it was sent, its results.
func (p *Portal) searchPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	data := map[string]any{"Q": q}
	switch {
	case q.Get("objectId") != "":
		id := q.Get("objectId")
		if !objectIDPattern.MatchString(id) {
			data["Error"] = badParam("objectId", id, "want letters, digits and _").Error()
			break
		}
		http.Redirect(w, r, "/objects/"+id, http.StatusSeeOther)
		return
	case q.Get("ra") != "" || q.Get("dec") != "":
		if q.Get("radius") == "" {
			q.Set("radius", "5")
		}
		c, err := p.coneParams(r)
		if err != nil {
			data["Error"] = err.Error()
			break
		}
		out, err := p.runCone(r, c)
		if err != nil {
			data["Error"] = err.Error()
			break
		}
		data["Results"] = out
	case q.Get("since") != "" || q.Get("until") != "" || q.Get("cursor") != "" || q.Get("go") != "":
		wq, err := p.windowQuery(r)
		if err != nil {
			data["Error"] = err.Error()
			break
		}
		out, err := p.runWindow(wq)
		if err != nil {
			data["Error"] = err.Error()
			break
		}
		data["Results"] = out
		if out.Next != nil {
			next := url.Values{}
			for k, v := range q {
				next[k] = v
			}
			next.Set("cursor", *out.Next)
			data["NextURL"] = "/search?" + next.Encode()
		}
	}
	if data["Error"] != nil {
		w.WriteHeader(http.StatusBadRequest)
	}
	p.render(w, "search", data)
}

// field is one candidate field on the object page.
type field struct{ Name, Value string }

func (p *Portal) objectPage(w http.ResponseWriter, r *http.Request) {
	id, err := objectIDOf(r)
	if err != nil {
		p.pageError(w, http.StatusBadRequest, err.Error())
		return
	}
	sums, alerts, err := p.object(r, id)
	if err != nil {
		if se, ok := err.(*statusError); ok {
			p.pageError(w, se.code, se.msg)
			return
		}
		p.pageError(w, http.StatusInternalServerError, err.Error())
		return
	}
	chosen := 0
	if v := r.URL.Query().Get("candid"); v != "" {
		c, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			p.pageError(w, http.StatusBadRequest, badParam("candid", v, "want an integer").Error())
			return
		}
		chosen = -1
		for i := range sums {
			if sums[i].Candid == c {
				chosen = i
			}
		}
		if chosen < 0 {
			p.pageError(w, http.StatusNotFound, fmt.Sprintf("alert %d is not one of %s's", c, id))
			return
		}
	}
	var fields []field
	for _, a := range alerts {
		if cand := record(a.fields, "candidate"); cand != nil {
			if c, _ := asInt(cand["candid"]); c == sums[chosen].Candid || (len(alerts) == 1) {
				fields = candidateFields(cand)
			}
		}
	}
	lc := lightCurve(fieldsOf(alerts))
	p.render(w, "object", map[string]any{
		"ID": id, "Alerts": summariesJSON(sums), "Chosen": summaryJSON(&sums[chosen]),
		"Plot": plotSVG(lc), "Curve": lc, "Fields": fields,
		"Cutouts": []string{"science", "template", "difference"},
	})
}

// candidateFields lists every field of the candidate, by name.
func candidateFields(c map[string]any) []field {
	names := make([]string, 0, len(c))
	for k := range c {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]field, 0, len(names))
	for _, k := range names {
		v := "null"
		if c[k] != nil {
			v = fmt.Sprint(c[k])
		}
		out = append(out, field{k, v})
	}
	return out
}

func (p *Portal) pageError(w http.ResponseWriter, code int, msg string) {
	w.WriteHeader(code)
	p.render(w, "error", map[string]any{"Code": code, "Error": msg})
}

func (p *Portal) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		p.log.Debug("page write", zap.String("page", name), zap.Error(err))
	}
}

var pageFuncs = template.FuncMap{
	"band":   band,
	"band32": func(fid int32) string { return band(int(fid)) },
	"mag": func(v *float64) string {
		if v == nil {
			return ""
		}
		return strconv.FormatFloat(*v, 'f', 3, 64)
	},
	"jdtime": func(jd float64) string {
		if jd <= 0 || math.IsNaN(jd) {
			return ""
		}
		return alertindex.JDTime(jd).Format("2006-01-02 15:04:05")
	},
	"short": func(f float64) string { return strconv.FormatFloat(f, 'f', 5, 64) },
	"join":  strings.Join,
}

var pages = template.Must(template.New("pages").Funcs(pageFuncs).Parse(`
{{define "head"}}<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.}} · ztfbroker</title>
<style>
body { font-family: sans-serif; margin: 1.5em 2em; color: #222; }
nav a { margin-right: 1.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 0.15em 1em 0.15em 0; text-align: left; font-size: 0.92em; }
th { border-bottom: 1px solid #999; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.err { color: #b00; }
form fieldset { display: inline-block; vertical-align: top; margin: 0 1em 1em 0; }
form label { display: block; margin: 0.2em 0; }
.cutouts img { margin-right: 12px; border: 1px solid #999; image-rendering: pixelated; }
.fields { columns: 3; font-size: 0.85em; }
</style>
</head>
<body>
<nav><a href="/">Status</a><a href="/search">Search</a><a href="/filters">Filters</a><a href="/pages">All pages</a><a href="/alerts/public/">Archive</a></nav>
<h1>{{.}}</h1>
{{end}}

{{define "status"}}{{template "head" "Alert stream"}}
<table id="figures">
<tr><th>Alerts in the index</th><td class="num" id="alerts-indexed">{{.S.AlertsIndexed}}</td></tr>
<tr><th>Alerts indexed in the last minute</th><td class="num" id="alerts-last-minute">{{.S.LastMinute}}</td></tr>
<tr><th>Last exposure</th><td id="last-exposure">{{.S.LastExposure}}</td></tr>
<tr><th>Its latency to the index</th><td class="num" id="latency">{{printf "%.1f" .S.LatencySeconds}} s</td></tr>
</table>
<h2>Topics</h2>
<table id="topics"><thead><tr><th>Topic</th><th>Alerts</th></tr></thead><tbody>
{{range .S.Topics}}<tr class="topic"><td>{{.Name}}</td><td class="num">{{.Alerts}}</td></tr>
{{end}}</tbody></table>
<h2>Consumer groups</h2>
<table id="groups"><thead><tr><th>Group</th><th>State</th><th>Lag</th></tr></thead><tbody>
{{range .S.Groups}}<tr class="group"><td>{{.Group}}</td><td>{{.State}}</td><td class="num">{{.Lag}}</td></tr>
{{end}}</tbody></table>
<h2>Nightly archive</h2>
<table id="nights"><thead><tr><th>Night</th><th>Public tarball</th><th>Size</th></tr></thead><tbody>
{{range .S.Nights}}<tr class="night"><td>{{.Night}}</td><td><a href="{{.URL}}">{{.Name}}</a></td><td class="num">{{.Size}}</td></tr>
{{else}}<tr><td colspan="3">No night archived yet: a night's tarball is built after it ends.</td></tr>
{{end}}</tbody></table>
<h2>Links</h2>
<ul>
<li><a href="/search">Search alerts</a> by object, position, time, magnitude, band and real-bogus score</li>
<li><a href="/api/v1/index/status">This page as JSON</a>, <a href="/api/v1/alerts">the last day's alerts as JSON</a></li>
{{range .S.Links}}<li><a href="{{.Path}}">{{.Title}}</a></li>
{{end}}</ul>
</body></html>
{{end}}

{{define "search"}}{{template "head" "Search alerts"}}
<form id="search" method="get" action="/search">
<fieldset><legend>Object</legend><label>objectId <input name="objectId" value="{{.Q.Get "objectId"}}" placeholder="ZTF18abudxnw"></label></fieldset>
<fieldset><legend>Cone</legend>
<label>RA (deg) <input name="ra" size="10" value="{{.Q.Get "ra"}}"></label>
<label>Dec (deg) <input name="dec" size="10" value="{{.Q.Get "dec"}}"></label>
<label>radius (arcsec) <input name="radius" size="6" value="{{.Q.Get "radius"}}" placeholder="5"></label></fieldset>
<fieldset><legend>Time and measurement</legend>
<label>since <input name="since" value="{{.Q.Get "since"}}" placeholder="JD or 2026-01-31T04:00"></label>
<label>until <input name="until" value="{{.Q.Get "until"}}"></label>
<label>band <select name="fid"><option value="">any</option><option value="1"{{if eq (.Q.Get "fid") "1"}} selected{{end}}>g</option><option value="2"{{if eq (.Q.Get "fid") "2"}} selected{{end}}>r</option><option value="3"{{if eq (.Q.Get "fid") "3"}} selected{{end}}>i</option></select></label>
<label>mag from <input name="mag_min" size="5" value="{{.Q.Get "mag_min"}}"> to <input name="mag_max" size="5" value="{{.Q.Get "mag_max"}}"></label>
<label>rb at least <input name="rb_min" size="5" value="{{.Q.Get "rb_min"}}"></label>
<label>limit <input name="limit" size="5" value="{{.Q.Get "limit"}}" placeholder="100"></label></fieldset>
<div><button type="submit" name="go" value="1">Search</button></div>
</form>
{{with .Error}}<p class="err" id="error">{{.}}</p>{{end}}
{{with .Results}}
<p id="count">{{.Count}} alerts{{if .Truncated}} (the cone holds more than one answer reads; narrow it){{end}}</p>
<table id="results"><thead><tr><th>objectId</th><th>candid</th><th>time (UTC)</th><th>band</th><th>magpsf</th><th>rb</th><th>RA</th><th>Dec</th><th>programid</th></tr></thead><tbody>
{{range .Alerts}}<tr class="alert"><td><a href="/objects/{{.ObjectID}}?candid={{.Candid}}">{{.ObjectID}}</a></td><td>{{.Candid}}</td><td>{{jdtime .JD}}</td><td>{{band32 .Fid}}</td><td class="num">{{mag .MagPSF}}</td><td class="num">{{mag .RB}}</td><td class="num">{{short .RA}}</td><td class="num">{{short .Dec}}</td><td>{{.ProgramID}}</td></tr>
{{end}}</tbody></table>
{{end}}
{{with .NextURL}}<p><a id="next" href="{{.}}">Next page</a></p>{{end}}
</body></html>
{{end}}

{{define "object"}}{{template "head" .ID}}
<h2>Light curve</h2>
{{.Plot}}
<p class="legend"><span style="color:#2a9d3a">● g</span> &nbsp; <span style="color:#d62728">● r</span> &nbsp; <span style="color:#c9a000">● i</span> &nbsp; ▽ upper limit &nbsp; ▪ forced photometry</p>
<p>{{len .Curve.Detections}} detections, {{len .Curve.UpperLimits}} upper limits (open triangles), {{len .Curve.ForcedPhotometry}} forced photometry measurements; <a href="/api/v1/objects/{{.ID}}">as JSON</a></p>
<h2>Alert {{.Chosen.Candid}} <small>{{jdtime .Chosen.JD}} UTC</small></h2>
<p><a id="download-avro" href="/api/v1/alerts/{{.Chosen.Candid}}?format=avro">Download Avro</a> · <a id="download-json" href="/api/v1/alerts/{{.Chosen.Candid}}">JSON</a></p>
<div class="cutouts">{{$c := .Chosen.Candid}}{{range .Cutouts}}<figure style="display:inline-block;margin:0"><img class="cutout" id="cutout-{{.}}" alt="{{.}}" src="/api/v1/alerts/{{$c}}/cutouts/{{.}}.png"><figcaption>{{.}}</figcaption></figure>{{end}}</div>
<script>
// Each cutout's decoded size, for a reader (or a test) to see it was drawn.
window.addEventListener("load", function () {
  document.querySelectorAll("img.cutout").forEach(function (i) {
    i.dataset.natural = i.complete ? i.naturalWidth + "x" + i.naturalHeight : "0x0";
  });
  document.body.dataset.loaded = "yes";
});
</script>
<h2>Alerts</h2>
<table id="alerts"><thead><tr><th>candid</th><th>time (UTC)</th><th>magpsf</th><th>sigmapsf</th><th>rb</th><th>isdiffpos</th><th>topic</th></tr></thead><tbody>
{{range .Alerts}}<tr class="alert"><td><a href="?candid={{.Candid}}">{{.Candid}}</a></td><td>{{jdtime .JD}}</td><td class="num">{{mag .MagPSF}}</td><td class="num">{{mag .SigmaPSF}}</td><td class="num">{{mag .RB}}</td><td>{{.IsDiffPos}}</td><td>{{.Topic}}</td></tr>
{{end}}</tbody></table>
<h2>Candidate</h2>
<dl class="fields" id="candidate">{{range .Fields}}<div><b>{{.Name}}</b> {{.Value}}</div>{{end}}</dl>
</body></html>
{{end}}

{{define "error"}}{{template "head" "Not shown"}}
<p class="err" id="error">{{.Code}}: {{.Error}}</p>
</body></html>
{{end}}
`))
