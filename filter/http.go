package filter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Route is one HTTP route of the filters API, with the fields of the web
// server's routes (this package does not import it).
type Route struct {
	Pattern string
	Handler http.Handler
	Title   string
}

// maxRequestBytes bounds a request body of the API.
const maxRequestBytes = 64 << 10

// API manages filters over HTTP for the users of the web server: a user
// (HTTP basic authentication, the Kafka users' own credentials) lists,
// checks, saves and removes its own filters; the owner of a filter saved
// here is the user who saved it.
//
//	GET    /api/filters              the user's filters, JSON
//	POST   /api/filters/check        {"expression": ...}: compiled, or the error with its column
//	POST   /api/filters              {"name", "topics", "expression", "format"}: saved
//	DELETE /api/filters/{name}       removed
//	POST   /api/filters/preview      {"topics", "expression", "since"}: the matches over the last hour (since: up to 24h)
//
// and the page /filters (page.go).
type API struct {
	// MayRead, when set, says whether user ("" for an anonymous
	// request) may read topic: a preview reads only those.
	MayRead func(user, topic string) bool

	compiler *Compiler
	topic    string
	opts     []kgo.Opt
	user     func(*http.Request) string

	// lists bounds the reads of the filters topic running at once: each
	// opens its own clients, and anyone may ask.
	lists chan struct{}
	// previews bounds the previews running at once (each reads up to
	// maxPreviewAlerts alerts).
	previews chan struct{}

	mu sync.Mutex
	cl *kgo.Client // made at the first save: the broker serves after the routes are made
}

// maxConcurrentLists is how many requests read the filters topic at once;
// more wait for a turn within their own time limit.
const maxConcurrentLists = 4

// NewAPI returns the API storing filters in cfg.SpecTopic through a client
// made with opts; user names a request's authenticated user ("" for none).
func NewAPI(cfg Config, user func(*http.Request) string, opts ...kgo.Opt) (*API, error) {
	c, err := NewCompiler(uint64(cfg.CostLimit))
	if err != nil {
		return nil, err
	}
	if len(cfg.Bootstrap) > 0 {
		opts = append([]kgo.Opt{kgo.SeedBrokers(cfg.Bootstrap...)}, opts...)
	}
	return &API{compiler: c, topic: cfg.SpecTopic, opts: opts, user: user,
		lists: make(chan struct{}, maxConcurrentLists), previews: make(chan struct{}, maxConcurrentPreviews)}, nil
}

// Close closes the API's client.
func (a *API) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cl != nil {
		a.cl.Close()
		a.cl = nil
	}
}

// Routes are the API's routes: GET is for anyone (an anonymous request
// sees ANONYMOUS's filters), the others need a user.
func (a *API) Routes() []Route {
	return []Route{
		{Pattern: "GET /filters", Handler: http.HandlerFunc(a.page), Title: "Filters: write, check, preview and save yours"},
		{Pattern: "POST /filters", Handler: http.HandlerFunc(a.post)},
		{Pattern: "GET /api/filters", Handler: http.HandlerFunc(a.list), Title: "Filters: yours, as JSON (POST to save, DELETE /api/filters/{name})"},
		{Pattern: "POST /api/filters/check", Handler: http.HandlerFunc(a.check)},
		{Pattern: "POST /api/filters/preview", Handler: http.HandlerFunc(a.preview)},
		{Pattern: "POST /api/filters", Handler: http.HandlerFunc(a.save)},
		{Pattern: "DELETE /api/filters/{name}", Handler: http.HandlerFunc(a.remove)},
	}
}

func (a *API) owner(r *http.Request) string {
	if u := a.user(r); u != "" {
		return u
	}
	return "ANONYMOUS"
}

func (a *API) specs(ctx context.Context) ([]Spec, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case a.lists <- struct{}{}:
		defer func() { <-a.lists }()
	case <-ctx.Done():
		return nil, fmt.Errorf("filter: waiting to read %s: %w", a.topic, ctx.Err())
	}
	return List(ctx, a.topic, a.opts...)
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	specs, err := a.specs(r.Context())
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err)
		return
	}
	mine := []Spec{}
	for _, s := range specs {
		if s.Owner == a.owner(r) {
			mine = append(mine, s)
		}
	}
	writeJSON(w, http.StatusOK, mine)
}

func (a *API) check(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Expression string `json:"expression"`
	}
	if err := readJSON(r, &body); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	e, err := a.compiler.Compile(body.Expression)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "cost": e.Cost, "cutouts": e.Cutouts})
}

func (a *API) preview(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Topics     string `json:"topics"`
		Expression string `json:"expression"`
		Since      string `json:"since"`
	}
	if err := readJSON(r, &body); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	if body.Topics == "" {
		body.Topics = "ztf_*_programid1"
	}
	e, since, err := a.previewQuery(body.Topics, body.Expression, body.Since)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	ans, err := a.runPreview(r.Context(), a.user(r), body.Topics, e, since)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

func (a *API) save(w http.ResponseWriter, r *http.Request) {
	var s Spec
	if err := readJSON(r, &s); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	s.Owner, s.Paused, s.Reason = a.user(r), false, ""
	if s.Owner == "" {
		httpError(w, http.StatusUnauthorized, errors.New("saving a filter needs a user"))
		return
	}
	if err := s.Validate(a.compiler); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	if code, err := a.mayChange(r.Context(), s.Name, s.Owner, true); err != nil {
		httpError(w, code, err)
		return
	}
	cl, err := a.client()
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		err = Save(ctx, cl, a.topic, a.compiler, s)
	}
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusCreated, s)
}

func (a *API) remove(w http.ResponseWriter, r *http.Request) {
	name, user := r.PathValue("name"), a.user(r)
	if user == "" {
		httpError(w, http.StatusUnauthorized, errors.New("removing a filter needs a user"))
		return
	}
	if code, err := a.mayChange(r.Context(), name, user, false); err != nil {
		httpError(w, code, err)
		return
	}
	cl, err := a.client()
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		err = Remove(ctx, cl, a.topic, name)
	}
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// mayChange refuses a filter of another owner (409 on save, 404 on
// remove, which also answers a name that does not exist).
func (a *API) mayChange(ctx context.Context, name, user string, saving bool) (int, error) {
	specs, err := a.specs(ctx)
	if err != nil {
		return http.StatusServiceUnavailable, err
	}
	for _, s := range specs {
		if s.Name != name {
			continue
		}
		if s.Owner == user {
			return 0, nil
		}
		if saving {
			return http.StatusConflict, fmt.Errorf("filter %s belongs to another user", name)
		}
		break
	}
	if saving {
		return 0, nil
	}
	return http.StatusNotFound, fmt.Errorf("no filter %s of yours", name)
}

func (a *API) client() (*kgo.Client, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cl == nil {
		cl, err := kgo.NewClient(a.opts...)
		if err != nil {
			return nil, err
		}
		a.cl = cl
	}
	return a.cl, nil
}

func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxRequestBytes {
		return fmt.Errorf("request over %d bytes", maxRequestBytes)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}

func httpError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
