// The house rules of ../shared/STYLE.md that a machine can check: which
// package may import which (imports point down the table, log is the floor),
// that the ztfbroker binary does not carry test fakes, and that files stay
// small. One table for the whole module, so a new package is one new row.
package ztfbroker_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/ztfbroker/ztfbroker"

// any means the package may import every other package of the project.
var anyPackage = []string{"*"}

// allowedImports is the house table: each package of the module and the
// packages of the project it may import directly (not counting itself).
var allowedImports = map[string][]string{
	"durable":             {},
	"log":                 {"durable"},
	"protocol":            {},
	"broker":              {"log", "durable"},
	"avrofile":            {},
	"packager":            {"avrofile"},
	"archive":             {"avrofile", "durable"},
	"alertcat":            {"avrofile"},
	"mirror":              {"alertcat"},
	"alertindex":          {"avrofile"},
	"portal":              {"alertcat", "alertindex", "avrofile"},
	"mirror/mm2":          {}, // tests only: Kafka's MirrorMaker 2 between two ztfbroker processes
	"web":                 {},
	"filter":              {"avrofile", "packager"},
	"bench":               anyPackage,
	"bench/kfakeserve":    {},
	"cmd/ztfbroker":       anyPackage,
	"configs":             {}, // tests only: the operator's kit against promtool, Prometheus, systemd-analyze
	"internal/binarytest": {}, // tests only: the binary built once for end-to-end tests
	"scripts/write-floor": {}, // vs-kafka.sh: what storing bytes in the page cache costs, with no broker
	"":                    {}, // this test's own package at the module root
}

// forbiddenDeps are modules a package must not link, even indirectly.
var forbiddenDeps = map[string][]string{
	// A test fake has no place in the production binary: bench runs
	// kfake as its own command (bench/kfakeserve).
	"cmd/ztfbroker": {"github.com/twmb/franz-go/pkg/kfake"},
}

// maxFileLines bounds a source file: one job per file (STYLE.md, 12).
const maxFileLines = 1000

type goPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Dir        string
	GoFiles    []string
}

func listPackages(t *testing.T) []goPackage {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to list imports: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	return pkgs
}

func TestHouseImports(t *testing.T) {
	for _, p := range listPackages(t) {
		name := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		allowed, known := allowedImports[name]
		if !known {
			t.Errorf("package %s has no row in the house table (allowedImports): say what it may import", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			dep, internal := strings.CutPrefix(imp, module+"/")
			if !internal || slices.Equal(allowed, anyPackage) {
				continue
			}
			if !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s: the house table allows only %v", name, dep, allowed)
			}
		}
		for _, bad := range forbiddenDeps[name] {
			for _, d := range p.Deps {
				if d == bad || strings.HasPrefix(d, bad+"/") {
					t.Errorf("%s links %s", name, d)
				}
			}
		}
	}
}

func TestHouseFileSize(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			fh, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for s := bufio.NewScanner(fh); s.Scan(); {
				n++
			}
			fh.Close()
			if n > maxFileLines {
				t.Errorf("%s has %d lines (over %d): split it by job", path, n, maxFileLines)
			}
		}
	}
}
