package log

import (
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Verify only reads: it closes every file it opens (it once leaked two per
// segment), and a missing index is reported, not recreated.
func TestVerifyOnlyReads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	l := openT(t, nil, dir, Config{SegmentBytes: 1000, IndexIntervalBytes: 200, Flush: FlushInterval, FlushInterval: time.Hour})
	rng := rand.New(rand.NewSource(3))
	for i := 0; l.Segments() < 20; i++ {
		mustAppend(t, l, testBatch(rng, i, int64(i)))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	openFDs(t) // the first look may open the runtime's poller
	before := openFDs(t)
	if err := Verify(dir); err != nil {
		t.Fatalf("verify a clean log: %v", err)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d open files after Verify, %d before", after, before)
	}

	// Take away two indexes, and date every file in the past so that a
	// write would show.
	idx := filepath.Join(dir, segmentName(0)+indexSuffix)
	_, _, tidx := segmentPaths(dir, lastSegmentBase(t, dir))
	for _, p := range []string{idx, tidx} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	for name := range fileStates(t, dir) {
		if err := os.Chtimes(filepath.Join(dir, name), past, past); err != nil {
			t.Fatal(err)
		}
	}
	files := fileStates(t, dir)
	before = openFDs(t)
	err := Verify(dir)
	for _, p := range []string{idx, tidx} {
		if err == nil || !strings.Contains(err.Error(), p+": missing") {
			t.Errorf("Verify: %v, want it to report %s missing", err, p)
		}
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d open files after Verify, %d before", after, before)
	}
	now := fileStates(t, dir)
	for name, st := range files {
		if now[name] != st {
			t.Errorf("%s changed: %+v, was %+v", name, now[name], st)
		}
	}
	for name := range now {
		if _, ok := files[name]; !ok {
			t.Errorf("Verify created %s", name)
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

type fileState struct {
	size  int64
	mtime time.Time
}

func fileStates(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]fileState{}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fileState{info.Size(), info.ModTime()}
	}
	return out
}

func lastSegmentBase(t *testing.T, dir string) int64 {
	t.Helper()
	names, err := OSFS{}.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	last := int64(-1)
	for _, name := range names {
		if base, ok := parseSegmentName(name); ok {
			last = max(last, base)
		}
	}
	return last
}
