package avrofile

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"
)

// sampleFiles is every .avro under the shared folder of real ZTF alerts
// (see its README), keyed by path relative to it.
func sampleFiles(tb testing.TB) map[string][]byte {
	tb.Helper()
	dir := os.Getenv("ZTF_SAMPLE_ALERTS")
	if dir == "" {
		dir = "../../shared/data/ztf/alerts"
	}
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".avro") {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return err
	})
	if err != nil || len(files) == 0 {
		tb.Fatalf("sample alerts in %s: %v, %d files (set ZTF_SAMPLE_ALERTS)", dir, err, len(files))
	}
	return files
}

// readAll parses b the way the slice API is meant to be used.
func readAll(b []byte) (*Header, []Block, error) {
	h, off, err := ParseHeader(b)
	if err != nil {
		return nil, nil, err
	}
	var blocks []Block
	for off < len(b) {
		blk, n, err := ReadBlock(b[off:], h.Sync)
		if err != nil {
			return h, blocks, err
		}
		blocks = append(blocks, blk)
		off += n
	}
	return h, blocks, nil
}

func encode(h *Header, blocks []Block) []byte {
	out := AppendHeader(nil, h)
	for _, blk := range blocks {
		out = AppendBlock(out, blk.Count, blk.Data, h.Sync)
	}
	return out
}

// TestSamples: every real alert file parses, its blocks hold the alerts the
// data README counts, each record is stepped over to the byte, the stream
// reader agrees with the slice reader, and header plus blocks encode back
// to the file's bytes.
func TestSamples(t *testing.T) {
	files := sampleFiles(t)
	if len(files) != 36 {
		t.Errorf("%d sample files, the README lists 36", len(files))
	}
	alerts := 0
	for name, b := range files {
		t.Run(name, func(t *testing.T) {
			h, blocks, err := readAll(b)
			if err != nil {
				t.Fatal(err)
			}
			if h.Codec() != CodecNull || len(h.Meta) != 2 || len(h.Schema()) == 0 {
				t.Errorf("codec %s, %d metadata entries, %d bytes of schema", h.Codec(), len(h.Meta), len(h.Schema()))
			}
			wantBlocks := 1
			if strings.HasSuffix(name, "avro_multi_alerts_other.avro") {
				wantBlocks = 3
			}
			if len(blocks) != wantBlocks {
				t.Errorf("%d blocks, want %d", len(blocks), wantBlocks)
			}
			if got := encode(h, blocks); !bytes.Equal(got, b) {
				t.Errorf("re-encoded to %d bytes that differ from the file's %d", len(got), len(b))
			}

			s, err := Compile(h.Schema())
			if err != nil {
				t.Fatal(err)
			}
			if s.Field("candid") < 0 || s.Field("candidate") < 0 {
				t.Errorf("no candid or candidate among %d fields", len(s.Fields))
			}
			for i, blk := range blocks {
				off := 0
				for range blk.Count {
					n, err := s.Skip(blk.Data[off:])
					if err != nil {
						t.Fatalf("block %d: %v", i, err)
					}
					off += n
					alerts++
				}
				if off != len(blk.Data) {
					t.Errorf("block %d: %d of %d bytes stepped over", i, off, len(blk.Data))
				}
			}

			r, err := NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(r.Header.Meta, h.Meta, metaEqual) || r.Header.Sync != h.Sync {
				t.Error("stream header differs")
			}
			for i := 0; ; i++ {
				blk, err := r.Next()
				if errors.Is(err, io.EOF) {
					if i != len(blocks) {
						t.Errorf("stream: %d blocks, want %d", i, len(blocks))
					}
					break
				}
				if err != nil {
					t.Fatalf("stream block %d: %v", i, err)
				}
				if i >= len(blocks) || blk.Count != blocks[i].Count || !bytes.Equal(blk.Data, blocks[i].Data) {
					t.Fatalf("stream block %d differs", i)
				}
			}
		})
	}
	if alerts != 38 {
		t.Errorf("%d alerts stepped over, the README counts 38", alerts)
	}
}

func metaEqual(a, b MetaEntry) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }

// TestSkipFieldsCandid finds the candid of the 4.02 sample behind the fields
// before it, and checks it against hamba's decoding of the same record.
func TestSkipFieldsCandid(t *testing.T) {
	b := sampleFiles(t)[filepath.Join("other-sources", "boom", "2695378462115010012.avro")]
	h, blocks, err := readAll(b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(h.Schema())
	if err != nil {
		t.Fatal(err)
	}
	i := s.Field("candid")
	off, err := s.SkipFields(blocks[0].Data, i)
	if err != nil {
		t.Fatal(err)
	}
	candid, _, err := ReadLong(blocks[0].Data[off:])
	if err != nil || candid != 2695378462115010012 {
		t.Fatalf("candid %d, %v", candid, err)
	}
	if s.Fields[i].Type != "long" {
		t.Errorf("candid type %v", s.Fields[i].Type)
	}
	if _, err := s.SkipFields(blocks[0].Data, len(s.Fields)+1); !errors.Is(err, ErrSchema) {
		t.Errorf("past the last field: %v", err)
	}
}

func TestCompile(t *testing.T) {
	for name, tc := range map[string]struct {
		schema string
		value  []byte // encoded value, skipped whole
		err    error  // from Compile
		skip   error  // from Skip
	}{
		"primitive":     {schema: `"long"`, value: []byte{0x96, 0x01}},
		"fixed":         {schema: `{"type":"fixed","name":"f","size":3}`, value: []byte{1, 2, 3}},
		"enum":          {schema: `{"type":"enum","name":"e","symbols":["a","b"]}`, value: []byte{2}},
		"logical":       {schema: `{"type":"long","logicalType":"timestamp-millis"}`, value: []byte{4}},
		"union":         {schema: `["null","string"]`, value: []byte{2, 2, 'x'}},
		"union index":   {schema: `["null","string"]`, value: []byte{4}, skip: ErrUnionIndex},
		"map":           {schema: `{"type":"map","values":"int"}`, value: []byte{2, 2, 'k', 6, 0}},
		"sized block":   {schema: `{"type":"array","items":"long"}`, value: []byte{3, 4, 2, 4, 0}},
		"array of null": {schema: `{"type":"array","items":"null"}`, value: []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}},
		"truncated":     {schema: `{"type":"array","items":"double"}`, value: []byte{2, 1, 2}, skip: ErrTruncated},
		"recursive": {schema: `{"type":"record","name":"list","fields":[{"name":"next","type":["null","list"]}]}`,
			value: []byte{2, 2, 0}},
		"too deep": {schema: `{"type":"record","name":"list","fields":[{"name":"next","type":["null","list"]}]}`,
			value: bytes.Repeat([]byte{2}, 2*maxDepth), skip: ErrTooDeep},
		"namespaced": {schema: `{"type":"record","name":"a","namespace":"ztf","fields":[
			{"name":"c","type":{"type":"record","name":"cutout","fields":[{"name":"b","type":"bytes"}]}},
			{"name":"d","type":["null","ztf.cutout"]},{"name":"e","type":"cutout"}]}`, value: []byte{2, 'x', 0, 0}},
		// Defaults that strict parsers refuse (ZTF before 4.x) do not matter.
		"invalid default": {schema: `{"type":"record","name":"a","fields":[{"name":"x","type":["float","null"],"default":null}]}`,
			value: []byte{0, 0, 0, 0, 0}},
		"not json":      {schema: `{`, err: ErrSchema},
		"unknown name":  {schema: `{"type":"array","items":"candidate"}`, err: ErrSchema},
		"no type":       {schema: `{"items":"long"}`, err: ErrSchema},
		"bad field":     {schema: `{"type":"record","name":"a","fields":[1]}`, err: ErrSchema},
		"negative size": {schema: `{"type":"fixed","name":"f","size":-1}`, err: ErrSchema},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Compile([]byte(tc.schema))
			if !errors.Is(err, tc.err) {
				t.Fatalf("compile: %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			n, err := s.Skip(tc.value)
			if !errors.Is(err, tc.skip) {
				t.Fatalf("skip: %v, want %v", err, tc.skip)
			}
			if err == nil && n != len(tc.value) {
				t.Errorf("skipped %d of %d bytes", n, len(tc.value))
			}
		})
	}
}

// TestDeflate reads a file hamba writes with the deflate codec, and
// Compress and Decompress are each other's inverse.
func TestDeflate(t *testing.T) {
	schema := avro.MustParse(`{"type":"record","name":"r","fields":[{"name":"candid","type":"long"},{"name":"s","type":"string"}]}`)
	var buf bytes.Buffer
	enc, err := ocf.NewEncoderWithSchema(schema, &buf, ocf.WithCodec(ocf.Deflate))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := enc.Encode(map[string]any{"candid": int64(i), "s": strings.Repeat("z", 1000)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	h, blocks, err := readAll(buf.Bytes())
	if err != nil || len(blocks) != 1 || h.Codec() != CodecDeflate {
		t.Fatalf("%d blocks, codec %s, %v", len(blocks), h.Codec(), err)
	}
	records, err := Decompress(h.Codec(), blocks[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := Compile(h.Schema())
	off := 0
	for i := range blocks[0].Count {
		c, _, err := ReadLong(records[off:])
		if err != nil || c != i {
			t.Fatalf("record %d: candid %d, %v", i, c, err)
		}
		n, err := s.Skip(records[off:])
		if err != nil {
			t.Fatal(err)
		}
		off += n
	}
	if off != len(records) {
		t.Errorf("%d of %d bytes", off, len(records))
	}
	again, err := Compress(CodecDeflate, records)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := Decompress(CodecDeflate, again); err != nil || !bytes.Equal(back, records) {
		t.Errorf("round trip: %v", err)
	}
	if _, err := Decompress("snappy", nil); !errors.Is(err, ErrCodec) {
		t.Errorf("snappy: %v", err)
	}
	if _, err := Decompress(CodecDeflate, []byte{0xff}); err == nil {
		t.Error("bad deflate data read")
	}
}

// TestStream: files read back to back from one buffered stream (how
// alertcat reads stdin), a clean end between blocks, and files cut short.
func TestStream(t *testing.T) {
	files := sampleFiles(t)
	one := files[filepath.Join("other-sources", "boom", "2695378462115010012.avro")]
	multi := files[filepath.Join("other-sources", "fink-client", "avro_multi_alerts_other.avro")]
	br := bufio.NewReader(io.MultiReader(bytes.NewReader(multi), bytes.NewReader(one)))
	var counts []int
	for range 2 {
		r, err := NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			// The reader reads no further than its file: the next file's
			// magic is still there.
			if p, _ := br.Peek(4); len(p) == 0 || string(p) == Magic {
				break
			}
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
			n++
		}
		counts = append(counts, n)
	}
	if !slices.Equal(counts, []int{3, 1}) {
		t.Errorf("blocks per file %v, want [3 1]", counts)
	}

	_, hlen, _ := ParseHeader(one)
	for name, tc := range map[string]struct {
		b    []byte
		new  error // from NewReader
		next error // from the first Next
	}{
		"empty":        {b: nil, new: ErrNotContainer},
		"not avro":     {b: []byte("{\"candid\": 1}"), new: ErrNotContainer},
		"magic only":   {b: []byte(Magic), new: ErrTruncated},
		"short header": {b: one[:hlen-1], new: ErrTruncated},
		"header only":  {b: one[:hlen], next: io.EOF},
		"short count":  {b: append(slices.Clip(one[:hlen]), 0x80), next: ErrTruncated},
		"short block":  {b: one[:len(one)-1], next: ErrTruncated},
		"bad sync":     {b: append(slices.Clip(one[:len(one)-1]), one[len(one)-1]+1), next: ErrSyncMarker},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.b))
			if !errors.Is(err, tc.new) {
				t.Fatalf("NewReader: %v, want %v", err, tc.new)
			}
			if err != nil {
				return
			}
			if _, err := r.Next(); !errors.Is(err, tc.next) {
				t.Errorf("Next: %v, want %v", err, tc.next)
			}
		})
	}
}

// TestHeader: a metadata map written in sized blocks (negative counts)
// parses to the same entries, in order; NewHeader and the limits.
func TestHeader(t *testing.T) {
	b := []byte(Magic)
	b = AppendLong(b, -1)
	b = AppendLong(b, 7)
	b = AppendBytes(b, []byte("avro.codec"))
	b = AppendBytes(b, []byte(""))
	b = AppendLong(b, 1)
	b = AppendBytes(b, []byte(KeySchema))
	b = AppendBytes(b, []byte(`"long"`))
	b = AppendLong(b, 0)
	b = append(b, bytes.Repeat([]byte{9}, SyncSize)...)
	h, n, err := ParseHeader(b)
	if err != nil || n != len(b) {
		t.Fatalf("%d of %d bytes, %v", n, len(b), err)
	}
	if h.Codec() != CodecNull || string(h.Schema()) != `"long"` || h.Meta[0].Key != KeyCodec || h.Sync[0] != 9 {
		t.Errorf("header %+v", h)
	}

	nh := NewHeader([]byte(`"long"`))
	if nh.Meta[0].Key != KeySchema || nh.Codec() != CodecNull || nh.Sync == ([SyncSize]byte{}) {
		t.Errorf("NewHeader %+v", nh)
	}
	if again, _, err := ParseHeader(AppendHeader(nil, nh)); err != nil || !slices.EqualFunc(again.Meta, nh.Meta, metaEqual) || again.Sync != nh.Sync {
		t.Errorf("NewHeader round trip: %v", err)
	}
	if _, _, err := ParseHeader(AppendHeader(nil, &Header{})); !errors.Is(err, ErrNoSchema) {
		t.Errorf("no schema: %v", err)
	}
	huge := AppendLong([]byte(Magic), 1)
	huge = AppendLong(huge, MaxBlockSize+1)
	if _, err := NewReader(bytes.NewReader(huge)); !errors.Is(err, ErrLength) {
		t.Errorf("huge key: %v", err)
	}
	if _, _, err := ReadLong(bytes.Repeat([]byte{0xff}, 11)); !errors.Is(err, ErrLongOverflow) {
		t.Errorf("long overflow: %v", err)
	}
	if _, err := NewReader(bytes.NewReader(append([]byte(Magic), bytes.Repeat([]byte{0xff}, 11)...))); !errors.Is(err, ErrLongOverflow) {
		t.Errorf("stream long overflow: %v", err)
	}
}

// FuzzParse: outside bytes give a file or an error, never a panic; the
// slice and stream readers agree, and whatever parses encodes back to the
// bytes it was parsed from. The schema inside is compiled and its records
// stepped over.
func FuzzParse(f *testing.F) {
	// Two real alerts (4.02 and the oldest schema) and small files of several
	// blocks: mutating a 160 kB file is slow, and one of them holds nothing
	// the small ones do not.
	files := sampleFiles(f)
	for _, name := range []string{"other-sources/boom/2695378462115010012.avro", "ztf-avro-alert/history/v1.1/1726958725155001.avro"} {
		b := files[filepath.FromSlash(name)]
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	small := NewHeader([]byte(`{"type":"record","name":"a","fields":[{"name":"candid","type":"long"},{"name":"s","type":["null","string"]}]}`))
	b := AppendHeader(nil, small)
	for i := range int64(3) {
		b = AppendBlock(b, i, bytes.Repeat([]byte{2 * byte(i), 2, 2, 'x'}, int(i)), small.Sync)
	}
	f.Add(b)
	small.Meta[1].Value = []byte(CodecDeflate)
	deflated, _ := Compress(CodecDeflate, []byte{4, 2, 2, 'y'})
	f.Add(AppendBlock(AppendHeader(nil, small), 1, deflated, small.Sync))
	f.Add([]byte("Obj\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, blocks, err := readAll(b)
		r, rerr := NewReader(bytes.NewReader(b))
		if (h != nil) != (rerr == nil) {
			t.Fatalf("header: slice %v, stream %v", err, rerr)
		}
		if h == nil {
			return
		}
		var streamed []Block
		var serr error
		for {
			blk, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					serr = err
				}
				break
			}
			streamed = append(streamed, blk)
		}
		if (err == nil) != (serr == nil) || len(streamed) != len(blocks) {
			t.Fatalf("slice: %d blocks, %v; stream: %d blocks, %v", len(blocks), err, len(streamed), serr)
		}
		if err != nil {
			return
		}
		if got := encode(h, blocks); !bytes.Equal(got, b) {
			// Only a header written in several or sized metadata blocks,
			// or with non-minimal varints, encodes differently; it must
			// still parse to the same thing.
			h2, blocks2, err := readAll(got)
			if err != nil || !slices.EqualFunc(h2.Meta, h.Meta, metaEqual) || len(blocks2) != len(blocks) {
				t.Fatalf("re-encoded bytes read back differently: %v", err)
			}
		}
		s, err := Compile(h.Schema())
		if err != nil {
			return
		}
		for _, blk := range blocks {
			records, err := Decompress(h.Codec(), blk.Data)
			if err != nil {
				continue
			}
			off := 0
			for range min(blk.Count, 1000) {
				n, err := s.Skip(records[off:])
				if err != nil {
					break
				}
				off += n
			}
		}
	})
}
