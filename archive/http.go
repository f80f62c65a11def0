package archive

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Route is one of the archive's pages: a Go 1.22 ServeMux pattern, its
// handler, and a title for a page index (empty: not listed). It has the
// fields of web.Route, so the wiring converts one into the other.
type Route struct {
	Pattern string
	Handler http.Handler
	Title   string
}

// Routes serve dir/public and dir/partnership at /alerts/public/ and
// /alerts/partnership/: an HTML listing like ZTF's (name, last modified,
// size, newest night first), the same as JSON with ?format=json, and the
// archives themselves with Range and If-Range support, so a 9 GB download
// can resume. Only finished archives are listed or served.
func Routes(dir string, logger *zap.Logger) []Route {
	if logger == nil {
		logger = zap.NewNop()
	}
	h := &handler{dir: dir, log: logger}
	return []Route{
		{Pattern: "GET /alerts/{$}", Handler: http.HandlerFunc(h.root), Title: "Nightly alert archives"},
		{Pattern: "GET /alerts/{program}", Handler: http.HandlerFunc(h.folder)},
		{Pattern: "GET /alerts/{program}/{$}", Handler: http.HandlerFunc(h.listing)},
		{Pattern: "GET /alerts/{program}/{name}", Handler: http.HandlerFunc(h.file)},
	}
}

// NewHandler is Routes on a ServeMux of their own, for serving the archive
// alone (tests, a plain file host).
func NewHandler(dir string, logger *zap.Logger) http.Handler {
	mux := http.NewServeMux()
	for _, r := range Routes(dir, logger) {
		mux.Handle(r.Pattern, r.Handler)
	}
	return mux
}

type handler struct {
	dir string
	log *zap.Logger
}

// Entry is one archive in a listing.
type Entry struct {
	Name     string    `json:"name"`
	Night    string    `json:"night"`
	Program  int       `json:"programid"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"last_modified"`
	URL      string    `json:"url"`
}

// program is the {program} of the request's path: public or partnership.
func program(r *http.Request) (Program, bool) { return ParseProgram(r.PathValue("program")) }

// folder sends /alerts/public to /alerts/public/ for good, as a file
// server does for a folder.
func (h *handler) folder(w http.ResponseWriter, r *http.Request) {
	p, ok := program(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.Redirect(w, r, "/alerts/"+p.Name()+"/", http.StatusMovedPermanently)
}

func (h *handler) root(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprint(w, `<!DOCTYPE html><html><head><title>Index of /alerts</title></head><body><h1>Index of /alerts</h1>`+
		`<ul><li><a href="public/">public/</a></li><li><a href="partnership/">partnership/</a></li></ul></body></html>`)
}

// List is the finished archives of a program in dir, newest night first.
func List(dir string, p Program) ([]Entry, error) {
	des, err := os.ReadDir(filepath.Join(dir, p.Name()))
	if errors.Is(err, fs.ErrNotExist) {
		return []Entry{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []Entry{}
	for _, de := range des {
		n, fp, err := ParseFileName(de.Name())
		if err != nil || fp != p || !de.Type().IsRegular() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		out = append(out, Entry{
			Name: de.Name(), Night: n.String(), Program: int(p), Size: info.Size(),
			Modified: info.ModTime().UTC().Truncate(time.Second), URL: "/alerts/" + p.Name() + "/" + de.Name(),
		})
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(b.Night, a.Night) })
	return out, nil
}

func (h *handler) listing(w http.ResponseWriter, r *http.Request) {
	p, ok := program(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	entries, err := List(h.dir, p)
	if err != nil {
		h.log.Error("archive listing", zap.Error(err))
		http.Error(w, "cannot read the archive folder", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(entries)
		return
	}
	var total int64
	for _, e := range entries {
		total += e.Size
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	err = listingTmpl.Execute(w, map[string]any{
		"Path": "/alerts/" + p.Name() + "/", "Entries": entries, "Total": humanSize(total),
	})
	if err != nil {
		h.log.Debug("archive listing write", zap.Error(err))
	}
}

func (h *handler) file(w http.ResponseWriter, r *http.Request) {
	p, ok := program(r)
	name := r.PathValue("name")
	if _, fp, err := ParseFileName(name); !ok || err != nil || fp != p {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(h.dir, p.Name(), name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	// A strong validator, so If-Range works: a rebuilt night has a new
	// size or time, and a resumed download then starts over.
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, info.Size(), info.ModTime().UnixNano()))
	w.Header().Set("Content-Type", "application/gzip")
	// A night is gigabytes: lift the server's read deadline and move the
	// write deadline with progress, or a slow link would be cut off
	// mid-archive; a client that stops reading is cut off after
	// downloadStall, so that it does not hold a descriptor for good.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	http.ServeContent(&progressWriter{ResponseWriter: w, rc: rc}, r, name, info.ModTime(), f)
}

// downloadStall is how long an archive download may go without a byte
// taken by the client.
const downloadStall = time.Minute

// progressWriter moves the write deadline downloadStall ahead before every
// write (ServeContent writes 32 KiB at a time).
type progressWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (p *progressWriter) Write(b []byte) (int, error) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(downloadStall))
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// humanSize is Apache's autoindex size: 44, 1.2K, 115M, 2.3G.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d", n)
	}
	f := float64(n)
	for _, u := range []string{"K", "M", "G", "T"} {
		f /= 1024
		if f < 1024 || u == "T" {
			if f < 10 {
				return fmt.Sprintf("%.1f%s", f, u)
			}
			return fmt.Sprintf("%.0f%s", f, u)
		}
	}
	return ""
}

var listingTmpl = template.Must(template.New("listing").Funcs(template.FuncMap{
	"human": humanSize,
	"date":  func(t time.Time) string { return t.Format("2006-01-02 15:04") },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Index of {{.Path}}</title>
<style>
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; }
th, td { padding: 0.2em 1.5em 0.2em 0; text-align: left; }
td.size, th.size { text-align: right; }
tr:hover td { background: #eef; }
</style>
</head>
<body>
<h1>Index of {{.Path}}</h1>
<table id="listing">
<thead><tr><th>Name</th><th>Last modified</th><th class="size">Size</th></tr></thead>
<tbody>
<tr><td colspan="3"><a href="../">Parent Directory</a></td></tr>
{{- range .Entries}}
<tr class="archive"><td class="name"><a href="{{.Name}}">{{.Name}}</a></td><td class="modified">{{date .Modified}}</td><td class="size" title="{{.Size}} bytes" data-bytes="{{.Size}}">{{human .Size}}</td></tr>
{{- end}}
</tbody>
</table>
<p>{{len .Entries}} nights, {{.Total}} in all. <a href="?format=json">JSON</a></p>
</body>
</html>
`))
