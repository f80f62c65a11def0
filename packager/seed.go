package packager

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/hamba/avro/v2"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// Seeding the history. A new deployment starts with empty histories, so its
// first month of alerts would carry less than ZTF's 30 days. SeedHistory
// fills the store from alerts sent before: each alert's candidate (as a
// detection), its prv_candidates (detections, and upper limits where candid
// is null) and its fp_hists go in under its objectId, keyed as the packager
// keys them, so an alert read twice, or a detection that is both one alert's
// candidate and a later alert's prv_candidate, is one row.
//
// Inputs: .avro files (one alert or several), ZTF's nightly tarballs
// (.tar.gz, .tgz or .tar of <candid>.avro members, MD5SUMS ignored) and
// folders of either, walked in name order.
//
// Rows are read by name from the alert's own writer schema (1.x to 4.02,
// parsed by avrofile's lenient parser) into the 4.02 row records: fields
// 4.02 does not have are left out; a field 4.02 requires that the alert
// lacks, or holds with another type, refuses the whole alert with the field
// named. Of the sample alerts, schemas 2.0 to 4.02 are read; the 2016
// prototypes (no objectId), schemas 1.7 and 1.8 (no rbversion, which 4.02
// requires) and the 3.5 forced-photometry prototypes (prv_candidates of
// another shape) are refused. Refused alerts go to the reject folder
// as packaging refusals do. Rows older than HistoryDays are pruned by the
// packager as it goes, so seeding from old nights costs nothing later.

// SeedResult counts what SeedHistory read.
type SeedResult struct {
	Files      int // alert files and archive members read
	Alerts     int // alerts whose rows are in the store
	Detections int // detection rows: candidates and prv_candidates with a candid
	Limits     int // upper limits: prv_candidates with a null candid
	Forced     int // fp_hists rows
	Rejected   int // alerts and files refused
}

// seedCommitRows bounds a history batch: a night's tarball is too big for one.
const seedCommitRows = 50_000

// SeedHistory reads the alerts under paths into h. Refused inputs are
// written under rejectDir (see the package doc) and counted; only a failing
// store or an unreadable path stops it. logger may be nil.
func SeedHistory(ctx context.Context, h *History, paths []string, rejectDir string, logger *zap.Logger) (SeedResult, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	s := newSeeder(h, rejectDir, logger)
	for _, p := range paths {
		if err := s.path(ctx, p); err != nil {
			return s.res, err
		}
	}
	return s.res, s.commit()
}

type seeder struct {
	h         *History
	schemas   *avrofile.Schemas
	rejectDir string
	log       *zap.Logger
	batch     *HistoryBatch
	rows      int
	res       SeedResult
	// The 4.02 row fields and where they go in PrvCandidate and FpHist.
	prvFields, fpFields []rowField
}

func newSeeder(h *History, rejectDir string, logger *zap.Logger) *seeder {
	return &seeder{h: h, schemas: avrofile.NewSchemas(0), rejectDir: rejectDir, log: logger, batch: h.Batch(),
		prvFields: rowFieldsOf(h.schema.PrvCandidate, reflect.TypeFor[PrvCandidate]()),
		fpFields:  rowFieldsOf(h.schema.FpHist, reflect.TypeFor[FpHist]())}
}

func (s *seeder) path(ctx context.Context, p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("packager: seed: %w", err)
	}
	if !st.IsDir() {
		return s.file(ctx, p)
	}
	return filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("packager: seed: %w", err)
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".avro") || isTarball(path)) {
			return nil
		}
		return s.file(ctx, path)
	})
}

func isTarball(path string) bool {
	for _, ext := range []string{".tar.gz", ".tgz", ".tar"} {
		if strings.HasSuffix(path, ext) {
			return true
		}
	}
	return false
}

// file reads one alert file or tarball.
func (s *seeder) file(ctx context.Context, path string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !isTarball(path) {
		b, err := os.ReadFile(path)
		if err != nil {
			s.refuse(Reject{Exposure: path, Candidate: "-", Field: "file", Reason: err.Error()})
			return nil
		}
		return s.alerts(path, b)
	}
	f, err := os.Open(path)
	if err != nil {
		s.refuse(Reject{Exposure: path, Candidate: "-", Field: "file", Reason: err.Error()})
		return nil
	}
	defer f.Close()
	var r io.Reader = bufio.NewReaderSize(f, 1<<20)
	if !strings.HasSuffix(path, ".tar") {
		gz, err := gzip.NewReader(r)
		if err != nil {
			s.refuse(Reject{Exposure: path, Candidate: "-", Field: "file", Reason: "not gzip: " + err.Error()})
			return nil
		}
		defer gz.Close()
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			// What was read so far stays; the rest of a damaged tarball is lost.
			s.refuse(Reject{Exposure: path, Candidate: "-", Field: "file", Reason: "tar: " + err.Error()})
			return nil
		}
		if hdr.Typeflag != tar.TypeReg || !strings.HasSuffix(hdr.Name, ".avro") {
			continue
		}
		if hdr.Size > avrofile.MaxBlockSize {
			s.refuse(Reject{Exposure: path + ":" + hdr.Name, Candidate: "-", Field: "file", Reason: fmt.Sprintf("%d bytes is not one alert", hdr.Size)})
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			s.refuse(Reject{Exposure: path, Candidate: "-", Field: "file", Reason: "tar: " + err.Error()})
			return nil
		}
		if err := s.alerts(path+":"+hdr.Name, b); err != nil {
			return err
		}
	}
}

// alerts reads every alert of container file b (named name).
func (s *seeder) alerts(name string, b []byte) error {
	s.res.Files++
	refuseFile := func(reason string) {
		s.refuse(Reject{Exposure: name, Candidate: "-", Field: "file", Reason: reason, Input: b, Name: filepath.Base(name)})
	}
	h, off, err := avrofile.ParseHeader(b)
	if err != nil {
		refuseFile(err.Error())
		return nil
	}
	schema, err := s.schemas.Parse(string(h.Schema()))
	if err != nil {
		refuseFile("writer schema: " + err.Error())
		return nil
	}
	n := 0
	for off < len(b) {
		blk, size, err := avrofile.ReadBlock(b[off:], h.Sync)
		if err == nil {
			blk.Data, err = avrofile.Decompress(h.Codec(), blk.Data)
		}
		if err != nil {
			refuseFile(err.Error())
			return nil
		}
		off += size
		r := avro.NewReader(nil, 0).Reset(blk.Data)
		for range blk.Count {
			n++
			var m map[string]any
			if r.ReadVal(schema, &m); r.Error != nil {
				refuseFile(fmt.Sprintf("alert %d: %v", n, r.Error))
				return nil
			}
			if err := s.alert(name, b, m); err != nil {
				return err
			}
		}
	}
	return nil
}

// seedRows are the history rows of one alert.
type seedRows struct {
	object string
	prv    []PrvCandidate
	fp     []FpHist
}

// alert converts one decoded alert and adds its rows to the batch.
func (s *seeder) alert(name string, file []byte, m map[string]any) error {
	rows, cand, field, reason := s.convert(m)
	if field != "" {
		s.refuse(Reject{Exposure: name, Candidate: cand, Field: field, Reason: reason, Input: file, Name: filepath.Base(name)})
		return nil
	}
	for i := range rows.prv {
		if err := s.batch.AddDetection(rows.object, &rows.prv[i]); err != nil {
			return err
		}
		if rows.prv[i].Candid != nil {
			s.res.Detections++
		} else {
			s.res.Limits++
		}
	}
	for i := range rows.fp {
		if err := s.batch.AddForced(rows.object, &rows.fp[i]); err != nil {
			return err
		}
		s.res.Forced++
	}
	s.res.Alerts++
	s.rows += len(rows.prv) + len(rows.fp)
	if s.rows >= seedCommitRows {
		return s.commit()
	}
	return nil
}

func (s *seeder) commit() error {
	if s.rows == 0 {
		return nil
	}
	if err := s.batch.Commit(); err != nil {
		return err
	}
	s.batch, s.rows = s.h.Batch(), 0
	return nil
}

// convert reads the rows of alert m; a non-empty field says why it is
// refused. cand is the alert's candid for the reject, or "-".
func (s *seeder) convert(m map[string]any) (rows seedRows, cand, field, reason string) {
	cand = "-"
	c, _ := m["candidate"].(map[string]any)
	if id, ok := c["candid"].(int64); ok {
		cand = strconv.FormatInt(id, 10)
	}
	obj, _ := m["objectId"].(string)
	if !validObjectID(obj) {
		return rows, cand, "objectId", fmt.Sprintf("%q is not ZTF<yy><7 letters> (prototype alerts before 2018 have none)", obj)
	}
	rows.object = obj
	vsn, _ := m["schemavsn"].(string)
	if vsn == "" {
		vsn = "unversioned"
	}
	defer func() {
		if strings.HasPrefix(reason, "missing") {
			reason = "missing in this schema " + vsn + " alert and required by 4.02"
		}
	}()
	if c == nil {
		return rows, cand, "candidate", "missing"
	}
	var p PrvCandidate
	if f, why := rowFromMap(s.prvFields, c, &p); f != "" {
		return rows, cand, "candidate." + f, why
	}
	if p.Candid == nil {
		return rows, cand, "candidate.candid", "null"
	}
	rows.prv = append(rows.prv, p)
	for i, v := range unionArray(m["prv_candidates"]) {
		r, _ := v.(map[string]any)
		var p PrvCandidate
		if f, why := rowFromMap(s.prvFields, r, &p); f != "" {
			return rows, cand, fmt.Sprintf("prv_candidates[%d].%s", i, f), why
		}
		rows.prv = append(rows.prv, p)
	}
	for i, v := range unionArray(m["fp_hists"]) {
		r, _ := v.(map[string]any)
		var f FpHist
		if fl, why := rowFromMap(s.fpFields, r, &f); fl != "" {
			return rows, cand, fmt.Sprintf("fp_hists[%d].%s", i, fl), why
		}
		rows.fp = append(rows.fp, f)
	}
	for _, p := range rows.prv {
		if !(p.JD > 0) {
			return rows, cand, "jd", fmt.Sprintf("%v is not a Julian date", p.JD)
		}
	}
	for _, f := range rows.fp {
		if !(f.JD > 0) {
			return rows, cand, "fp_hists.jd", fmt.Sprintf("%v is not a Julian date", f.JD)
		}
	}
	return rows, cand, "", ""
}

// unionArray is the array of a ["null", array] field as hamba decodes it
// into any: nil, []any, or {"array": []any}.
func unionArray(v any) []any {
	switch a := v.(type) {
	case []any:
		return a
	case map[string]any:
		if len(a) == 1 {
			if arr, ok := a["array"].([]any); ok {
				return arr
			}
		}
	}
	return nil
}

// rowFromMap fills row (a pointer to a 4.02 row struct, whose fields are
// fields: rowFieldsOf its record schema) from a decoded
// record of any schema version, by field name: a field the 4.02 record
// requires must be there, with a value of its type (numbers convert when
// the value fits, as ingest's JSON numbers do). Fields 4.02 does not have
// are left out. It returns the offending field and why, or "".
//
// Reflection rather than a JSON round trip, which cost two thirds of the
// time of seeding an alert.
func rowFromMap(fields []rowField, m map[string]any, row any) (string, string) {
	if m == nil {
		return "-", "not a record"
	}
	rv := reflect.ValueOf(row).Elem()
	for _, f := range fields {
		v, ok := m[f.name]
		if u, isUnion := v.(map[string]any); isUnion && len(u) == 1 { // a non-null union branch
			for _, inner := range u {
				v = inner
			}
		}
		if x, isFloat := asFloat(v); isFloat && (math.IsNaN(x) || math.IsInf(x, 0)) && f.nullable {
			v = nil // 4.02 says "no value" with null, not NaN
		}
		if !ok || v == nil {
			if !f.nullable {
				return f.name, "missing (required by the 4.02 schema)"
			}
			continue
		}
		if err := setField(rv.Field(f.index), f.avroType, v); err != nil {
			return f.name, err.Error()
		}
	}
	return "", ""
}

// rowField is a field of a 4.02 row record and its struct field.
type rowField struct {
	name     string
	index    int
	nullable bool
	avroType avro.Type // of the non-null branch
}

// rowFieldsOf matches rec's fields to the avro tags of struct type t.
func rowFieldsOf(rec *avro.RecordSchema, t reflect.Type) []rowField {
	byTag := map[string]int{}
	for i := range t.NumField() {
		byTag[t.Field(i).Tag.Get("avro")] = i
	}
	var out []rowField
	for _, f := range rec.Fields() {
		i, ok := byTag[f.Name()]
		if !ok {
			continue
		}
		rf := rowField{name: f.Name(), index: i, avroType: f.Type().Type()}
		if u, isUnion := f.Type().(*avro.UnionSchema); isUnion {
			rf.nullable = u.Nullable()
			for _, b := range u.Types() {
				if b.Type() != avro.Null {
					rf.avroType = b.Type()
				}
			}
		}
		out = append(out, rf)
	}
	return out
}

// setField stores decoded value v into struct field fv (T or *T), of Avro
// type at in 4.02.
func setField(fv reflect.Value, at avro.Type, v any) error {
	if fv.Kind() == reflect.Pointer {
		p := reflect.New(fv.Type().Elem())
		if err := setField(p.Elem(), at, v); err != nil {
			return err
		}
		fv.Set(p)
		return nil
	}
	wrong := func() error { return fmt.Errorf("%w: want %s, have %T %v", errWrongType, at, v, v) }
	switch fv.Kind() {
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return wrong()
		}
		fv.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return wrong()
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		var n int64
		switch x := v.(type) {
		case int:
			n = int64(x)
		case int32:
			n = int64(x)
		case int64:
			n = x
		case float32, float64:
			f, _ := asFloat(x)
			if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
				return wrong()
			}
			n = int64(f)
		default:
			return wrong()
		}
		if at == avro.Int && (n < math.MinInt32 || n > math.MaxInt32) {
			return fmt.Errorf("%w: %d out of int range", errWrongType, n)
		}
		fv.SetInt(n)
	case reflect.Float32, reflect.Float64:
		var f float64
		switch x := v.(type) {
		case float32:
			f = float64(x)
		case float64:
			f = x
		case int:
			f = float64(x)
		case int32:
			f = float64(x)
		case int64:
			f = float64(x)
		default:
			return wrong()
		}
		if fv.Kind() == reflect.Float32 && math.Abs(f) > math.MaxFloat32 && !math.IsInf(f, 0) {
			return fmt.Errorf("%w: %g out of float range", errWrongType, f)
		}
		fv.SetFloat(f)
	default:
		return wrong()
	}
	return nil
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// refuse writes r to the reject folder and counts it.
func (s *seeder) refuse(r Reject) {
	s.res.Rejected++
	s.log.Warn("seed input refused", zap.String("input", r.Exposure), zap.String("candidate", r.Candidate),
		zap.String("field", r.Field), zap.String("reason", r.Reason))
	if err := WriteReject(s.rejectDir, r); err != nil {
		s.log.Error("reject not written", zap.String("input", r.Exposure), zap.Error(err))
	}
}
