package packager

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
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
	s := &seeder{h: h, schemas: avrofile.NewSchemas(0), rejectDir: rejectDir, log: logger, batch: h.Batch()}
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
	sc := s.h.schema
	var p PrvCandidate
	if f, why := rowFromMap(sc.PrvCandidate, c, &p); f != "" {
		return rows, cand, "candidate." + f, why
	}
	if p.Candid == nil {
		return rows, cand, "candidate.candid", "null"
	}
	rows.prv = append(rows.prv, p)
	for i, v := range unionArray(m["prv_candidates"]) {
		r, _ := v.(map[string]any)
		var p PrvCandidate
		if f, why := rowFromMap(sc.PrvCandidate, r, &p); f != "" {
			return rows, cand, fmt.Sprintf("prv_candidates[%d].%s", i, f), why
		}
		rows.prv = append(rows.prv, p)
	}
	for i, v := range unionArray(m["fp_hists"]) {
		r, _ := v.(map[string]any)
		var f FpHist
		if fl, why := rowFromMap(sc.FpHist, r, &f); fl != "" {
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

// rowFromMap fills row (a 4.02 row struct) from a decoded record of any
// schema version by field name, checked as ingest checks its JSON: a field
// rec requires must be there, with a value of its type. Fields rec does not
// have are left out. It returns the offending field and why, or "".
func rowFromMap(rec *avro.RecordSchema, m map[string]any, row any) (string, string) {
	if m == nil {
		return "-", "not a record"
	}
	fields := make(map[string]json.RawMessage, len(rec.Fields()))
	for _, f := range rec.Fields() {
		v, ok := m[f.Name()]
		if !ok || v == nil {
			continue // checkRecord says whether it may be missing
		}
		if u, ok := v.(map[string]any); ok && len(u) == 1 { // a non-null union branch
			for _, inner := range u {
				v = inner
			}
		}
		if x, ok := asFloat(v); ok && (math.IsNaN(x) || math.IsInf(x, 0)) {
			if nullable(f.Type()) {
				continue // 4.02 says "no value" with null, not NaN
			}
			return f.Name(), "NaN or infinite in a field that cannot be null"
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return f.Name(), err.Error()
		}
		fields[f.Name()] = raw
	}
	if field, reason := checkRecord(rec, fields); field != "" {
		return field, reason
	}
	if err := decodeFields(fields, row); err != nil {
		return "-", err.Error()
	}
	return "", ""
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
