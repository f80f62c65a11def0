package log

import (
	"bytes"
	"flag"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current code")

// The on-disk format is pinned by golden files: a change to the bytes of a
// segment or of its indexes must be deliberate (go test -run Golden -update).
func TestGoldenFormat(t *testing.T) {
	fsys := NewCrashFS()
	cfg := Config{SegmentBytes: 1500, IndexIntervalBytes: 200, LeaderEpoch: 3}
	l := openT(t, fsys, "/g/t-0", cfg)
	rng := rand.New(rand.NewSource(42))
	for i := 0; i < 8; i++ {
		mustAppend(t, l, makeBatch(rng, 1+i%3, 1_700_000_000_000+int64(i*1000-(i%2)*3000), 50+i*20))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := fsys.ReadDir("/g/t-0")
	if len(names) < 6 {
		t.Fatalf("want two segments, got %v", names)
	}
	checkGolden(t, fsys, "/g/t-0", filepath.Join("testdata", "golden"))
}

// checkGolden compares every file of dir in fsys with its copy under
// golden (or, under -update, writes it there); the golden files
// themselves then open and verify.
func checkGolden(t *testing.T, fsys *CrashFS, dir, golden string) {
	t.Helper()
	names, _ := fsys.ReadDir(dir)
	for _, name := range names {
		got, _ := fsys.Bytes(dir + "/" + name)
		path := filepath.Join(golden, name)
		if *update {
			os.MkdirAll(golden, 0o755)
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s: the on-disk format changed", name, path)
		}
	}
	if err := Verify(golden); err != nil {
		t.Fatal(err)
	}
}
