package log

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

// idemBatch is a batch of n records from producer id at epoch with base
// sequence seq, as an idempotent producer sends it.
func idemBatch(rng *rand.Rand, id int64, epoch int16, seq int32, n int) []byte {
	b := makeBatch(rng, n, 1_700_000_000_000, 50)
	binary.BigEndian.PutUint64(b[batchProducerIDPos:], uint64(id))
	binary.BigEndian.PutUint16(b[batchProducerEpochPos:], uint16(epoch))
	binary.BigEndian.PutUint32(b[batchBaseSequencePos:], uint32(seq))
	putInt32(b[batchCRCPos:], int32(crc32.Checksum(b[batchAttributesPos:], castagnoli)))
	return b
}

func producerOf(t *testing.T, l *Log, id int64) ProducerState {
	t.Helper()
	st, ok := l.Producer(id)
	if !ok {
		t.Fatalf("producer %d unknown", id)
	}
	return st
}

// The window keeps the last five batches of the current epoch; a new
// epoch starts afresh; sequences wrap; plain batches are not producers.
func TestProducerTable(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	l := openT(t, NewCrashFS(), "/p/t-0", Config{})
	defer l.Close()
	mustAppend(t, l, makeBatch(rng, 2, 1, 10)) // offsets 0-1, no producer
	for i := int32(0); i < 7; i++ {
		mustAppend(t, l, idemBatch(rng, 7, 0, i*3, 3))
	}
	st := producerOf(t, l, 7)
	if st.Epoch != 0 || len(st.Batches) != ProducerWindow {
		t.Fatalf("state %+v", st)
	}
	if want := (ProducerBatch{FirstSeq: 18, LastSeq: 20, BaseOffset: 20, LastOffset: 22}); st.Batches[4] != want {
		t.Fatalf("last batch %+v, want %+v", st.Batches[4], want)
	}
	if st.Batches[0].FirstSeq != 6 {
		t.Fatalf("oldest batch in the window %+v, want sequence 6", st.Batches[0])
	}
	mustAppend(t, l, idemBatch(rng, 7, 1, 0, 1))
	if st := producerOf(t, l, 7); st.Epoch != 1 || len(st.Batches) != 1 || st.Batches[0].BaseOffset != 23 {
		t.Fatalf("after epoch bump: %+v", st)
	}
	mustAppend(t, l, idemBatch(rng, 8, 0, math.MaxInt32-1, 3))
	if st := producerOf(t, l, 8); st.Batches[0].LastSeq != 0 {
		t.Fatalf("wrapped last sequence %d, want 0", st.Batches[0].LastSeq)
	}
	if _, ok := l.Producer(-1); ok || l.Producers() != 2 {
		t.Fatalf("%d producers; -1 known %v", l.Producers(), ok)
	}
}

// The issue 11 case at the log's level: batches appended, the machine
// crashes and loses the unsynced tail; after reopening, the producer state
// is exactly what survived: the last durable batch is known with its
// original offsets (a retry of it is a duplicate), a lost one is unknown
// (its retry is written again). Segments roll on the way, so Open loads
// a roll's snapshot and replays the tail after it.
func TestProducerStateAfterCrash(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	fsys := NewCrashFS()
	cfg := Config{Flush: FlushInterval, FlushInterval: time.Hour, SegmentBytes: 600, IndexIntervalBytes: 256}
	l := openT(t, fsys, "/p/t-0", cfg)
	mustAppend(t, l, makeBatch(rng, 3, 1, 10))
	var last AppendInfo
	for i := int32(0); i < 6; i++ {
		last = mustAppend(t, l, idemBatch(rng, 42, 3, i*2, 2))
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if l.Segments() < 3 {
		t.Fatalf("%d segments: the test wants rolls", l.Segments())
	}
	// Written but never synced: the crash drops it.
	mustAppend(t, l, idemBatch(rng, 42, 3, 12, 2))
	if st := producerOf(t, l, 42); st.Batches[len(st.Batches)-1].FirstSeq != 12 {
		t.Fatalf("unsynced batch not noted: %+v", st)
	}
	crashed := fsys.Crash(nil)
	l.Close()

	l = openT(t, crashed, "/p/t-0", cfg)
	defer l.Close()
	if offs, err := l.snapshotOffsets(); err != nil || len(offs) == 0 || offs[len(offs)-1] == 0 {
		t.Fatalf("no roll snapshot to load after the crash: %v %v", offs, err)
	}
	st := producerOf(t, l, 42)
	got := st.Batches[len(st.Batches)-1]
	want := ProducerBatch{FirstSeq: 10, LastSeq: 11, BaseOffset: last.BaseOffset, LastOffset: last.LastOffset}
	if l.HighWatermark() != last.LastOffset+1 || got != want || st.Epoch != 3 || len(st.Batches) != ProducerWindow {
		t.Fatalf("after crash: hw %d, state %+v; want last batch %+v", l.HighWatermark(), st, want)
	}
}

// Snapshots: written at every roll and at Close, two kept, pruned with
// the segments retention deletes; Open loads the newest and replays only
// what follows; a damaged newest snapshot falls back to the older one; a
// snapshot past a truncated log end is ignored.
func TestProducerSnapshots(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	fsys := NewCrashFS()
	clk := newClock()
	cfg := Config{Flush: FlushAlways, SegmentBytes: 1000, RetentionBytes: 3000}
	withClock := func(o *Options) { o.Now = clk.Now }
	l := openT(t, fsys, "/p/t-0", cfg, withClock)
	for i := int32(0); i < 40; i++ {
		mustAppend(t, l, idemBatch(rng, int64(1+i%3), 0, i/3, 1))
		clk.Add(time.Second)
	}
	snaps := func() []int64 {
		offs, err := l.snapshotOffsets()
		if err != nil {
			t.Fatal(err)
		}
		return offs
	}
	if got := snaps(); len(got) != keepSnapshots {
		t.Fatalf("snapshots %v, want the last %d", got, keepSnapshots)
	}
	want := map[int64]ProducerState{}
	for id := int64(1); id <= 3; id++ {
		want[id] = producerOf(t, l, id)
	}
	if n, err := l.EnforceRetention(); err != nil || n == 0 {
		t.Fatalf("retention: %d, %v", n, err)
	}
	first := l.segs[0].base
	for _, o := range snaps()[:len(snaps())-1] {
		if o < first {
			t.Fatalf("snapshot %d kept below the first segment %d", o, first)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := snaps(); got[len(got)-1] != l.written {
		t.Fatalf("no snapshot at the log end %d after Close: %v", l.written, got)
	}

	// A clean reopen loads the Close snapshot: the same state, times and all.
	l = openT(t, fsys, "/p/t-0", cfg, withClock)
	for id, w := range want {
		if got := producerOf(t, l, id); !reflect.DeepEqual(got, w) {
			t.Fatalf("producer %d after reopen: %+v, want %+v", id, got, w)
		}
	}
	end := l.written
	l.Close()

	// Damage the newest snapshot: the older one plus a replay stand in.
	newest := filepath.Join("/p/t-0", snapshotName(end))
	b, _ := fsys.Bytes(newest)
	b = bytes.Clone(b)
	b[len(b)/2] ^= 0xff
	fsys.SetBytes(newest, b)
	l = openT(t, fsys, "/p/t-0", cfg, withClock)
	for id, w := range want {
		got := producerOf(t, l, id)
		if got.Epoch != w.Epoch || !slices.Equal(got.Batches, w.Batches) {
			t.Fatalf("producer %d from the older snapshot: %+v, want %+v", id, got, w)
		}
	}
	if slices.Contains(snaps(), end) {
		t.Fatal("damaged snapshot kept")
	}
	l.Close()
}

// Expiry forgets producers idle since the horizon, and only then walks the
// table.
func TestExpireProducers(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	clk := newClock()
	l := openT(t, NewCrashFS(), "/p/t-0", Config{}, func(o *Options) { o.Now = clk.Now })
	defer l.Close()
	mustAppend(t, l, idemBatch(rng, 1, 0, 0, 1))
	clk.Add(time.Hour)
	mustAppend(t, l, idemBatch(rng, 2, 0, 0, 1))
	if n := l.ExpireProducers(clk.Now().Add(-2 * time.Hour)); n != 0 {
		t.Fatalf("expired %d too early", n)
	}
	if n := l.ExpireProducers(clk.Now().Add(-30 * time.Minute)); n != 1 || l.Producers() != 1 {
		t.Fatalf("expired %d, %d left", n, l.Producers())
	}
	if _, ok := l.Producer(2); !ok {
		t.Fatal("active producer expired")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	tb := newProducerTable()
	rng := rand.New(rand.NewSource(5))
	for id := int64(0); id < 50; id++ {
		for k := 0; k < rng.Intn(8); k++ {
			hdr := idemBatch(rng, id, int16(rng.Intn(3)), int32(rng.Intn(1000)), 1+rng.Intn(3))
			putInt64(hdr, rng.Int63n(1<<40))
			tb.noteBatch(hdr, func() time.Time { return time.UnixMilli(rng.Int63n(1 << 42)) })
		}
	}
	enc := tb.encodeSnapshot(1234)
	off, got, err := decodeSnapshot(enc)
	if err != nil || off != 1234 || !reflect.DeepEqual(got.m, tb.m) {
		t.Fatalf("round trip: offset %d err %v", off, err)
	}
	if !bytes.Equal(got.encodeSnapshot(1234), enc) {
		t.Fatal("re-encoding differs")
	}
}

// FuzzDecodeSnapshot: a snapshot file is bytes from disk; any of them
// either decode to a table that encodes back the same, or fail cleanly.
func FuzzDecodeSnapshot(f *testing.F) {
	tb := newProducerTable()
	rng := rand.New(rand.NewSource(6))
	for id := int64(0); id < 3; id++ {
		tb.noteBatch(idemBatch(rng, id, 0, 5, 2), time.Now)
	}
	f.Add(tb.encodeSnapshot(99))
	f.Add(newProducerTable().encodeSnapshot(0))
	f.Fuzz(func(t *testing.T, b []byte) {
		off, got, err := decodeSnapshot(b)
		if err != nil {
			return
		}
		if !bytes.Equal(got.encodeSnapshot(off), b) {
			t.Fatalf("decoded snapshot encodes differently")
		}
	})
}

// The snapshot layout is pinned by a golden file, as the segments' are
// (go test -run Golden -update).
func TestGoldenSnapshot(t *testing.T) {
	tb := newProducerTable()
	clock := func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	rng := rand.New(rand.NewSource(7))
	for i, id := range []int64{1000, 7, 7, 7, 1000, 3} {
		hdr := idemBatch(rng, id, int16(i/4), int32(10*i), 1+i%3)
		putInt64(hdr, int64(100*i))
		tb.noteBatch(hdr, clock)
	}
	got := tb.encodeSnapshot(600)
	golden := filepath.Join("testdata", "snapshot", snapshotName(600))
	if *update {
		os.MkdirAll(filepath.Dir(golden), 0o755)
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs: the snapshot format changed", golden)
	}
}
