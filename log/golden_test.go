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
	for _, name := range names {
		got, _ := fsys.Bytes("/g/t-0/" + name)
		golden := filepath.Join("testdata", "golden", name)
		if *update {
			os.MkdirAll(filepath.Dir(golden), 0o755)
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s: the on-disk format changed", name, golden)
		}
	}
	// The golden files themselves open and verify.
	if err := Verify(filepath.Join("testdata", "golden")); err != nil {
		t.Fatal(err)
	}
}
