package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// archiveDir is an archive folder as serve has it: a real night in public/,
// filler nights around it, a run in progress that must not show.
func archiveDir(t *testing.T) (dir string, real string) {
	t.Helper()
	dir = t.TempDir()
	msgs := sampleMessages(t)
	topic := Topic(testNight, Public)
	c := newCluster(t, 2, topic)
	produce(t, c.ListenAddrs(), topic, 2, msgs, testNight.t)
	res, err := Build(context.Background(), Job{Bootstrap: c.ListenAddrs(), Night: testNight, Program: Public, OutDir: filepath.Join(dir, "public")})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"public/ztf_public_20260113.tar.gz", "public/ztf_public_20260116.tar.gz",
		"partnership/ztf_partnership_20260115.tar.gz", "public/.ztf_public_20260117.tar.gz.part", "public/notes.txt"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, 44+i*3000), 0o644); err != nil {
			t.Fatal(err)
		}
		mt := testNight.End().Add(time.Duration(i) * time.Hour)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	return dir, res.Path
}

func TestListingJSONAndFiles(t *testing.T) {
	dir, real := archiveDir(t)
	srv := httptest.NewServer(NewHandler(dir, nil))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/alerts/public/?format=json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	err = json.NewDecoder(resp.Body).Decode(&entries)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	want := "ztf_public_20260116.tar.gz ztf_public_20260115.tar.gz ztf_public_20260113.tar.gz"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("json listing %q, want %q (newest first, finished archives only)", got, want)
	}
	st, _ := os.Stat(real)
	if entries[1].Size != st.Size() || entries[1].Program != 1 || entries[1].Night != "20260115" ||
		entries[1].URL != "/alerts/public/ztf_public_20260115.tar.gz" {
		t.Fatalf("entry %+v", entries[1])
	}

	for path, code := range map[string]int{
		"/alerts/public":       http.StatusMovedPermanently,
		"/alerts/":             http.StatusOK,
		"/alerts/partnership/": http.StatusOK,
		"/alerts/public/ztf_public_20260115.tar.gz":       http.StatusOK,
		"/alerts/public/.ztf_public_20260117.tar.gz.part": http.StatusNotFound,
		"/alerts/public/notes.txt":                        http.StatusNotFound,
		"/alerts/public/ztf_partnership_20260115.tar.gz":  http.StatusNotFound,
		"/alerts/public/ztf_public_20260101.tar.gz":       http.StatusNotFound,
		// The mux cleans a path with dot segments and redirects to it;
		// an escaped one reaches the handler, which refuses it.
		"/alerts/public/../partnership/x":     http.StatusTemporaryRedirect,
		"/alerts/public/..%2fpartnership%2fx": http.StatusNotFound,
		"/alerts/other":                       http.StatusNotFound,
		"/alerts/other/":                      http.StatusNotFound,
	} {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, code)
		}
	}

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/alerts/public/", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	// If-Range: the same ETag resumes, a rebuilt night starts over.
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/alerts/public/ztf_public_20260115.tar.gz", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	for tag, code := range map[string]int{etag: http.StatusPartialContent, `"other"`: http.StatusOK} {
		req.Header.Set("Range", "bytes=100-")
		req.Header.Set("If-Range", tag)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("If-Range %s: %d, want %d", tag, resp.StatusCode, code)
		}
	}
}

// TestDownloadOutlivesServerTimeouts: a download read slowly for longer
// than the server's read and write timeouts arrives whole, since the file
// handler lifts both deadlines for its own response.
func TestDownloadOutlivesServerTimeouts(t *testing.T) {
	dir := t.TempDir()
	const size = 64 << 20 // more than loopback socket buffers hold
	name := "ztf_public_20260120.tar.gz"
	if err := os.MkdirAll(filepath.Join(dir, "public"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "public", name), bytes.Repeat([]byte{'x'}, size), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(NewHandler(dir, nil))
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	srv.Start()
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/alerts/public/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1024)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n+1024 != size {
		t.Fatalf("read %d of %d bytes after a pause: %v", n+1024, size, err)
	}
}

func TestRangeResumeWithCurl(t *testing.T) {
	dir, real := archiveDir(t)
	srv := httptest.NewServer(NewHandler(dir, nil))
	defer srv.Close()
	url := srv.URL + "/alerts/public/" + filepath.Base(real)
	out := filepath.Join(t.TempDir(), filepath.Base(real))
	// An interrupted download: the first 300,000 bytes only.
	mustRun(t, "", "curl", "-sS", "-f", "-r", "0-299999", "-o", out, url)
	if st, err := os.Stat(out); err != nil || st.Size() != 300000 {
		t.Fatalf("partial download: %v %v", st, err)
	}
	code := mustRun(t, "", "curl", "-sS", "-f", "-C", "-", "-o", out, "-w", "%{http_code}", url)
	if code != "206" {
		t.Fatalf("curl -C - got HTTP %s, want 206", code)
	}
	if fileSHA256(t, out) != fileSHA256(t, real) {
		t.Fatal("resumed download differs from the archive")
	}
	verifyArchive(t, out, sampleMessages(t))
}

func TestListingInChromium(t *testing.T) {
	dir, _ := archiveDir(t)
	srv := httptest.NewServer(NewHandler(dir, nil))
	defer srv.Close()
	url := srv.URL + "/alerts/public/"
	shot := filepath.Join(t.TempDir(), "listing.png")
	if p := os.Getenv("ARCHIVE_SCREENSHOT"); p != "" {
		shot = p
	}
	chromium := func(args ...string) string {
		t.Helper()
		path, err := exec.LookPath("chromium")
		if err != nil {
			t.Fatalf("chromium is needed for this test: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir(), "--window-size=900,500"}
		cmd := exec.CommandContext(ctx, path, append(append(base, args...), url)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return string(out)
	}
	dom := chromium("--dump-dom")
	rows := regexp.MustCompile(`<tr class="archive"><td class="name"><a href="([^"]+)">`).FindAllStringSubmatch(dom, -1)
	var names []string
	for _, r := range rows {
		names = append(names, r[1])
	}
	if got, want := strings.Join(names, " "), "ztf_public_20260116.tar.gz ztf_public_20260115.tar.gz ztf_public_20260113.tar.gz"; got != want {
		t.Fatalf("rows in the DOM %q, want %q\n%s", got, want, dom)
	}
	for _, want := range []string{"<title>Index of /alerts/public/</title>", "<th>Last modified</th>", `data-bytes="44">44</td>`,
		`<td class="modified">2026-01-16 01:00</td>`, `href="?format=json"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %q", want)
		}
	}
	chromium("--screenshot=" + shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 400 {
		t.Fatalf("screenshot is %v", b)
	}
	t.Logf("screenshot: %s", shot)
}
