package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFiltersDeclared: filters written in serve's configuration are
// stored at start and run; changed in the file, they change; taken out,
// they are removed, while a filter saved with `filter add` stays; a
// type-wrong declared expression stops serve at start with the filter and
// the column named.
func TestFiltersDeclared(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	config := func(name, filters string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("filters:\n"+filters), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	list := func(b *serveProc, want ...string) string {
		t.Helper()
		var out string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			var err error
			out, err = runBinary(t, "filter", "list", "--bootstrap", b.Kafka)
			ok := err == nil
			for _, w := range want {
				ok = ok && strings.Contains(out, w)
			}
			if ok {
				return out
			}
		}
		t.Fatalf("filter list does not show %q in 20 s:\n%s\n%s", want, out, b.Logs())
		return ""
	}
	first := config("a.yaml", `  - name: decl_bright
    topics: ztf_*_programid1
    expression: candidate.magpsf < 18.5
  - name: decl_alice
    owner: alice
    topics: ztf_*
    format: summary
    expression: ndet() >= 3
`)
	b := startBroker(t, dataDir, "--config", first)
	if out := list(b, "decl_bright", "decl_alice", "candidate.magpsf < 18.5"); !regexp.MustCompile(`decl_alice +alice +ztf_\* +summary`).MatchString(out) {
		t.Errorf("decl_alice is not alice's summary filter:\n%s", out)
	}
	if out, err := runBinary(t, "filter", "add", "--bootstrap", b.Kafka, "other", "--topics", "ztf_*", "--expr", "candidate.rb > 0.9"); err != nil {
		t.Fatalf("filter add: %v\n%s", err, out)
	}
	b.Stop()

	second := config("b.yaml", `  - name: decl_bright
    topics: ztf_*_programid1
    expression: candidate.magpsf < 17.0
`)
	b = startBroker(t, dataDir, "--config", second)
	out := list(b, "candidate.magpsf < 17.0", "other")
	if strings.Contains(out, "decl_alice") || strings.Contains(out, "< 18.5") {
		t.Errorf("the file's changes did not take:\n%s", out)
	}
	b.Stop()

	bad := config("c.yaml", `  - name: decl_bad
    topics: ztf_*
    expression: candidate.magpsf + 'x' > 1.0
`)
	out, err := runBinary(t, "serve", "--config", bad, "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, "filters[0] (decl_bad)") || !strings.Contains(out, "1:18") {
		t.Errorf("serve with a type-wrong declared filter: %v\n%s", err, out)
	}
}
