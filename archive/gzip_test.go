package archive

import (
	"bytes"
	"compress/gzip"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// testInput is half random, half text, like an alert.
func testInput(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		if (i/5000)%2 == 0 {
			b[i] = byte(rng.Uint32())
		} else {
			b[i] = "the candid of the alert "[i%24]
		}
	}
	return b
}

func gzipAll(t *testing.T, in []byte, level, workers int, syncAt []int) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := newGzipWriter(&out, level, workers, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	prev := 0
	for _, at := range append(syncAt, len(in)) {
		if _, err := w.Write(in[prev:at]); err != nil {
			t.Fatal(err)
		}
		prev = at
		if at != len(in) {
			if _, n, err := w.Sync(); err != nil || n != int64(out.Len()) {
				t.Fatalf("sync: %d written, buffer %d, %v", n, out.Len(), err)
			}
		}
	}
	n, err := w.Close()
	if err != nil || n != int64(out.Len()) {
		t.Fatalf("close: %d, buffer %d, %v", n, out.Len(), err)
	}
	return out.Bytes()
}

func TestGzipRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		level   int
		workers int
		syncAt  []int
	}{
		{"empty", 0, 6, 2, nil},
		{"one byte", 1, 6, 2, nil},
		{"under window", gzWindowSize - 1, 6, 2, nil},
		{"one block", gzBlockSize, 6, 2, nil},
		{"block and a byte", gzBlockSize + 1, 1, 2, nil},
		{"several blocks", 3*gzBlockSize + 12345, 9, 3, nil},
		{"syncs", 3*gzBlockSize + 12345, 6, 2, []int{10, 40000, gzBlockSize + 7, 2 * gzBlockSize}},
		{"one worker", 2*gzBlockSize + 5, 6, 1, []int{100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(tc.size, uint64(tc.size))
			gz := gzipAll(t, in, tc.level, tc.workers, tc.syncAt)
			r, err := gzip.NewReader(bytes.NewReader(gz))
			if err != nil {
				t.Fatal(err)
			}
			r.Multistream(false) // one member, as promised
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("round trip: %d bytes back of %d, %v", len(got), len(in), err)
			}
			if _, err := r.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("after the member: %v", err)
			}
			if tc.size > 2*gzWindowSize && len(gz) > tc.size*7/10 {
				t.Errorf("%d -> %d bytes: the text half did not compress", tc.size, len(gz))
			}
		})
	}
	// GNU gzip agrees.
	in := testInput(2*gzBlockSize+99, 5)
	path := filepath.Join(t.TempDir(), "x.gz")
	if err := os.WriteFile(path, gzipAll(t, in, 6, 2, []int{5000}), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := exec.Command("gzip", "-dc", path).Output()
	if err != nil || !bytes.Equal(got, in) {
		t.Fatalf("gzip -dc: %v", err)
	}
}

// A member continued from a Sync state by a new writer is byte-identical to
// one written in one go with the same Sync points.
func TestGzipContinueFromState(t *testing.T) {
	in := testInput(3*gzBlockSize+777, 9)
	cut := gzBlockSize + 4242
	want := gzipAll(t, in, 6, 2, []int{cut})

	var out bytes.Buffer
	w, err := newGzipWriter(&out, 6, 2, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(in[:cut])
	st, n, err := w.Sync()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(in[cut : cut+5000]) // lost in a crash
	w.Abort()
	out.Truncate(int(n))

	w2, err := newGzipWriter(&out, 6, 2, &st, n)
	if err != nil {
		t.Fatal(err)
	}
	w2.Write(in[cut:])
	if total, err := w2.Close(); err != nil || total != int64(out.Len()) {
		t.Fatalf("close: %d vs %d, %v", total, out.Len(), err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatal("continued member differs from the one written in one go")
	}
}
