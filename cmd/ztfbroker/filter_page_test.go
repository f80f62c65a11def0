package main

import (
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestFiltersPage: the filters page of the portal, as a browser uses it.
// Over a replay of the sample alerts: a type-wrong expression is answered
// with its column; a preview over the last hour counts every alert of the
// topics the user may read (anonymous: the public ones only) and lists
// the matches, rendered in headless Chromium; a signed-in user saves a
// filter from the page, which the runner then runs, and removes it; a
// form posted from another site, or anonymously, is refused.
func TestFiltersPage(t *testing.T) {
	b, call := startWithBob(t)
	if out, err := runBinary(t, "acl", "add", "--bootstrap", b.Kafka, "--principal", "User:bob", "--operation", "READ",
		"--topic", "ztf_", "--prefixed"); err != nil {
		t.Fatalf("acl add: %v\n%s", err, out)
	}
	samples := "../../../shared/data/ztf/alerts"
	state := t.TempDir()
	if out, err := runBinary(t, "package", "--bootstrap", b.Kafka, "--history", filepath.Join(state, "h"),
		"--rejects", filepath.Join(state, "r"), "--replay", filepath.Join(samples, "ztf-avro-alert"), filepath.Join(samples, "other-sources")); err != nil {
		t.Fatalf("package --replay: %v\n%s", err, out)
	}
	// What the preview must count: every alert of the topics each may read.
	adm := kadm.NewClient(newClient(t, b.Kafka))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tds, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, tds.Names()...)
	if err != nil {
		t.Fatal(err)
	}
	var public, all int64
	ends.Each(func(o kadm.ListedOffset) {
		if strings.HasPrefix(o.Topic, "ztf_") {
			all += o.Offset
			if strings.HasSuffix(o.Topic, "_programid1") {
				public += o.Offset
			}
		}
	})
	if public == 0 || all == public {
		t.Fatalf("the replay made %d public alerts of %d: the test needs both kinds", public, all)
	}

	get := func(user, query string) (int, string) {
		t.Helper()
		return call("GET", "/filters?"+query, user, "")
	}
	form := func(action, expr string) string {
		return url.Values{"action": {action}, "name": {"pagetest"}, "topics": {"ztf_*"}, "expr": {expr}, "since": {"1h"}}.Encode()
	}
	count := func(page, id string) int64 {
		m := regexp.MustCompile(`id="` + id + `">(\d+)<`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no %s on the page:\n%s", id, page)
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n
	}

	if code, page := get("", form("check", "candidate.magpsf + 'x' > 1.0")); code != 400 || !strings.Contains(page, "1:18") || !strings.Contains(page, `id="error"`) {
		t.Errorf("check of a type-wrong expression: %d\n%s", code, page)
	}
	code, page := get("", form("preview", "candidate.magpsf < 99.0"))
	if code != 200 || count(page, "preview-alerts") != public || count(page, "preview-matches") != public {
		t.Errorf("anonymous preview: %d, want %d alerts and matches (the public topics)\n%s", code, public, page)
	}
	if strings.Contains(page, `id="save"`) {
		t.Error("an anonymous page offers to save")
	}
	code, page = get("bob", form("preview", "candidate.magpsf < 99.0"))
	if code != 200 || count(page, "preview-alerts") != all || strings.Count(page, `class="match"`) != int(min(all, 100)) {
		t.Errorf("bob's preview: %d, want %d alerts listed\n%s", code, all, page)
	}
	if !strings.Contains(page, `id="save"`) {
		t.Error("bob's checked filter has no save form")
	}

	// The same over the JSON API.
	code, out := call("POST", "/api/filters/preview", "bob", `{"topics": "ztf_*", "expression": "candidate.magpsf < 99.0", "since": "1h"}`)
	var ans struct{ Alerts, Matches int64 }
	if err := json.Unmarshal([]byte(out), &ans); code != 200 || err != nil || ans.Alerts != all || ans.Matches != all {
		t.Errorf("POST /api/filters/preview: %d %s, want %d alerts and matches", code, out, all)
	}

	// In a browser: the preview's table is there.
	shots := t.TempDir() // kept in testdata/portal with ZTFBROKER_UPDATE_SCREENSHOTS=1, as checkPages does
	if os.Getenv("ZTFBROKER_UPDATE_SCREENSHOTS") != "" {
		shots = filepath.Join("testdata", "portal")
	}
	u := "http://" + b.HTTP + "/filters?" + form("preview", "candidate.magpsf < 99.0")
	dom := runTool(t, ctx, nil, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
		"--window-size=900,1000", "--screenshot="+filepath.Join(shots, "filters.png"), "--dump-dom", u)
	if count(string(dom), "preview-matches") != public || !strings.Contains(string(dom), `<table id="matches">`) {
		t.Errorf("the page in Chromium:\n%s", dom)
	}
	if f, err := os.Open(filepath.Join(shots, "filters.png")); err != nil {
		t.Error(err)
	} else if cfg, err := png.DecodeConfig(f); err != nil || cfg.Width != 900 {
		t.Errorf("screenshot: %v %v", cfg, err)
	}

	post := func(user, origin string, v url.Values) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+b.HTTP+"/filters", strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if user != "" {
			req.SetBasicAuth(user, "bobs-password")
		}
		resp, err := http.DefaultTransport.RoundTrip(req) // no redirects followed
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	save := url.Values{"op": {"save"}, "name": {"pagetest"}, "topics": {"ztf_*_programid1"}, "expr": {"candidate.magpsf < 99.0"}, "start": {"earliest"}}
	if code, out := post("bob", "http://evil.example", save); code != 403 {
		t.Errorf("a form from another site: %d %s", code, out)
	}
	if code, out := post("", "http://"+b.HTTP, save); code != 401 {
		t.Errorf("an anonymous save: %d %s", code, out)
	}
	if code, out := post("bob", "http://"+b.HTTP, url.Values{"op": {"save"}, "name": {"bad"}, "topics": {"ztf_*"}, "expr": {"candidate.nope"}}); code != 400 || !strings.Contains(out, "undefined field") {
		t.Errorf("saving a wrong expression: %d %s", code, out)
	}
	if code, out := post("bob", "http://"+b.HTTP, save); code != 303 {
		t.Fatalf("save from the page: %d %s", code, out)
	}
	code, page = get("bob", "saved=pagetest")
	if code != 200 || !strings.Contains(page, `id="saved"`) || !strings.Contains(page, "<code>filter_pagetest</code>") {
		t.Errorf("after the save: %d\n%s", code, page)
	}
	// The runner runs it: its backfill copies every public alert.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		o, err := adm.ListEndOffsets(ctx, "filter_pagetest")
		if n, ok := o.Lookup("filter_pagetest", 0); err == nil && ok && n.Offset == public {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("filter_pagetest did not reach %d matches in 30 s: %v\n%s", public, o, b.Logs())
		}
	}
	if code, out := post("bob", "http://"+b.HTTP, url.Values{"op": {"remove"}, "name": {"pagetest"}}); code != 303 {
		t.Errorf("remove from the page: %d %s", code, out)
	}
	if _, page := get("bob", ""); strings.Contains(page, "<code>pagetest</code>") {
		t.Errorf("removed, still listed:\n%s", page)
	}
}
