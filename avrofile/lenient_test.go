package avrofile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hamba/avro/v2"
)

// TestParseSchemaSamples: the writer schema of every real alert file parses,
// and hamba decodes every alert with it to the byte, finding the schemavsn
// and candids the data README lists. Only the 4.02 schema has no invalid
// default, so only it is parsed from its own bytes.
func TestParseSchemaSamples(t *testing.T) {
	files := sampleFiles(t)
	h := "ztf-avro-alert/history/"
	for name, tc := range map[string]struct {
		vsn     string // schemavsn, or the schema's version before 1.8; "" for neither
		candids []int64
		clean   bool // no default to drop
	}{
		"other-sources/alertbase/1311156250015010003.avro":       {vsn: "3.3", candids: []int64{1311156250015010003}},
		"other-sources/alertbase/single.avro":                    {vsn: "3.3", candids: []int64{1311190901515015002}},
		"other-sources/boom/2695378462115010012.avro":            {vsn: "4.02", candids: []int64{2695378462115010012}, clean: true},
		"other-sources/fink-client/ZTF19acihgng.avro":            {vsn: "3.3", candids: []int64{1060135832015015002}},
		"other-sources/fink-client/ZTF19acxxwrs.avro":            {vsn: "3.3", candids: []int64{1079453312715015005}},
		"other-sources/fink-client/ZTF19acyfkzd.avro":            {vsn: "3.3", candids: []int64{1079262803715015019}},
		"other-sources/fink-client/ZTF19acyjzeo.avro":            {vsn: "3.3", candids: []int64{1079564896215015003}},
		"other-sources/fink-client/avro_multi_alerts_other.avro": {vsn: "3.3", candids: []int64{1788116342915015046, 1788115871115010062, 1788110916115010009}},
		"ztf-avro-alert/2019_01_10_739260766315010006.avro":      {vsn: "3.2", candids: []int64{739260766315010006}},
		"ztf-avro-alert/472263571115115000.avro":                 {vsn: "3.3", candids: []int64{472263571115115000}},
		h + "v0-unversioned/87704463155000.avro":                 {candids: []int64{-87704463155000}},
		h + "v0-unversioned/87704463155001.avro":                 {candids: []int64{-87704463155001}},
		h + "v0-unversioned/87704463155002.avro":                 {candids: []int64{-87704463155002}},
		h + "v1.1/1726958725155000.avro":                         {vsn: "1.1", candids: []int64{-1726958725155000}},
		h + "v1.1/1726958725155001.avro":                         {vsn: "1.1", candids: []int64{-1726958725155001}},
		h + "v1.1/1726958725155002.avro":                         {vsn: "1.1", candids: []int64{-1726958725155002}},
		h + "v1.7/396522680015020000.avro":                       {vsn: "1.7", candids: []int64{396522680015020000}},
		h + "v1.7/396522680015025001.avro":                       {vsn: "1.7", candids: []int64{396522680015025001}},
		h + "v1.8/396522680015040000.avro":                       {vsn: "1.8", candids: []int64{396522680015040000}},
		h + "v1.8/396522680015040001.avro":                       {vsn: "1.8", candids: []int64{396522680015040001}},
		h + "v1.8/396522680015040002.avro":                       {vsn: "1.8", candids: []int64{396522680015040002}},
		h + "v2.0/472263571115090000.avro":                       {vsn: "2.0", candids: []int64{472263571115090000}},
		h + "v2.0/472263571115095000.avro":                       {vsn: "2.0", candids: []int64{472263571115095000}},
		h + "v2.0/472263571115095002.avro":                       {vsn: "2.0", candids: []int64{472263571115095002}},
		h + "v2.0/472263571115095005.avro":                       {vsn: "2.0", candids: []int64{472263571115095005}},
		h + "v3.0/472263571115115000.avro":                       {vsn: "3.0", candids: []int64{472263571115115000}},
		h + "v3.0/472263571115115008.avro":                       {vsn: "3.0", candids: []int64{472263571115115008}},
		h + "v3.0/472263571115115011.avro":                       {vsn: "3.0", candids: []int64{472263571115115011}},
		h + "v3.0/472263571115115014.avro":                       {vsn: "3.0", candids: []int64{472263571115115014}},
		h + "v3.1/472263571115115000.avro":                       {vsn: "3.1", candids: []int64{472263571115115000}},
		h + "v3.1/472263571115115008.avro":                       {vsn: "3.1", candids: []int64{472263571115115008}},
		h + "v3.1/472263571115115011.avro":                       {vsn: "3.1", candids: []int64{472263571115115011}},
		h + "v3.1/472263571115115014.avro":                       {vsn: "3.1", candids: []int64{472263571115115014}},
		h + "v3.2/472263571115115000.avro":                       {vsn: "3.2", candids: []int64{472263571115115000}},
		h + "v3.5/1661382530015060001.avro":                      {vsn: "3.5", candids: []int64{1661382530015060001}},
		h + "v3.5/forcedphot_test_1660293514215020000.avro":      {vsn: "3.5", candids: []int64{1660293514215020000}},
	} {
		t.Run(name, func(t *testing.T) {
			b, ok := files[filepath.FromSlash(name)]
			if !ok {
				t.Fatal("sample file missing")
			}
			hdr, blocks, err := readAll(b)
			if err != nil {
				t.Fatal(err)
			}
			clean, err := newCleaner().clean(hdr.Schema())
			if err != nil {
				t.Fatal(err)
			}
			if own := bytes.Equal(clean, hdr.Schema()); own != tc.clean {
				t.Errorf("parsed from its own bytes: %v, want %v", own, tc.clean)
			}
			s, err := ParseSchema(hdr.Schema())
			if err != nil {
				t.Fatal(err)
			}
			plan, err := Compile(hdr.Schema())
			if err != nil {
				t.Fatal(err)
			}
			var candids []int64
			r := avro.NewReader(nil, 0)
			for _, blk := range blocks {
				for off := 0; off < len(blk.Data); {
					n, err := plan.Skip(blk.Data[off:])
					if err != nil {
						t.Fatal(err)
					}
					var m map[string]any
					r.Reset(blk.Data[off : off+n])
					r.Error = nil
					r.ReadVal(s, &m)
					if r.Error != nil {
						t.Fatalf("alert %d: %v", len(candids), r.Error)
					}
					if r.Peek(); !errors.Is(r.Error, io.EOF) {
						t.Fatalf("alert %d: hamba stops before the end of the record", len(candids))
					}
					vsn, ok := unwrapUnion(m["schemavsn"]).(string)
					if !ok {
						vsn, _ = s.(*avro.RecordSchema).Prop("version").(string)
					}
					if vsn != tc.vsn {
						t.Errorf("schemavsn %s, want %s", vsn, tc.vsn)
					}
					c, _ := unwrapUnion(m["candid"]).(int64)
					candids = append(candids, c)
					off += n
				}
			}
			if fmt.Sprint(candids) != fmt.Sprint(tc.candids) {
				t.Errorf("candids %v, want %v", candids, tc.candids)
			}
		})
	}
	if len(files) != 36 {
		t.Errorf("%d sample files, the table lists 36", len(files))
	}
}

// unwrapUnion gives the value of a union hamba decoded as {"branch": v}.
func unwrapUnion(v any) any {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for _, x := range m {
			return x
		}
	}
	return v
}

// TestParseSchema: the edge cases of the copies this parser replaced. Each
// case lists the defaults kept, by field name; every other is dropped.
func TestParseSchema(t *testing.T) {
	record := func(fields string) string {
		return `{"type":"record","name":"alert","namespace":"ztf","fields":[` + fields + `]}`
	}
	for name, tc := range map[string]struct {
		schema string
		kept   []string
		err    error
	}{
		// ZTF before 4.x: a null default on a union of a type then null.
		"null default, type first": {schema: record(`{"name":"magpsf","type":["float","null"],"default":null}`)},
		// The 2020-2021 operational alerts: tooflag.
		"0 default, null first": {schema: record(`{"name":"tooflag","type":["null","int"],"default":0}`)},
		"valid union defaults kept": {schema: record(`{"name":"a","type":["null","float"],"default":null},
			{"name":"b","type":["int","null"],"default":0},{"name":"c","type":"int","default":0}`), kept: []string{"a", "b", "c"}},
		// A null default on a union whose first branch is a named record,
		// as ZTF's cutouts.
		"named record first": {schema: record(`{"name":"cutoutScience","type":[{"type":"record","name":"cutout","fields":[
			{"name":"stampData","type":"bytes"}]},"null"],"default":null},{"name":"cutoutTemplate","type":["ztf.cutout","null"],"default":null},
			{"name":"cutoutDifference","type":["null","cutout"],"default":null}`), kept: []string{"cutoutDifference"}},
		// The old alertcat copy cleaned record fields at every depth.
		"nested record": {schema: record(`{"name":"candidate","type":{"type":"record","name":"candidate","fields":[
			{"name":"jd","type":"double","default":null},{"name":"fid","type":"int","default":1}]}}`), kept: []string{"fid"}},
		"wrong kind": {schema: record(`{"name":"a","type":"int","default":"0"},{"name":"b","type":"string","default":0},
			{"name":"c","type":"boolean","default":false},{"name":"d","type":"long","default":1.5},{"name":"e","type":"int","default":3000000000},
			{"name":"f","type":"long","default":3000000000},{"name":"g","type":"double","default":"NaN"},{"name":"h","type":"float","default":1}`),
			kept: []string{"c", "f", "h"}},
		"bytes and fixed": {schema: record(`{"name":"a","type":"bytes","default":"\u00ff"},{"name":"b","type":"bytes","default":"\u0100"},
			{"name":"c","type":{"type":"fixed","name":"f","size":2},"default":"ab"},{"name":"d","type":"f","default":"abc"}`), kept: []string{"a", "c"}},
		"arrays and maps": {schema: record(`{"name":"a","type":{"type":"array","items":"int"},"default":[1,2]},
			{"name":"b","type":{"type":"array","items":"int"},"default":[null]},{"name":"c","type":{"type":"map","values":"string"},"default":{"k":"v"}},
			{"name":"d","type":{"type":"map","values":"string"},"default":{"k":1}},{"name":"e","type":["null",{"type":"array","items":"int"}],"default":[]}`),
			kept: []string{"a", "c"}},
		"record defaults": {schema: record(`{"name":"a","type":{"type":"record","name":"r","fields":[{"name":"x","type":"int"},
			{"name":"y","type":"string","default":"s"}]},"default":{"x":1}},{"name":"b","type":"r","default":{"y":"t"}},{"name":"c","type":"r","default":null}`),
			kept: []string{"y", "a"}},
		// hamba refuses a record default that leaves out a bytes field with
		// a default of its own, which the specification allows: every
		// default goes rather than the schema.
		"hamba stricter": {schema: record(`{"name":"a","type":{"type":"record","name":"r","fields":[{"name":"x","type":"bytes","default":"z"}]},"default":{}}`)},
		"logical type":   {schema: record(`{"name":"a","type":{"type":"long","logicalType":"timestamp-millis"},"default":0}`), kept: []string{"a"}},
		"enum":           {schema: record(`{"name":"a","type":{"type":"enum","name":"e","symbols":["X","Y"],"default":"Z"},"default":"Y"},{"name":"b","type":"e","default":"Z"}`), kept: []string{"a"}},
		"recursive":      {schema: `{"type":"record","name":"list","fields":[{"name":"next","type":["null","list"],"default":null},{"name":"loop","type":["null","list"],"default":{}}]}`, kept: []string{"next"}},
		"not a record":   {schema: `{"type":"array","items":{"type":"record","name":"r","fields":[{"name":"a","type":["float","null"],"default":null}]}}`},
		"primitive":      {schema: `"long"`},
		"not json":       {schema: `{`, err: ErrSchema},
		"bare name":      {schema: `long`, err: ErrSchema},
		"two documents":  {schema: `"long" "int"`, err: ErrSchema},
		"unknown name":   {schema: record(`{"name":"a","type":["null","candidate"],"default":null}`), err: ErrSchema},
		"no fields":      {schema: `{"type":"record","name":"r"}`, err: ErrSchema},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := ParseSchema([]byte(tc.schema))
			if !errors.Is(err, tc.err) {
				t.Fatalf("parse: %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			var kept []string
			collectDefaults(s, map[string]bool{}, &kept)
			if fmt.Sprint(kept) != fmt.Sprint(tc.kept) && !(len(kept) == 0 && len(tc.kept) == 0) {
				t.Errorf("defaults kept on %v, want %v", kept, tc.kept)
			}
		})
	}
}

// collectDefaults lists the fields with a default, depth first.
func collectDefaults(s avro.Schema, seen map[string]bool, out *[]string) {
	switch s := s.(type) {
	case *avro.RecordSchema:
		if seen[s.FullName()] {
			return
		}
		seen[s.FullName()] = true
		for _, f := range s.Fields() {
			collectDefaults(f.Type(), seen, out)
			if f.HasDefault() {
				*out = append(*out, f.Name())
			}
		}
	case *avro.RefSchema:
		collectDefaults(s.Schema(), seen, out)
	case *avro.UnionSchema:
		for _, b := range s.Types() {
			collectDefaults(b, seen, out)
		}
	case *avro.ArraySchema:
		collectDefaults(s.Items(), seen, out)
	case *avro.MapSchema:
		collectDefaults(s.Values(), seen, out)
	}
}

// TestParseSchemaExpandingDefaults: record k has two fields of record k-1,
// each defaulting to {}, so its default expands to 2^k values, which hamba
// checks one by one. Past maxDefaultValues they are dropped, and the parse
// takes milliseconds rather than hours.
func TestParseSchemaExpandingDefaults(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"type":"record","name":"top","fields":[{"name":"r0","type":{"type":"record","name":"r0","fields":[{"name":"v","type":"int","default":0}]}}`)
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, `,{"name":"r%d","type":{"type":"record","name":"r%d","fields":[{"name":"a","type":"r%d","default":{}},{"name":"b","type":"r%d","default":{}}]}}`, i, i, i-1, i-1)
	}
	b.WriteString(`]}`)
	s, err := ParseSchema([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	collectDefaults(s, map[string]bool{}, &kept)
	if want := 1 + 2*14; len(kept) != want { // r1 to r14: 2^14 values < maxDefaultValues
		t.Errorf("%d defaults kept, want %d", len(kept), want)
	}
}

// TestParseSchemaNamesStayApart: one parse does not see the names another
// defined, as it would through hamba's global cache; the 3.5 prototypes
// use ztf.alert.prv_candidate for another record.
func TestParseSchemaNamesStayApart(t *testing.T) {
	if _, err := ParseSchema([]byte(`{"type":"record","name":"ztf.alert.prv_candidate","fields":[{"name":"jd","type":"double"}]}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseSchema([]byte(`{"type":"array","items":"ztf.alert.prv_candidate"}`)); !errors.Is(err, ErrSchema) {
		t.Errorf("a name from an earlier parse resolved: %v", err)
	}
}

// TestParseSchemaFiles reads the 4.02 schema folder in dependency order to
// the schema the 4.02 sample alert carries.
func TestParseSchemaFiles(t *testing.T) {
	dir := filepath.Join(filepath.Dir(sampleDir()), "schema")
	var paths []string
	for _, n := range []string{"cutout", "candidate", "prv_candidate", "fp_hist", "alert"} {
		paths = append(paths, filepath.Join(dir, n+".avsc"))
	}
	s, err := ParseSchemaFiles(paths...)
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, err := readAll(sampleFiles(t)[filepath.Join("other-sources", "boom", "2695378462115010012.avro")])
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseSchema(hdr.Schema())
	if err != nil {
		t.Fatal(err)
	}
	if s.Fingerprint() != want.Fingerprint() {
		t.Errorf("schema/ and the 4.02 alert differ: %s", s.String()[:80])
	}
	if _, err := ParseSchemaFiles(paths[1:]...); !errors.Is(err, ErrSchema) {
		t.Errorf("candidate.avsc without cutout.avsc before it: %v", err)
	}
	if _, err := ParseSchemaFiles(filepath.Join(dir, "missing.avsc")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func sampleDir() string {
	if dir := os.Getenv("ZTF_SAMPLE_ALERTS"); dir != "" {
		return dir
	}
	return "../../shared/data/ztf/alerts"
}

// TestSchemas: a text is parsed and compiled once while cached, the least
// recently used goes past the size, and concurrent callers share one parse.
func TestSchemas(t *testing.T) {
	text := func(i int) string {
		return fmt.Sprintf(`{"type":"record","name":"r%d","fields":[{"name":"x","type":["float","null"],"default":null}]}`, i)
	}
	c := NewSchemas(2)
	a, err := c.Parse(text(0))
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Compile(text(0))
	if err != nil || len(p.Fields) != 1 {
		t.Fatalf("compile: %v", err)
	}
	if again, _ := c.Parse(strings.Clone(text(0))); again != a {
		t.Error("the same text parsed twice")
	}
	if again, _ := c.Compile(text(0)); again != p {
		t.Error("the same text compiled twice")
	}
	c.Parse(text(1))
	c.Parse(text(0)) // 0 is now the most recently used
	c.Parse(text(2)) // so 1 goes
	if c.Len() != 2 {
		t.Errorf("%d schemas held, size 2", c.Len())
	}
	if again, _ := c.Parse(text(0)); again != a {
		t.Error("the most recently used schema was dropped")
	}
	if _, err := c.Parse(`{`); !errors.Is(err, ErrSchema) {
		t.Errorf("bad schema: %v", err)
	}
	if _, err := c.Compile(`{`); !errors.Is(err, ErrSchema) {
		t.Errorf("bad schema: %v", err)
	}

	c = NewSchemas(0)
	var wg sync.WaitGroup
	got := make([]avro.Schema, 8)
	for i := range got {
		wg.Go(func() { got[i], _ = c.Parse(text(9)) })
	}
	wg.Wait()
	for _, s := range got {
		if s == nil || s != got[0] {
			t.Fatal("concurrent callers got different parses")
		}
	}
}

// FuzzParseSchema: schema text comes from outside (every alert carries
// its own); whatever it holds, parsing returns rather than panics, and a
// schema that parses strictly parses leniently to the same thing.
func FuzzParseSchema(f *testing.F) {
	hdr, _, err := readAll(sampleFiles(f)[filepath.Join("ztf-avro-alert", "history", "v1.1", "1726958725155001.avro")])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hdr.Schema())
	f.Add([]byte(`{"type":"record","name":"a","fields":[{"name":"x","type":["float","null"],"default":null},{"name":"r","type":"a","default":{}}]}`))
	f.Add([]byte(`{"type":"enum","name":"e","symbols":["A"],"default":"B"}`))
	f.Fuzz(func(t *testing.T, text []byte) {
		s, err := ParseSchema(text)
		if err != nil && !errors.Is(err, ErrSchema) {
			t.Fatalf("error outside ErrSchema: %v", err)
		}
		strict, serr := parseHamba(text, &avro.SchemaCache{})
		if serr == nil && err == nil && strict.Fingerprint() != s.Fingerprint() {
			t.Fatalf("lenient %s, strict %s", s, strict)
		}
	})
}
