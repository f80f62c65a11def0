package filter

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The filters page, /filters, is the API for a browser, server-rendered
// and working without JavaScript: a user writes a filter, checks it (the
// compiler's error points at the column), previews the matches it would
// have had over the last hour, then saves it; the user's filters are
// listed with their state, and can be removed.
//
//	GET  /filters?name=&topics=&expr=&format=&start=&since=&action=check|preview
//	GET  /filters?login=1     asks the browser for the user's credentials
//	POST /filters             op=save (the form's fields) or op=remove&name=
//
// Checking and previewing change nothing, so they are GETs anyone may
// make (a preview reads only the topics the user may read); saving and
// removing are POSTs that need a user and come from this site's own page.

// Bounds of one preview: the window it reads, its time, the alerts it
// evaluates, the previews running at once, the matches it shows.
const (
	defaultPreviewSince   = time.Hour
	maxPreviewSince       = 24 * time.Hour
	previewTimeout        = 20 * time.Second
	maxPreviewAlerts      = 50_000
	maxConcurrentPreviews = 2
	maxPreviewShown       = 100
)

// previewAnswer is what a preview found, as JSON and on the page.
type previewAnswer struct {
	PreviewResult
	Topics string    `json:"topics"`
	Since  time.Time `json:"since"`
	// Shown are the first maxPreviewShown matches.
	Shown []Summary `json:"shown"`
}

// runPreview evaluates e over the alerts of the topics matching glob that
// user may read, sent in the last since: within previewTimeout and
// maxPreviewAlerts (Truncated says when either cut it short).
func (a *API) runPreview(ctx context.Context, user, glob string, e *Expression, since time.Duration) (previewAnswer, error) {
	ans := previewAnswer{Topics: glob, Since: time.Now().Add(-since).UTC().Truncate(time.Second), Shown: []Summary{}}
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case a.previews <- struct{}{}:
		defer func() { <-a.previews }()
	case <-wait.Done():
		return ans, fmt.Errorf("filter: %d previews are running; try again: %w", maxConcurrentPreviews, wait.Err())
	}
	ctx, stop := context.WithTimeout(ctx, previewTimeout)
	defer stop()
	q := PreviewQuery{Expr: e, Topics: glob, Since: ans.Since, MaxAlerts: maxPreviewAlerts}
	if a.MayRead != nil {
		q.Readable = func(topic string) bool { return a.MayRead(user, topic) }
	}
	res, err := Preview(ctx, q, func(rec *kgo.Record, al *Alert) {
		if len(ans.Shown) < maxPreviewShown {
			ans.Shown = append(ans.Shown, Summary{ObjectID: al.ObjectID, Candid: al.Candid, RA: al.Candidate.RA,
				Dec: al.Candidate.Dec, JD: al.Candidate.JD, Magpsf: float64(al.Candidate.Magpsf), Fid: al.Candidate.Fid})
		}
	}, a.opts...)
	ans.PreviewResult = res
	if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		ans.Truncated, err = true, nil // what it read in its time
	}
	return ans, err
}

// previewSince reads a preview's window ("" is the last hour).
func previewSince(v string) (time.Duration, error) {
	if v == "" {
		return defaultPreviewSince, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > maxPreviewSince {
		return 0, fmt.Errorf("since %q: want a duration such as 1h, at most %s", v, maxPreviewSince)
	}
	return d, nil
}

// checkGlob says what is wrong with a source topics glob.
func checkGlob(glob string) error {
	if _, err := path.Match(glob, ""); err != nil || glob == "" || len(glob) > 256 {
		return fmt.Errorf("topics %q: want a glob such as ztf_*_programid1", glob)
	}
	return nil
}

// pageData is what the page shows.
type pageData struct {
	User    string
	Form    Spec
	Since   string
	Action  string
	Checked *Expression
	Error   string
	Preview *previewAnswer
	Filters []Spec
	ListErr string
	Saved   string
}

func (a *API) page(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	user := a.user(r)
	if q.Get("login") != "" && user == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="ztfbroker", charset="UTF-8"`)
		http.Error(w, "401 unauthorized: sign in with your ztfbroker user", http.StatusUnauthorized)
		return
	}
	d := pageData{User: user, Action: q.Get("action"), Since: q.Get("since"), Saved: q.Get("saved"),
		Form: Spec{Name: q.Get("name"), Topics: q.Get("topics"), Expression: q.Get("expr"), Format: q.Get("format"), Start: q.Get("start")}}
	if d.Form.Topics == "" {
		d.Form.Topics = "ztf_*_programid1"
	}
	code := http.StatusOK
	if d.Action == "check" || d.Action == "preview" {
		code = a.tryForm(r.Context(), &d)
	}
	a.render(w, r, code, d)
}

// previewQuery checks what a preview is asked: a glob of topics, an
// expression and a window ("" is the last hour).
func (a *API) previewQuery(glob, expr, since string) (*Expression, time.Duration, error) {
	e, err := a.compiler.Compile(expr)
	if err != nil {
		return nil, 0, err
	}
	d, err := previewSince(since)
	if err == nil {
		err = checkGlob(glob)
	}
	return e, d, err
}

// tryForm checks the form's expression and, for a preview, runs it.
func (a *API) tryForm(ctx context.Context, d *pageData) int {
	e, since, err := a.previewQuery(d.Form.Topics, d.Form.Expression, d.Since)
	if e != nil {
		d.Checked = e
	}
	if err != nil && (e == nil || d.Action == "preview") {
		d.Error = err.Error()
		return http.StatusBadRequest
	}
	if d.Action != "preview" {
		return http.StatusOK
	}
	ans, err := a.runPreview(ctx, d.User, d.Form.Topics, e, since)
	if err != nil {
		d.Error = err.Error()
		return http.StatusServiceUnavailable
	}
	d.Preview = &ans
	return http.StatusOK
}

// render lists the user's filters under the page.
func (a *API) render(w http.ResponseWriter, r *http.Request, code int, d pageData) {
	if specs, err := a.specs(r.Context()); err != nil {
		d.ListErr = err.Error()
	} else {
		for _, s := range specs {
			if s.Owner == a.owner(r) {
				d.Filters = append(d.Filters, s)
			}
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	pageTmpl.Execute(w, d) //nolint:errcheck // the client went away
}

// post saves or removes one of the user's filters from the page's forms.
func (a *API) post(w http.ResponseWriter, r *http.Request) {
	if err := sameSite(r); err != nil {
		http.Error(w, "403 forbidden: "+err.Error(), http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "400 bad request: the form: "+err.Error(), http.StatusBadRequest)
		return
	}
	user := a.user(r)
	f := r.PostForm
	d := pageData{User: user, Form: Spec{Name: f.Get("name"), Owner: user, Topics: f.Get("topics"),
		Expression: f.Get("expr"), Format: f.Get("format"), Start: f.Get("start")}}
	if user == "" { // the routes ask for a user; this is their second line
		http.Error(w, "401 unauthorized: saving a filter needs a user", http.StatusUnauthorized)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	var code int
	var err error
	switch f.Get("op") {
	case "save":
		if code, err = a.mayChange(ctx, d.Form.Name, user, true); err == nil {
			code, err = http.StatusBadRequest, d.Form.Validate(a.compiler)
		}
		if err == nil {
			code, err = a.store(ctx, d.Form, false)
		}
	case "remove":
		if code, err = a.mayChange(ctx, d.Form.Name, user, false); err == nil {
			code, err = a.store(ctx, d.Form, true)
		}
	default:
		code, err = http.StatusBadRequest, fmt.Errorf("op %q: want save or remove", f.Get("op"))
	}
	if err != nil {
		d.Error = err.Error()
		a.render(w, r, code, d)
		return
	}
	saved := d.Form.Name
	if f.Get("op") == "remove" {
		saved = ""
	}
	http.Redirect(w, r, "/filters?saved="+url.QueryEscape(saved), http.StatusSeeOther)
}

// store saves spec, or removes it.
func (a *API) store(ctx context.Context, spec Spec, remove bool) (int, error) {
	cl, err := a.client()
	if err == nil {
		if remove {
			err = Remove(ctx, cl, a.topic, spec.Name)
		} else {
			err = Save(ctx, cl, a.topic, a.compiler, spec)
		}
	}
	if err != nil {
		return http.StatusServiceUnavailable, err
	}
	return http.StatusOK, nil
}

// sameSite refuses a form posted from another site (cross-site request
// forgery: a browser would add the user's cached credentials): the
// request's Origin, or without one its Referer, must be this host.
func sameSite(r *http.Request) error {
	from := r.Header.Get("Origin")
	if from == "" || from == "null" {
		from = r.Header.Get("Referer")
	}
	u, err := url.Parse(from)
	if from == "" || err != nil || u.Host != r.Host {
		return errors.New("a filter is saved from this site's /filters page (the request's Origin is not this host)")
	}
	return nil
}

var pageTmpl = template.Must(template.New("filters").Funcs(template.FuncMap{
	"band": func(fid int) string {
		if b, ok := map[int]string{1: "g", 2: "r", 3: "i"}[fid]; ok {
			return b
		}
		return fmt.Sprint(fid)
	},
	"jdtime": func(jd float64) string {
		return time.UnixMilli(int64((jd - 2440587.5) * 86400e3)).UTC().Format("2006-01-02 15:04:05")
	},
	"state": func(s Spec) string {
		switch {
		case s.Paused:
			return "paused: " + s.Reason
		case s.backfilling():
			return "backfilling"
		}
		return "running"
	},
	"lines": func(s string) int { return min(max(strings.Count(s, "\n")+2, 3), 12) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Filters · ztfbroker</title>
<style>
body { font-family: sans-serif; margin: 1.5em 2em; color: #222; }
nav a { margin-right: 1.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 0.15em 1em 0.15em 0; text-align: left; font-size: 0.92em; vertical-align: top; }
th { border-bottom: 1px solid #999; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.err { color: #b00; white-space: pre-wrap; }
.ok { color: #070; }
label { display: block; margin: 0.4em 0 0.1em; }
textarea, input[type=text] { font-family: monospace; width: 60em; max-width: 95%; }
code { font-size: 0.9em; }
</style>
</head>
<body>
<nav><a href="/">Status</a><a href="/search">Search</a><a href="/filters">Filters</a><a href="/pages">All pages</a></nav>
<h1>Filters</h1>
<p>A filter is a <a href="https://cel.dev">CEL</a> expression over an alert's fields (<code>candidate.*</code>, <code>prv_candidates</code>,
<code>fp_hists</code>, the cutouts) with the helpers <code>angdist</code>, <code>cone(ra, dec, radius_arcsec)</code>, <code>ndet()</code>,
<code>days_since_first()</code> and <code>mag_rate()</code>. Its matches are the topic <code>filter_&lt;name&gt;</code>, which any Kafka client reads.</p>
<p id="user">{{if .User}}Signed in as <b>{{.User}}</b>.{{else}}Not signed in: you may check and preview over the public stream; <a href="/filters?login=1">sign in</a> to save.{{end}}</p>
{{if .Saved}}<p class="ok" id="saved">Saved {{.Saved}}: its matches go to <code>filter_{{.Saved}}</code>.</p>{{end}}
<form method="get" action="/filters" id="write">
<label for="name">Name</label><input type="text" id="name" name="name" value="{{.Form.Name}}" placeholder="young_bright">
<label for="topics">Source topics (a glob)</label><input type="text" id="topics" name="topics" value="{{.Form.Topics}}">
<label for="expr">Expression</label>
<textarea id="expr" name="expr" rows="{{lines .Form.Expression}}" placeholder="candidate.rb > 0.65 &amp;&amp; candidate.magpsf &lt; 18.5 &amp;&amp; candidate.isdiffpos in ['t', '1']">{{.Form.Expression}}</textarea>
<label for="since">Preview over the last</label><input type="text" id="since" name="since" value="{{or .Since "1h"}}" style="width:6em">
<label>Output <select name="format"><option value="alert"{{if ne .Form.Format "summary"}} selected{{end}}>the alerts as received</option>
<option value="summary"{{if eq .Form.Format "summary"}} selected{{end}}>a short JSON summary</option></select>
starting <select name="start"><option value="now">with the next alert</option>
<option value="earliest"{{if eq .Form.Start "earliest"}} selected{{end}}>with the earliest retained alert</option></select></label>
<p><button name="action" value="check">Check</button> <button name="action" value="preview">Preview</button></p>
</form>
{{if .Error}}<pre class="err" id="error">{{.Error}}</pre>{{end}}
{{with .Checked}}<p class="ok" id="checked">The expression compiles; its worst case costs {{.Cost}}{{if .Cutouts}} (it decodes the cutouts){{end}}.</p>{{end}}
{{with .Preview}}<p id="preview">Over the last {{$.Since}} (since {{.Since.Format "2006-01-02 15:04:05"}} UTC) of <code>{{.Topics}}</code>:
<span id="preview-matches">{{.Matches}}</span> of <span id="preview-alerts">{{.Alerts}}</span> alerts match;
{{.Errors}} errors; {{.Unread}} records not read as alerts.{{if .Truncated}} The preview stopped early (its time or alert limit).{{end}}</p>
{{if .Shown}}<table id="matches"><thead><tr><th>objectId</th><th>candid</th><th>time (UTC)</th><th>band</th><th>magpsf</th><th>ra</th><th>dec</th></tr></thead><tbody>
{{range .Shown}}<tr class="match"><td><a href="/objects/{{.ObjectID}}?candid={{.Candid}}">{{.ObjectID}}</a></td><td>{{.Candid}}</td><td>{{jdtime .JD}}</td>
<td>{{band .Fid}}</td><td class="num">{{printf "%.2f" .Magpsf}}</td><td class="num">{{printf "%.5f" .RA}}</td><td class="num">{{printf "%.5f" .Dec}}</td></tr>
{{end}}</tbody></table>{{end}}{{end}}
{{if and .Checked .User}}<form method="post" action="/filters" id="save">
<input type="hidden" name="op" value="save"><input type="hidden" name="name" value="{{.Form.Name}}">
<input type="hidden" name="topics" value="{{.Form.Topics}}"><input type="hidden" name="expr" value="{{.Form.Expression}}">
<input type="hidden" name="format" value="{{.Form.Format}}"><input type="hidden" name="start" value="{{.Form.Start}}">
<p><button>Save {{or .Form.Name "(give it a name)"}}</button></p></form>{{end}}
<h2>Your filters</h2>
{{if .ListErr}}<p class="err">{{.ListErr}}</p>{{end}}
<table id="filters"><thead><tr><th>Name</th><th>Topics</th><th>Output</th><th>State</th><th>Expression</th><th></th></tr></thead><tbody>
{{range .Filters}}<tr class="filter"><td><code>{{.Name}}</code></td><td><code>{{.Topics}}</code></td><td><code>{{.Topic}}</code>{{if eq .Format "summary"}} (summary){{end}}</td>
<td>{{state .}}</td><td><code>{{.Expression}}</code></td>
<td>{{if $.User}}<form method="post" action="/filters"><input type="hidden" name="op" value="remove"><input type="hidden" name="name" value="{{.Name}}"><button>Remove</button></form>{{end}}</td></tr>
{{else}}<tr><td colspan="6">None yet.</td></tr>
{{end}}</tbody></table>
</body>
</html>
`))
