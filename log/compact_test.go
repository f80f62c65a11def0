package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kv is one record to write: a nil value is a tombstone, a nil key none.
type kv struct{ key, value []byte }

// keyedBatch builds a batch as a producer would, compressed by franz-go's
// own compressor (so that the cleaner's decoding is checked against a
// client's, not against itself).
func keyedBatch(t testing.TB, recs []kv, ts int64, codec kgo.CompressionCodec, pid int64, seq int32) []byte {
	t.Helper()
	b, err := buildKeyed(recs, ts, codec, pid, seq)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func buildKeyed(recs []kv, ts int64, codec kgo.CompressionCodec, pid int64, seq int32) ([]byte, error) {
	var raw []byte
	for i, r := range recs {
		rec := kmsg.Record{TimestampDelta64: int64(i), OffsetDelta: int32(i), Key: r.key, Value: r.value}
		rec.Length = int32(len(rec.AppendTo(nil)) - 1)
		raw = rec.AppendTo(raw)
	}
	attrs := int16(0)
	if codec != kgo.NoCompression() {
		c, err := testCompressor(codec)
		if err != nil {
			return nil, err
		}
		out, typ := c.Compress(new(bytes.Buffer), raw)
		raw, attrs = append([]byte(nil), out...), int16(typ)
	}
	epoch := int16(-1)
	if pid >= 0 {
		epoch = 0
	} else {
		seq = -1
	}
	b := kmsg.RecordBatch{
		Magic: 2, Attributes: attrs, LastOffsetDelta: int32(len(recs) - 1),
		FirstTimestamp: ts, MaxTimestamp: ts + int64(len(recs)) - 1,
		ProducerID: pid, ProducerEpoch: epoch, FirstSequence: seq,
		NumRecords: int32(len(recs)), Records: raw,
	}
	out := b.AppendTo(nil)
	putInt32(out[batchLengthPos:], int32(len(out)-batchFrameSize))
	putInt32(out[batchCRCPos:], int32(crc32.Checksum(out[batchAttributesPos:], castagnoli)))
	return out, nil
}

// testCompressors are franz-go's compressors, one per codec, made once:
// making one per batch costs more than the batch.
var testCompressors sync.Map

func testCompressor(codec kgo.CompressionCodec) (kgo.Compressor, error) {
	key := fmt.Sprint(codec)
	if c, ok := testCompressors.Load(key); ok {
		return c.(kgo.Compressor), nil
	}
	c, err := kgo.DefaultCompressor(codec)
	if err != nil {
		return nil, err
	}
	testCompressors.Store(key, c)
	return c, nil
}

// storedRecord is a record read back with its offset.
type storedRecord struct {
	offset     int64
	ts         int64
	key, value []byte
	tombstone  bool
}

// readRecords reads the whole log as a consumer does: franz-go's decoder
// and decompressor, offsets from each batch's base plus the record delta;
// it also checks that batches follow one another without a gap.
func readRecords(t testing.TB, l *Log) []storedRecord {
	t.Helper()
	var out []storedRecord
	dec := kgo.DefaultDecompressor()
	next, hw := l.LogStartOffset(), l.HighWatermark()
	for next < hw {
		data, err := l.Read(next, 1<<16, nil)
		if err != nil || len(data) == 0 {
			t.Fatalf("read at %d below high watermark %d: %v", next, hw, err)
		}
		for len(data) > 0 {
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom(data); err != nil {
				t.Fatalf("batch at %d: %v", next, err)
			}
			data = data[12+rb.Length:]
			if rb.FirstOffset > next {
				t.Fatalf("batch at %d after offset %d: a gap between batches", rb.FirstOffset, next)
			}
			raw, err := dec.Decompress(rb.Records, kgo.CompressionCodecType(rb.Attributes&7))
			if err != nil {
				t.Fatalf("batch at %d: %v", rb.FirstOffset, err)
			}
			prev := int64(-1)
			for i := int32(0); i < rb.NumRecords; i++ {
				var r kmsg.Record
				if err := r.ReadFrom(raw); err != nil {
					t.Fatalf("batch at %d record %d: %v", rb.FirstOffset, i, err)
				}
				_, k := binary.Varint(raw)
				raw = raw[k+int(r.Length):]
				off := rb.FirstOffset + int64(r.OffsetDelta)
				if off <= prev || r.OffsetDelta > rb.LastOffsetDelta {
					t.Fatalf("batch at %d: record offset %d out of order or past the batch", rb.FirstOffset, off)
				}
				prev = off
				if off >= next { // a consumer skips what it has read
					out = append(out, storedRecord{offset: off, ts: rb.FirstTimestamp + r.TimestampDelta64,
						key: r.Key, value: r.Value, tombstone: r.Value == nil})
				}
			}
			if len(raw) != 0 {
				t.Fatalf("batch at %d: %d bytes after its records", rb.FirstOffset, len(raw))
			}
			next = rb.FirstOffset + int64(rb.LastOffsetDelta) + 1
		}
	}
	return out
}

// written is what a test wrote: every record by offset.
type written map[int64]storedRecord

// latest returns the offset of every key's last record below end.
func (w written) latest(end int64) map[string]int64 {
	out := map[string]int64{}
	for off, r := range w {
		if cur, ok := out[string(r.key)]; r.key != nil && off < end && (!ok || off > cur) {
			out[string(r.key)] = off
		}
	}
	return out
}

// plainCodecs are the cheap ones, for tests about other things than codecs
// (the race detector makes gzip and zstd slow).
var plainCodecs = []kgo.CompressionCodec{kgo.NoCompression(), kgo.SnappyCompression()}

var codecs = []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}

// writeKeyed appends n batches of 1-4 records over nkeys keys, every
// codec in turn, some with a producer id; tombstones when tomb is set.
func writeKeyed(t testing.TB, l *Log, rng *rand.Rand, n, nkeys int, ts int64, tomb bool, w written) {
	writeKeys(t, l, rng, "key", n, nkeys, ts, tomb, w, codecs)
}

// writeKeys is writeKeyed with keys named prefix-NNN, batches compressed
// with each of codecs in turn.
func writeKeys(t testing.TB, l *Log, rng *rand.Rand, prefix string, n, nkeys int, ts int64, tomb bool, w written, codecs []kgo.CompressionCodec) {
	t.Helper()
	for i := 0; i < n; i++ {
		var recs []kv
		for j := 0; j < 1+rng.Intn(4); j++ {
			k := []byte(fmt.Sprintf("%s-%03d", prefix, rng.Intn(nkeys)))
			v := []byte(fmt.Sprintf("value-%d-%d-%s", i, j, bytes.Repeat([]byte("x"), rng.Intn(100))))
			if tomb && rng.Intn(5) == 0 {
				v = nil
			}
			recs = append(recs, kv{k, v})
		}
		pid := int64(-1)
		if i%3 == 0 {
			pid = 7
		}
		b := keyedBatch(t, recs, ts+int64(i), codecs[i%len(codecs)], pid, int32(i*4))
		info := mustAppend(t, l, b)
		for j, r := range recs {
			w[info.BaseOffset+int64(j)] = storedRecord{offset: info.BaseOffset + int64(j), key: r.key, value: r.value, tombstone: r.value == nil}
		}
	}
}

// checkCompacted checks the log against what was written: every key's
// last record is there at its offset with its value (tombstones may be
// gone when gone is set), no record is there that is not its key's last
// unless it is at or past dirtyFrom, and every surviving record is
// exactly as written.
func checkCompacted(t *testing.T, l *Log, w written, dirtyFrom int64, tombstonesGone bool) []storedRecord {
	t.Helper()
	got := readRecords(t, l)
	byOff := map[int64]storedRecord{}
	for _, r := range got {
		want, ok := w[r.offset]
		if !ok || !bytes.Equal(want.key, r.key) || !bytes.Equal(want.value, r.value) || want.tombstone != r.tombstone {
			t.Fatalf("offset %d: got %q=%q, wrote %q=%q", r.offset, r.key, r.value, want.key, want.value)
		}
		byOff[r.offset] = r
	}
	for k, off := range w.latest(1 << 62) {
		_, ok := byOff[off]
		if !ok && !(tombstonesGone && w[off].tombstone) {
			t.Fatalf("key %s: last record at offset %d is gone", k, off)
		}
		if ok && tombstonesGone && w[off].tombstone && off < dirtyFrom {
			t.Fatalf("key %s: tombstone at offset %d outlived delete.retention.ms", k, off)
		}
	}
	// Records in the active segment are never cleaned, nor the ones they
	// supersede.
	clean := w.latest(dirtyFrom)
	for _, r := range got {
		if r.offset < dirtyFrom && clean[string(r.key)] != r.offset {
			t.Fatalf("offset %d: key %s superseded at %d yet kept", r.offset, r.key, clean[string(r.key)])
		}
	}
	return got
}

func compactConfig() Config {
	return Config{SegmentBytes: 8 << 10, Cleanup: CleanupCompact, RetentionAge: time.Millisecond, Flush: FlushInterval}
}

func TestCompactKeepsLastRecordPerKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	clock := newClock()
	l := openT(t, nil, dir, compactConfig(), func(o *Options) { o.Now = clock.Now })
	defer l.Close()
	rng := rand.New(rand.NewSource(1))
	w := written{}
	writeKeyed(t, l, rng, 120, 30, clock.Now().UnixMilli(), false, w)
	before, segsBefore := l.Size(), l.Segments()
	activeBase := l.SegmentInfos()[l.Segments()-1].Base
	// Retention does not delete a compacted log's segments.
	if n, err := l.EnforceRetention(); err != nil || n != 0 {
		t.Fatalf("retention of a compact-only log deleted %d segments (%v)", n, err)
	}
	clean, dirty, err := l.Cleanable(0)
	if err != nil || clean != 0 || dirty == 0 {
		t.Fatalf("before the first clean: clean %d, dirty %d bytes (%v)", clean, dirty, err)
	}
	st, err := l.Clean(CleanConfig{MapBytes: 1 << 20, DeleteRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v; %d -> %d bytes, %d -> %d segments", st, before, l.Size(), segsBefore, l.Segments())
	if st.RecordsRemoved == 0 || l.Size() >= before/2 || l.Segments() > segsBefore {
		t.Fatalf("clean removed %d records: %d -> %d bytes, %d -> %d segments", st.RecordsRemoved, before, l.Size(), segsBefore, l.Segments())
	}
	checkCompacted(t, l, w, activeBase, false)
	if clean, dirty, _ := l.Cleanable(0); clean == 0 || dirty != 0 {
		t.Fatalf("after a clean: clean %d, dirty %d bytes", clean, dirty)
	}
	// A second clean finds nothing to do; more writes and a third clean
	// compact the old keys against the new ones.
	if st, err := l.Clean(CleanConfig{MapBytes: 1 << 20}); err != nil || st.SegmentsWritten != 0 {
		t.Fatalf("clean of a clean log: %+v, %v", st, err)
	}
	writeKeyed(t, l, rng, 80, 30, clock.Now().UnixMilli()+1000, false, w)
	activeBase = l.SegmentInfos()[l.Segments()-1].Base
	segsBefore = l.Segments()
	if _, err := l.Clean(CleanConfig{MapBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if l.Segments() >= segsBefore {
		t.Fatalf("cleaned segments not merged: %d segments, %d before", l.Segments(), segsBefore)
	}
	checkCompacted(t, l, w, activeBase, false)
	// Reopened, the log is the same and whole; the producer's sequence
	// is still known.
	ps, ok := l.Producer(7)
	must(t, l.Close())
	must(t, Verify(dir))
	l2 := openT(t, nil, dir, compactConfig(), func(o *Options) { o.Now = clock.Now })
	defer l2.Close()
	checkCompacted(t, l2, w, activeBase, false)
	if ps2, ok2 := l2.Producer(7); ok != ok2 || fmt.Sprint(ps.Batches) != fmt.Sprint(ps2.Batches) {
		t.Fatalf("producer state %v, after reopen %v", ps, ps2)
	}
}

func TestCompactTombstonesAfterDeleteRetention(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	clock := newClock()
	l := openT(t, nil, dir, compactConfig(), func(o *Options) { o.Now = clock.Now })
	t.Cleanup(func() { l.Close() })
	rng := rand.New(rand.NewSource(2))
	w := written{}
	writeKeys(t, l, rng, "key", 150, 30, clock.Now().UnixMilli(), true, w, plainCodecs)
	seal := func() {
		if _, err := l.SealIdle(math.MaxInt64); err != nil {
			t.Fatal(err)
		}
	}
	seal()
	cfg := CleanConfig{MapBytes: 1 << 20, DeleteRetention: time.Hour}
	if _, err := l.Clean(cfg); err != nil {
		t.Fatal(err)
	}
	// Within delete.retention.ms every key's tombstone is still there.
	checkCompacted(t, l, w, 0, false)
	firstEnd := l.SegmentInfos()[l.Segments()-1].Base
	clock.Add(30 * time.Minute)
	writeKeys(t, l, rng, "other", 60, 30, clock.Now().UnixMilli(), false, w, plainCodecs)
	seal()
	if _, err := l.Clean(cfg); err != nil {
		t.Fatal(err)
	}
	checkCompacted(t, l, w, 0, false)
	if l.TombstonesDue() {
		t.Fatal("tombstones due before delete.retention.ms")
	}
	clean, dirty, _ := l.Cleanable(0)
	if dirty != 0 || clean == 0 {
		t.Fatalf("clean %d, dirty %d bytes", clean, dirty)
	}
	// The horizon outlives a restart (clean-offset holds it).
	must(t, l.Close())
	l = openT(t, nil, dir, compactConfig(), func(o *Options) { o.Now = clock.Now })
	clock.Add(31 * time.Minute)
	// Nothing dirty, yet the tombstones' horizon has passed.
	if !l.TombstonesDue() {
		t.Fatal("tombstones not due after delete.retention.ms")
	}
	st, err := l.Clean(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tombstones == 0 {
		t.Fatalf("no tombstone removed after delete.retention.ms: %+v", st)
	}
	// Tombstones the first clean kept are gone; offsets of what stays
	// are as written.
	for _, r := range checkCompacted(t, l, w, 0, true) {
		if r.tombstone && r.offset < firstEnd {
			t.Fatalf("tombstone at offset %d outlived delete.retention.ms", r.offset)
		}
	}
}

func TestCompactInPasses(t *testing.T) {
	var results [2][]storedRecord
	for i, mapBytes := range []int64{1 << 20, 1500} {
		dir := filepath.Join(t.TempDir(), "t-0")
		clock := newClock()
		l := openT(t, nil, dir, compactConfig(), func(o *Options) { o.Now = clock.Now })
		w := written{}
		writeKeys(t, l, rand.New(rand.NewSource(4)), "key", 200, 50, clock.Now().UnixMilli(), false, w, plainCodecs)
		st, err := l.Clean(CleanConfig{MapBytes: mapBytes})
		if err != nil {
			t.Fatal(err)
		}
		if mapBytes < 1000 && st.Passes < 2 {
			t.Fatalf("a %d-byte map cleaned in %d pass", mapBytes, st.Passes)
		}
		activeBase := l.SegmentInfos()[l.Segments()-1].Base
		results[i] = checkCompacted(t, l, w, activeBase, false)
		must(t, l.Close())
		must(t, Verify(dir))
	}
	if fmt.Sprint(results[0]) != fmt.Sprint(results[1]) {
		t.Fatal("cleaning in passes kept other records than one pass")
	}
}

func TestCompactRefusesWithoutRoom(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	l := openT(t, nil, dir, compactConfig())
	defer l.Close()
	w := written{}
	writeKeys(t, l, rand.New(rand.NewSource(5)), "key", 100, 10, 0, false, w, plainCodecs)
	before := l.Size()
	_, err := l.Clean(CleanConfig{MapBytes: 1 << 20, Room: func() (int64, error) { return 100, nil }})
	if err == nil || !errors.Is(err, ErrNoRoomToClean) || l.Size() != before {
		t.Fatalf("clean with 100 bytes free: %v, %d -> %d bytes", err, before, l.Size())
	}
	names, _ := os.ReadDir(dir)
	for _, n := range names {
		if filepath.Ext(n.Name()) == cleanedSuffix || filepath.Ext(n.Name()) == swapSuffix {
			t.Fatalf("left %s", n.Name())
		}
	}
}

// A cleaned log's bytes are pinned like the rest of the format: a batch
// rebuilt with fewer records, the empty batch of a removed run, a
// producer's emptied newest batch, a tombstone's delete horizon and the
// clean-offset file (go test -run Golden -update).
func TestGoldenCompacted(t *testing.T) {
	fsys := NewCrashFS()
	clock := newClock()
	cfg := Config{SegmentBytes: 600, IndexIntervalBytes: 200, Cleanup: CleanupCompact}
	l := openT(t, fsys, "/g/t-0", cfg, func(o *Options) { o.Now = clock.Now })
	k := func(i int) []byte { return []byte(fmt.Sprintf("k%d", i)) }
	ts := clock.Now().UnixMilli()
	for i := 0; i < 12; i++ {
		recs := []kv{{k(i % 3), []byte(fmt.Sprintf("v%d", i))}, {k(3 + i%2), []byte(fmt.Sprintf("w%d", i))}}
		if i == 7 {
			recs = append(recs, kv{k(5), nil})
		}
		pid := int64(-1)
		if i == 2 {
			pid = 9
		}
		mustAppend(t, l, keyedBatch(t, recs, ts+int64(i), kgo.NoCompression(), pid, 0))
	}
	if _, err := l.SealIdle(math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Clean(CleanConfig{MapBytes: 1 << 20, DeleteRetention: time.Hour}); err != nil {
		t.Fatal(err)
	}
	must(t, l.Close())
	checkGolden(t, fsys, "/g/t-0", filepath.Join("testdata", "golden-compacted"))
}

// Cleans run while a writer appends, readers read the whole log over and
// over and a live verify checks the folder: every read sees batches that follow one another and records
// as written, whichever side of a swap it falls on (a reader holding a
// replaced segment reads it under its .deleted name).
func TestCompactWhileReadingAndWriting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	cfg := compactConfig()
	cfg.SegmentBytes = 2 << 10
	l := openT(t, nil, dir, cfg, func(o *Options) { o.FileCache = NewFileCache(4) })
	defer l.Close()
	w := written{}
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewSource(8))
		for i := 0; i < 150; i++ {
			part := written{}
			writeKeys(t, l, rng, "key", 1, 12, int64(i), false, part, plainCodecs)
			mu.Lock()
			maps.Copy(w, part)
			mu.Unlock()
		}
		close(stop)
	}()
	// ztfbroker verify --live reads the folder as the cleaner swaps
	// segments in it, and finds nothing wrong.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := VerifyLive(dir); err != nil {
				ents, _ := os.ReadDir(dir)
				var ns []string
				for _, e := range ents {
					ns = append(ns, e.Name())
				}
				t.Errorf("verify --live during cleans: %v; now %v", err, ns)
				return
			}
		}
	}()
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got := readRecords(t, l)
				mu.Lock()
				for _, rec := range got {
					if want, ok := w[rec.offset]; ok && !bytes.Equal(want.value, rec.value) {
						t.Errorf("offset %d: read %q, wrote %q", rec.offset, rec.value, want.value)
					}
				}
				mu.Unlock()
			}
		}()
	}
	cleans := 0
	for done := false; !done; cleans++ {
		select {
		case <-stop:
			done = true
		default:
		}
		if _, err := l.Clean(CleanConfig{MapBytes: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
	checkCompacted(t, l, w, l.SegmentInfos()[l.Segments()-1].Base, false)
	t.Logf("%d cleans, %d segments", cleans, l.Segments())
}

// A clean told to stop ends at the next batch, leaving the log whole and
// as it was; the next clean does the work.
func TestCompactStop(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	l := openT(t, nil, dir, compactConfig())
	defer l.Close()
	w := written{}
	writeKeys(t, l, rand.New(rand.NewSource(9)), "key", 100, 10, 0, false, w, plainCodecs)
	before := l.Size()
	stop := make(chan struct{})
	close(stop)
	if _, err := l.Clean(CleanConfig{MapBytes: 1 << 20, Stop: stop}); !errors.Is(err, ErrCleanStopped) || l.Size() != before {
		t.Fatalf("stopped clean: %v, %d -> %d bytes", err, before, l.Size())
	}
	if _, err := l.Clean(CleanConfig{MapBytes: 1 << 20}); err != nil || l.Size() >= before {
		t.Fatalf("clean after a stopped one: %v, %d -> %d bytes", err, before, l.Size())
	}
	checkCompacted(t, l, w, l.SegmentInfos()[l.Segments()-1].Base, false)
}

// The cleaner decodes stored records, which a client wrote: whatever the
// bytes, parsing, decompressing and re-encoding never panic, and records
// that parse come out of a rewrite as they went in.
func FuzzCleanRecords(f *testing.F) {
	for _, codec := range codecs {
		b, err := buildKeyed([]kv{{[]byte("k"), []byte("v")}, {nil, []byte("x")}, {[]byte("t"), nil}}, 1, codec, -1, 0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[batchHeaderSize:], b[batchAttributesPos+1]&attrCodecMask, int32(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, codec byte, count int32) {
		var z zstdCoders
		defer z.close()
		b := append(make([]byte, batchHeaderSize), body...)
		b[batchAttributesPos+1] = codec
		recs, err := z.batchRecords(b)
		if err != nil {
			return
		}
		var kept []record
		if parseRecords(recs, min(count, 1000), func(r record) error { kept = append(kept, r); return nil }) != nil {
			return
		}
		var out []byte
		for _, r := range kept {
			out = appendRecord(out, r, r.tsDelta)
		}
		var again []record
		if err := parseRecords(out, int32(len(kept)), func(r record) error { again = append(again, r); return nil }); err != nil {
			t.Fatalf("rewritten records do not parse: %v", err)
		}
		for i := range kept {
			if !bytes.Equal(kept[i].key, again[i].key) || kept[i].tsDelta != again[i].tsDelta || !bytes.Equal(kept[i].rest, again[i].rest) {
				t.Fatalf("record %d changed in a rewrite", i)
			}
		}
	})
}

// BenchmarkClean: the cleaner's throughput over 16 MiB of 1 MiB segments
// (the smallest segment.bytes a topic may set) of keyed records (1 KiB
// random values, 1,000 keys), uncompressed and zstd, in bytes of segments
// read per second. Each segment rewritten costs three file fsyncs and
// three folder fsyncs.
func BenchmarkClean(b *testing.B) {
	for name, codec := range map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "zstd": kgo.ZstdCompression()} {
		b.Run(name, func(b *testing.B) {
			rng := rand.New(rand.NewSource(1))
			var batches [][]byte
			for i := 0; i < 4000; i++ {
				var recs []kv
				for j := 0; j < 4; j++ {
					v := make([]byte, 1024)
					rng.Read(v)
					recs = append(recs, kv{[]byte(fmt.Sprintf("key-%04d", rng.Intn(1000))), v})
				}
				batch, err := buildKeyed(recs, int64(i), codec, -1, 0)
				if err != nil {
					b.Fatal(err)
				}
				batches = append(batches, batch)
			}
			var read int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "t-0")
				l := openT(b, nil, dir, Config{SegmentBytes: 1 << 20, Cleanup: CleanupCompact, Flush: FlushInterval})
				for _, batch := range batches {
					mustAppend(b, l, append([]byte(nil), batch...))
				}
				b.StartTimer()
				st, err := l.Clean(CleanConfig{MapBytes: 16 << 20})
				if err != nil {
					b.Fatal(err)
				}
				read += st.BytesRead
				b.StopTimer()
				l.Close()
			}
			b.SetBytes(read / int64(b.N))
		})
	}
}

// compact,delete: cleans race retention and DeleteRecords on one log; a
// clean whose segments went meanwhile drops its work. The log stays
// whole (Verify), every record left is as written, and every key's last
// record at or past the log start is there.
func TestCompactWithRetention(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "t-0")
	cfg := compactConfig()
	cfg.SegmentBytes, cfg.Cleanup, cfg.RetentionAge, cfg.RetentionBytes = 2<<10, CleanupCompact|CleanupDelete, -1, 12<<10
	l := openT(t, nil, dir, cfg)
	w := written{}
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(stop)
		rng := rand.New(rand.NewSource(10))
		for i := 0; i < 200; i++ {
			part := written{}
			writeKeys(t, l, rng, "key", 1, 15, int64(i), false, part, plainCodecs)
			mu.Lock()
			maps.Copy(w, part)
			mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%3 == 0 {
				l.DeleteRecords(l.LogStartOffset() + 5)
			} else if _, err := l.EnforceRetention(); err != nil {
				t.Errorf("retention: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		default:
		}
		if _, err := l.Clean(CleanConfig{MapBytes: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	start, activeBase := l.LogStartOffset(), l.SegmentInfos()[l.Segments()-1].Base
	got := readRecords(t, l)
	must(t, l.Close())
	must(t, Verify(dir))
	byKey := map[string]int64{}
	for _, r := range got {
		if want := w[r.offset]; !bytes.Equal(want.key, r.key) || !bytes.Equal(want.value, r.value) {
			t.Fatalf("offset %d: read %q=%q, wrote %q=%q", r.offset, r.key, r.value, want.key, want.value)
		}
		byKey[string(r.key)] = r.offset
	}
	for k, off := range w.latest(1 << 62) {
		if off >= start && byKey[k] != off {
			t.Fatalf("key %s: last record at %d (log start %d, active segment %d) not read", k, off, start, activeBase)
		}
	}
}
