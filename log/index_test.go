package log

import (
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// TestIndexSummarySearch checks the two-step search (the summary in
// memory, then one block of the file) against a plain scan, for an index
// written in pieces (entries in the file and still pending), opened again
// from its file (the summary then built on first search), truncated and
// appended to again, with entries of both sizes.
func TestIndexSummarySearch(t *testing.T) {
	for _, es := range []int{offsetEntrySize, timeEntrySize} {
		rng := rand.New(rand.NewSource(int64(es)))
		path := filepath.Join(t.TempDir(), "idx")
		open := func(entries int) *index {
			f, err := OSFS{}.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			return newIndex(f, path, es, entries)
		}
		x := open(0)
		var keys []uint32 // entry i's key, increasing
		add := func(n int) {
			for range n {
				k := uint32(rng.Intn(5) + 1)
				if len(keys) > 0 {
					k += keys[len(keys)-1]
				}
				keys = append(keys, k)
				e := make([]byte, es)
				for j := range 4 {
					e[j] = byte(k >> (24 - 8*j))
				}
				e[es-1] = byte(len(keys))
				if err := x.add(e); err != nil {
					t.Fatal(err)
				}
			}
		}
		check := func(stage string) {
			t.Helper()
			for q := uint32(0); q <= keys[len(keys)-1]+2; q++ {
				want := 0
				for want < len(keys) && keys[want] <= q {
					want++
				}
				key := func(b []byte) uint32 { return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) }
				less := func(b []byte) bool { return key(b) <= q }
				n, _, err := x.find(less)
				if err != nil || n != want {
					t.Fatalf("%d-byte entries, %s: find(<= %d) = %d, %v; want %d", es, stage, q, n, err, want)
				}
				b, ok, err := x.last(less)
				if err != nil || ok != (want > 0) || (ok && (key(b) != keys[want-1] || b[es-1] != byte(want))) {
					t.Fatalf("%d-byte entries, %s: last(<= %d) = %v %v %v; want entry %d", es, stage, q, b, ok, err, want-1)
				}
			}
		}
		add(700) // some written at each 4 KiB of entries, the rest pending
		check("written and pending")
		add(1500)
		if err := x.sync(); err != nil {
			t.Fatal(err)
		}
		check("synced")
		x.close()
		x = open(len(keys))
		check("reopened")
		if err := x.truncate(600); err != nil {
			t.Fatal(err)
		}
		keys = keys[:600]
		check("truncated")
		add(900)
		check("appended after truncation")
		x.close()
	}
}
