package packager

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
)

// Files of an exposure folder; see the package doc.
const (
	IngestCandidates = "candidates.jsonl"
	IngestLimits     = "limits.jsonl"
	IngestForced     = "forced.jsonl"
	IngestCutouts    = "cutouts"
	IngestReady      = "READY"
	IngestDone       = "DONE"
)

// Cutout file suffixes: <candid>_<suffix>.
var cutoutSuffixes = [3]string{"sci.fits.gz", "ref.fits.gz", "diff.fits.gz"}

// Ingest reads exposure folders written by a pipeline under a directory.
type Ingest struct {
	dir    string
	poll   time.Duration
	clock  func() time.Time
	schema *Schema
	seen   map[string]bool
}

// NewIngest reads exposures under dir. With poll > 0 it keeps watching for
// new READY folders; with poll 0 it reads what is ready and then ends.
func NewIngest(dir string, poll time.Duration, clock func() time.Time, schema *Schema) *Ingest {
	if clock == nil {
		clock = time.Now
	}
	return &Ingest{dir: dir, poll: poll, clock: clock, schema: schema, seen: map[string]bool{}}
}

// Next returns the oldest (by name) ready exposure not yet done.
func (in *Ingest) Next(ctx context.Context) (*Exposure, error) {
	for {
		name, err := in.ready()
		if err != nil {
			return nil, err
		}
		if name != "" {
			in.seen[name] = true
			return in.Read(name), nil
		}
		if in.poll <= 0 {
			return nil, io.EOF
		}
		t := time.NewTimer(in.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (in *Ingest) ready() (string, error) {
	ents, err := os.ReadDir(in.dir)
	if err != nil {
		return "", fmt.Errorf("packager: ingest: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.IsDir() && !in.seen[e.Name()] {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		d := filepath.Join(in.dir, n)
		if exists(filepath.Join(d, IngestReady)) && !exists(filepath.Join(d, IngestDone)) {
			return n, nil
		}
	}
	return "", nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Done marks an exposure packaged, so a restart does not send it again.
func (in *Ingest) Done(exp *Exposure) error {
	return os.WriteFile(filepath.Join(in.dir, exp.ID, IngestDone), nil, 0o644)
}

// Read loads exposure folder name: every valid candidate with its cutouts,
// and a Reject for every invalid one.
func (in *Ingest) Read(name string) *Exposure {
	exp := &Exposure{ID: name, Arrived: in.clock()}
	dir := filepath.Join(in.dir, name)
	refuse := func(cand, field, reason string, input []byte, files map[string][]byte) {
		exp.Rejects = append(exp.Rejects, Reject{Exposure: name, Candidate: cand, Field: field, Reason: reason, Input: input, Name: cand + ".json", Files: files})
	}
	// Candidates are checked in parallel (inflating cutouts is most of the
	// work), then taken in file order.
	type line struct {
		n    int
		text []byte
	}
	var lines []line
	err := eachLine(filepath.Join(dir, IngestCandidates), func(n int, text []byte) {
		lines = append(lines, line{n, text})
	})
	if err != nil {
		refuse("-", IngestCandidates, err.Error(), nil, nil)
	}
	dets := make([]*Detection, len(lines))
	rejs := make([]*Reject, len(lines))
	var wg sync.WaitGroup
	next := make(chan int, len(lines))
	for i := range lines {
		next <- i
	}
	close(next)
	for range min(runtime.GOMAXPROCS(0), len(lines)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				dets[i], rejs[i] = in.candidate(name, dir, lines[i].n, lines[i].text)
			}
		}()
	}
	wg.Wait()
	for i := range lines {
		if rejs[i] != nil {
			exp.Rejects = append(exp.Rejects, *rejs[i])
		} else {
			exp.Detections = append(exp.Detections, *dets[i])
		}
	}
	for _, h := range []struct {
		file, key string
		rec       *avro.RecordSchema
	}{{IngestLimits, "prv_candidate", in.schema.PrvCandidate}, {IngestForced, "fp_hist", in.schema.FpHist}} {
		path := filepath.Join(dir, h.file)
		if !exists(path) {
			continue
		}
		err := eachLine(path, func(n int, line []byte) {
			cand := h.file + ":" + strconv.Itoa(n)
			var row map[string]json.RawMessage
			if err := json.Unmarshal(line, &row); err != nil {
				refuse(cand, "json", err.Error(), line, nil)
				return
			}
			var obj string
			if err := json.Unmarshal(row["objectId"], &obj); err != nil || !validObjectID(obj) {
				refuse(cand, "objectId", "missing or not ZTF<yy><7 letters>", line, nil)
				return
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(row[h.key], &fields); err != nil || fields == nil {
				refuse(cand, h.key, "missing or not an object", line, nil)
				return
			}
			if field, reason := checkRecord(h.rec, fields); field != "" {
				refuse(cand, field, reason, line, nil)
				return
			}
			if h.key == "prv_candidate" {
				var p PrvCandidate
				if err := decodeFields(fields, &p); err != nil {
					refuse(cand, h.key, err.Error(), line, nil)
					return
				}
				exp.Limits = append(exp.Limits, Row[PrvCandidate]{ObjectID: obj, Row: p})
			} else {
				var f FpHist
				if err := decodeFields(fields, &f); err != nil {
					refuse(cand, h.key, err.Error(), line, nil)
					return
				}
				exp.Forced = append(exp.Forced, Row[FpHist]{ObjectID: obj, Row: f})
			}
		})
		if err != nil {
			refuse("-", h.file, err.Error(), nil, nil)
		}
	}
	return exp
}

// candidate checks one line of candidates.jsonl and reads its cutouts.
func (in *Ingest) candidate(exposure, dir string, n int, line []byte) (*Detection, *Reject) {
	refuse := func(cand, field, reason string, input []byte, files map[string][]byte) *Reject {
		return &Reject{Exposure: exposure, Candidate: cand, Field: field, Reason: reason, Input: input, Name: cand + ".json", Files: files}
	}
	cand := "line" + strconv.Itoa(n)
	var in0 struct {
		ObjectID  *string         `json:"objectId"`
		Candidate json.RawMessage `json:"candidate"`
	}
	var fields0 map[string]json.RawMessage
	if err := json.Unmarshal(line, &in0); err != nil {
		return nil, refuse(cand, "json", err.Error(), line, nil)
	}
	if err := json.Unmarshal(in0.Candidate, &fields0); err != nil && in0.Candidate != nil {
		return nil, refuse(cand, "candidate", "not an object: "+err.Error(), line, nil)
	}
	if c, ok := fields0["candid"]; ok {
		if id, err := strconv.ParseInt(string(c), 10, 64); err == nil {
			cand = strconv.FormatInt(id, 10)
		}
	}
	if in0.ObjectID == nil || !validObjectID(*in0.ObjectID) {
		return nil, refuse(cand, "objectId", "missing or not ZTF<yy><7 letters>", line, nil)
	}
	if fields0 == nil {
		return nil, refuse(cand, "candidate", "missing", line, nil)
	}
	if field, reason := checkRecord(in.schema.Candidate, fields0); field != "" {
		return nil, refuse(cand, field, reason, line, nil)
	}
	d := Detection{ObjectID: *in0.ObjectID}
	if err := json.Unmarshal(in0.Candidate, &d.Candidate); err != nil {
		return nil, refuse(cand, "candidate", err.Error(), line, nil)
	}
	if field, reason := checkCandidate(&d.Candidate); field != "" {
		return nil, refuse(cand, field, reason, line, nil)
	}
	files := map[string][]byte{}
	cut := []*Cutout{&d.Science, &d.Template, &d.Difference}
	fields := []string{"cutoutScience", "cutoutTemplate", "cutoutDifference"}
	for i, suf := range cutoutSuffixes {
		fn := cand + "_" + suf
		b, err := os.ReadFile(filepath.Join(dir, IngestCutouts, fn))
		if err != nil {
			return nil, refuse(cand, fields[i], fmt.Sprintf("%s: %v", fn, err), line, files)
		}
		files[fn] = b
		if err := CheckStamp(b); err != nil {
			return nil, refuse(cand, fields[i], fmt.Sprintf("%s: %v", fn, err), line, files)
		}
		*cut[i] = Cutout{FileName: fn, StampData: b}
	}
	return &d, nil
}

func eachLine(path string, fn func(n int, line []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		fn(n, append([]byte(nil), line...))
	}
	return sc.Err()
}

func decodeFields(fields map[string]json.RawMessage, v any) error {
	b, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func validObjectID(s string) bool {
	if len(s) != 12 || s[:3] != "ZTF" || s[3] < '0' || s[3] > '9' || s[4] < '0' || s[4] > '9' {
		return false
	}
	for _, c := range s[5:] {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// checkRecord checks fields against record schema rec: every field without
// a null branch present, every value of its Avro type, no unknown field. It
// returns the first offending field (in schema order) and why.
func checkRecord(rec *avro.RecordSchema, fields map[string]json.RawMessage) (string, string) {
	known := make(map[string]bool, len(rec.Fields()))
	for _, f := range rec.Fields() {
		known[f.Name()] = true
		raw, ok := fields[f.Name()]
		if !ok || string(raw) == "null" {
			if !nullable(f.Type()) {
				return f.Name(), "missing (required by the 4.02 schema)"
			}
			continue
		}
		if err := checkValue(f.Type(), raw); err != nil {
			return f.Name(), err.Error()
		}
	}
	var unknown []string
	for k := range fields {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return unknown[0], "not a field of " + rec.FullName()
	}
	return "", ""
}

func nullable(s avro.Schema) bool {
	u, ok := s.(*avro.UnionSchema)
	return ok && u.Nullable()
}

var errWrongType = errors.New("wrong type")

func checkValue(s avro.Schema, raw json.RawMessage) error {
	if u, ok := s.(*avro.UnionSchema); ok {
		var last error
		for _, t := range u.Types() {
			if t.Type() == avro.Null {
				continue
			}
			if last = checkValue(t, raw); last == nil {
				return nil
			}
		}
		return last
	}
	p, ok := s.(*avro.PrimitiveSchema)
	if !ok {
		return fmt.Errorf("%w: %s not supported in ingest", errWrongType, s.Type())
	}
	switch p.Type() {
	case avro.String:
		var v string
		if json.Unmarshal(raw, &v) != nil {
			return fmt.Errorf("%w: want a string, have %.40s", errWrongType, raw)
		}
	case avro.Int, avro.Long:
		v, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: want an integer (%s), have %.40s", errWrongType, p.Type(), raw)
		}
		if p.Type() == avro.Int && (v < math.MinInt32 || v > math.MaxInt32) {
			return fmt.Errorf("%w: %d out of int range", errWrongType, v)
		}
	case avro.Float, avro.Double:
		v, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return fmt.Errorf("%w: want a number (%s), have %.40s", errWrongType, p.Type(), raw)
		}
		if p.Type() == avro.Float && math.Abs(v) > math.MaxFloat32 {
			return fmt.Errorf("%w: %g out of float range", errWrongType, v)
		}
	case avro.Boolean:
		if string(raw) != "true" && string(raw) != "false" {
			return fmt.Errorf("%w: want a boolean, have %.40s", errWrongType, raw)
		}
	default:
		return fmt.Errorf("%w: %s not supported in ingest", errWrongType, p.Type())
	}
	return nil
}

// checkCandidate checks values the schema cannot: ranges a ZTF detection
// always respects.
func checkCandidate(c *Candidate) (string, string) {
	switch {
	case c.Candid <= 0:
		return "candid", fmt.Sprintf("%d is not positive", c.Candid)
	case c.JD < 2458000 || c.JD > 2500000:
		return "jd", fmt.Sprintf("%v is not a ZTF-era Julian date", c.JD)
	case c.Fid < 1 || c.Fid > 3:
		return "fid", fmt.Sprintf("%d is not 1 (g), 2 (r) or 3 (i)", c.Fid)
	case c.Programid < 0 || c.Programid > 3:
		return "programid", fmt.Sprintf("%d is not 0-3", c.Programid)
	case !(c.RA >= 0 && c.RA < 360):
		return "ra", fmt.Sprintf("%v is outside [0, 360)", c.RA)
	case !(c.Dec >= -90 && c.Dec <= 90):
		return "dec", fmt.Sprintf("%v is outside [-90, 90]", c.Dec)
	case !(c.Magpsf > -5 && c.Magpsf < 35):
		return "magpsf", fmt.Sprintf("%v is not a magnitude", c.Magpsf)
	case !(c.Sigmapsf >= 0):
		return "sigmapsf", fmt.Sprintf("%v is negative", c.Sigmapsf)
	}
	switch c.Isdiffpos {
	case "t", "f", "1", "0":
	default:
		return "isdiffpos", fmt.Sprintf("%q is not t, f, 1 or 0", c.Isdiffpos)
	}
	return "", ""
}

// WriteIngestExposure writes detections as an exposure folder in the ingest
// layout, READY last: what a pipeline does, and what tests and demos use.
func WriteIngestExposure(dir, name string, dets []Detection, limits []Row[PrvCandidate], forced []Row[FpHist]) error {
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Join(d, IngestCutouts), 0o755); err != nil {
		return err
	}
	var cands bytes.Buffer
	enc := json.NewEncoder(&cands)
	for i := range dets {
		x := &dets[i]
		if err := enc.Encode(map[string]any{"objectId": x.ObjectID, "candidate": &x.Candidate}); err != nil {
			return err
		}
		id := strconv.FormatInt(x.Candidate.Candid, 10)
		for j, c := range []*Cutout{&x.Science, &x.Template, &x.Difference} {
			if err := os.WriteFile(filepath.Join(d, IngestCutouts, id+"_"+cutoutSuffixes[j]), c.StampData, 0o644); err != nil {
				return err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(d, IngestCandidates), cands.Bytes(), 0o644); err != nil {
		return err
	}
	for _, h := range []struct {
		file, key string
		n         int
		row       func(int) (string, any)
	}{
		{IngestLimits, "prv_candidate", len(limits), func(i int) (string, any) { return limits[i].ObjectID, &limits[i].Row }},
		{IngestForced, "fp_hist", len(forced), func(i int) (string, any) { return forced[i].ObjectID, &forced[i].Row }},
	} {
		if h.n == 0 {
			continue
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		for i := range h.n {
			obj, row := h.row(i)
			if err := enc.Encode(map[string]any{"objectId": obj, h.key: row}); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(d, h.file), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(d, IngestReady), nil, 0o644)
}
