package alertindex

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// synthetic makes n summaries scattered over a patch of sky and a night,
// objects seen several times, spread over topics and partitions.
func synthetic(n int, seed uint64) []Summary {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]Summary, n)
	for i := range out {
		obj := i / 3
		out[i] = Summary{
			Candid: int64(1_000_000_000_000_000_000 + i), ObjectID: fmt.Sprintf("ZTF26a%07d", obj),
			Topic: fmt.Sprintf("ztf_2026010%d_programid%d", i%3, 1+i%2), Partition: int32(i % 4), Offset: int64(i),
			RA: math.Mod(float64(obj)*0.37, 360), Dec: -30 + math.Mod(float64(obj)*0.11, 90),
			JD: 2461000.5 + float64(i)/float64(n) + rng.Float64()*1e-6, Fid: int32(1 + i%2),
			MagPSF: 15 + 6*rng.Float32(), SigmaPSF: 0.1, RB: rng.Float32(), DRB: float32(math.NaN()),
			IsDiffPos: "t", NDetHist: 3, ProgramID: int32(1 + i%2),
		}
	}
	return out
}

func openTemp(t testing.TB) *Index {
	t.Helper()
	idx, err := Open(filepath.Join(t.TempDir(), "idx"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	return idx
}

func TestIndexFindsEveryAlert(t *testing.T) {
	idx := openTemp(t)
	sums := synthetic(3000, 1)
	for i := 0; i < len(sums); i += 500 {
		if _, err := idx.Add(sums[i : i+500]); err != nil {
			t.Fatal(err)
		}
	}
	if n := idx.Count(); n != int64(len(sums)) {
		t.Fatalf("count %d, want %d", n, len(sums))
	}
	for _, s := range sums[:300] {
		got, err := idx.Get(s.Candid)
		if err != nil || got.Topic != s.Topic || got.Offset != s.Offset || got.RA != s.RA || got.ObjectID != s.ObjectID ||
			got.MagPSF != s.MagPSF || !math.IsNaN(float64(got.DRB)) {
			t.Fatalf("get %d: %+v %v, want %+v", s.Candid, got, err, s)
		}
		obj, _ := idx.Object(s.ObjectID, 100)
		if len(obj) != 3 || !sort.SliceIsSorted(obj, func(i, j int) bool { return obj[i].JD > obj[j].JD }) {
			t.Fatalf("object %s: %d alerts, want 3 newest first", s.ObjectID, len(obj))
		}
		cone, _, _ := idx.Cone(s.RA, s.Dec, 1.0/3600, 100, 100000, nil)
		if !hasCandid(cone, s.Candid) {
			t.Fatalf("alert %d not in a 1-arcsec cone", s.Candid)
		}
		win, _, _ := idx.Window(Window{Since: s.JD - 1e-9, Until: s.JD + 1e-9, Limit: 10, ScanMax: 100})
		if !hasCandid(win, s.Candid) {
			t.Fatalf("alert %d not in its window", s.Candid)
		}
	}
	// A cone of a degree finds exactly the alerts within a degree.
	c := sums[100]
	cone, truncated, err := idx.Cone(c.RA, c.Dec, 1, 100000, 1000000, nil)
	if err != nil || truncated {
		t.Fatal(err, truncated)
	}
	want := 0
	for _, s := range sums {
		if Separation(c.RA, c.Dec, s.RA, s.Dec) <= 1 {
			want++
		}
	}
	if len(cone) != want || want < 3 {
		t.Errorf("1-degree cone: %d alerts, want %d", len(cone), want)
	}
	// Paging a window with a cursor lists each alert once.
	seen := map[int64]bool{}
	w := Window{Since: 2461000, Until: 2461002, Limit: 77, ScanMax: 1000,
		Match: func(s *Summary) bool { return s.Fid == 1 }}
	for {
		page, next, err := idx.Window(w)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page {
			if seen[s.Candid] || s.Fid != 1 {
				t.Fatalf("alert %d listed twice or unfiltered", s.Candid)
			}
			seen[s.Candid] = true
		}
		if next == nil {
			break
		}
		w.After = next
	}
	if len(seen) != len(sums)/2 {
		t.Errorf("paged %d alerts of band 1, want %d", len(seen), len(sums)/2)
	}
}

func hasCandid(ss []Summary, c int64) bool {
	for _, s := range ss {
		if s.Candid == c {
			return true
		}
	}
	return false
}

// TestIndexPruneAndMove: alerts below a log start offset leave every key;
// a candid indexed again elsewhere moves; Digest sees both.
func TestIndexPruneAndMove(t *testing.T) {
	a, b := openTemp(t), openTemp(t)
	sums := synthetic(400, 2)
	a.Add(sums)
	topic, part := sums[0].Topic, sums[0].Partition
	var start int64 = 200
	var kept []Summary
	for _, s := range sums {
		if s.Topic != topic || s.Partition != part || s.Offset >= start {
			kept = append(kept, s)
		}
	}
	n, err := a.Prune(topic, part, start)
	if err != nil || n != len(sums)-len(kept) || n == 0 {
		t.Fatalf("pruned %d (%v), want %d", n, err, len(sums)-len(kept))
	}
	b.Add(kept)
	da, na, _ := a.Digest()
	db, nb, _ := b.Digest()
	if da != db || na != nb || a.Count() != b.Count() {
		t.Fatalf("pruned index %s (%d), one built without those alerts %s (%d)", da, na, db, nb)
	}
	moved := kept[0]
	moved.Topic, moved.Offset = "ztf_20260105_programid1", 9
	a.Add([]Summary{moved})
	if got, _ := a.Get(moved.Candid); got.Topic != moved.Topic || a.Count() != int64(len(kept)) {
		t.Fatalf("moved alert at %s, count %d", got.Topic, a.Count())
	}
	if n, _ := a.Prune(moved.Topic, moved.Partition, -1); n != 1 {
		t.Fatalf("dropping a gone topic removed %d", n)
	}
	if _, err := a.Get(moved.Candid); err != ErrNotFound {
		t.Fatalf("alert of a dropped topic: %v", err)
	}
}

func TestKeyOrder(t *testing.T) {
	jds := []float64{-1, 0, 1e-9, 2400000.5, 2461000.25, math.Inf(1)}
	for i := 1; i < len(jds); i++ {
		a, b := appendJD(nil, jds[i-1]), appendJD(nil, jds[i])
		if string(a) >= string(b) || readJD(b) != jds[i] {
			t.Errorf("jd %v does not sort before %v", jds[i-1], jds[i])
		}
	}
	if string(appendCandid(nil, -5)) >= string(appendCandid(nil, 3)) || readCandid(appendCandid(nil, -5)) != -5 {
		t.Error("candids do not sort as signed numbers")
	}
}

// FuzzDecode: no message on a topic makes the decoder panic.
func FuzzDecode(f *testing.F) {
	for _, p := range sampleFiles(f)[:4] {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("Obj\x01"))
	dec := Decoder{Schemas: avrofile.NewSchemas(0)}
	f.Fuzz(func(t *testing.T, b []byte) {
		dec.Decode(b)
	})
}

// TestIndexSameCandidTwice: two messages of one candid in one batch, or
// in two, leave one alert, at the later place, and a count of one.
func TestIndexSameCandidTwice(t *testing.T) {
	sums := synthetic(2, 3)
	a, b := sums[0], sums[0]
	b.Partition, b.Offset, b.ObjectID = 3, 77, "ZTF26other"
	one, two, ref := openTemp(t), openTemp(t), openTemp(t)
	one.Add([]Summary{a, b})
	two.Add([]Summary{a})
	two.Add([]Summary{b})
	ref.Add([]Summary{b})
	want, _, _ := ref.Digest()
	for name, idx := range map[string]*Index{"one batch": one, "two batches": two} {
		d, n, _ := idx.Digest()
		if d != want || n != 1 || idx.Count() != 1 {
			t.Errorf("%s: %d alerts, count %d, digest differs: %v", name, n, idx.Count(), d != want)
		}
	}
}
