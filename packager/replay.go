package packager

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// Replay re-publishes existing alert files. A file holding one alert goes out
// as the bytes it is; a file holding several is cut into single-alert
// container files that keep the original schema text and record bytes.
// Files are gathered into exposures of up to replayGroupAlerts alerts. Each alert goes to the topic of its own night
// and programid; an alert that cannot be read, or whose programid is not 1
// (public), 2 (partnership) or 3 (Caltech), is refused rather than sent:
// the engineering (0) and prototype (64) alerts of the samples must not land
// on the public topic. Writer schemas are parsed once per schema text,
// not once per file: a night's archive holds thousands of files that carry
// the same schema.
type Replay struct {
	files   []string
	next    int
	now     func() time.Time
	schemas *avrofile.Schemas
}

// NewReplay lists the .avro files under paths (files or folders, walked in
// name order).
func NewReplay(paths []string, now func() time.Time) (*Replay, error) {
	if now == nil {
		now = time.Now
	}
	r := &Replay{now: now, schemas: avrofile.NewSchemas(0)}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("packager: replay: %w", err)
		}
		if !st.IsDir() {
			r.files = append(r.files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && filepath.Ext(path) == ".avro" {
				r.files = append(r.files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("packager: replay: %w", err)
		}
	}
	return r, nil
}

// Files lists what will be replayed, in order.
func (r *Replay) Files() []string { return r.files }

// A replay's exposure gathers files up to these bounds: an archived night
// holds one alert per file, and sent a file at a time each batch would
// hold one alert, which compresses poorly (its schema text is not shared
// with the next alert's) and costs a round trip per alert.
const (
	replayGroupAlerts = 256
	replayGroupBytes  = 16 << 20
)

// Next reads the next files, as many as fit in one exposure (replayGroupAlerts,
// replayGroupBytes). An unreadable file becomes a rejection, so a replay
// goes on past it.
func (r *Replay) Next(ctx context.Context) (*Exposure, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r.next >= len(r.files) {
		return nil, io.EOF
	}
	first := r.next
	exp := &Exposure{ID: r.files[first], Arrived: r.now()}
	size := 0
	for r.next < len(r.files) && len(exp.Raw) < replayGroupAlerts && size < replayGroupBytes {
		size += r.read(r.files[r.next], exp)
		r.next++
	}
	if n := r.next - first; n > 1 {
		exp.ID = fmt.Sprintf("%s and %d more files", exp.ID, n-1)
	}
	return exp, nil
}

// read adds the alerts of the file at path to exp, and returns their bytes.
func (r *Replay) read(path string, exp *Exposure) int {
	b, err := os.ReadFile(path)
	if err != nil {
		exp.Rejects = append(exp.Rejects, Reject{Exposure: path, Candidate: "-", Field: "file", Reason: err.Error()})
		return 0
	}
	alerts, err := SplitAlerts(b, r.schemas)
	if err != nil {
		exp.Rejects = append(exp.Rejects, Reject{Exposure: path, Candidate: "-", Field: "file", Reason: err.Error(), Input: b, Name: filepath.Base(path)})
		return 0
	}
	for i, a := range alerts {
		field, reason := a.Unroutable()
		if field == "" {
			exp.Raw = append(exp.Raw, a)
			continue
		}
		cand, name := "-", filepath.Base(path)
		if a.Candid != 0 {
			cand = strconv.FormatInt(a.Candid, 10)
		} else if len(alerts) > 1 {
			cand = "alert" + strconv.Itoa(i+1)
		}
		if len(alerts) > 1 {
			name = cand + ".avro"
		}
		exp.Rejects = append(exp.Rejects, Reject{Exposure: path, Candidate: cand, Field: field, Reason: reason, Input: a.Value, Name: name})
	}
	return len(b)
}

// Unroutable says why a cannot go to a night's topic (field and reason),
// or returns two empty strings when it can: its record was read and holds a
// candidate with a Julian date and a known programid.
func (a *RawAlert) Unroutable() (field, reason string) {
	switch {
	case a.unread != nil:
		return "alert", "cannot be read: " + a.unread.Error()
	case a.JD == 0:
		return "jd", "the alert has no candidate.jd to choose its night"
	case !KnownProgram(a.Programid):
		return "programid", fmt.Sprintf("%d is not 1 (public), 2 (partnership) or 3 (Caltech): refused rather than sent to a public topic", a.Programid)
	}
	return "", ""
}

// KnownProgram is whether ZTF publishes a night's topic for programid p:
// 1 public, 2 partnership (MSIP/collaboration), 3 Caltech.
func KnownProgram(p int) bool { return p >= 1 && p <= 3 }

// RawAlert is an alert already serialized: one single-alert container file.
// JD and Programid choose the night's topic; they are zero when the writer
// schema could not be read (Replay refuses such alerts; see Unroutable).
type RawAlert struct {
	Key       []byte
	Value     []byte
	JD        float64
	Programid int
	// Candid is the alert's top-level candid, or the candidate's (0 if unread).
	Candid int64
	// unread is why the record could not be described.
	unread error
}

// SplitAlerts returns one single-alert container file per alert in b. A file
// of one alert is returned as is (the same slice); several alerts are cut at
// record boundaries, each written with the file's header (its schema text
// and sync marker) and the record's own bytes. Writer schemas are parsed
// through schemas (avrofile's lenient parser, cached by text); if the schema
// cannot be read at all, a one-alert file is still forwarded.
func SplitAlerts(b []byte, schemas *avrofile.Schemas) ([]RawAlert, error) {
	h, off, err := avrofile.ParseHeader(b)
	if err != nil {
		return nil, fmt.Errorf("packager: %w", err)
	}
	var blocks []avrofile.Block // records decompressed
	var total int64
	for off < len(b) {
		blk, n, err := avrofile.ReadBlock(b[off:], h.Sync)
		if err != nil {
			return nil, fmt.Errorf("packager: %w", err)
		}
		if blk.Data, err = avrofile.Decompress(h.Codec(), blk.Data); err != nil {
			return nil, fmt.Errorf("packager: %w", err)
		}
		blocks = append(blocks, blk)
		total += blk.Count
		off += n
	}
	text := string(h.Schema())
	schema, schemaErr := schemas.Parse(text)
	if total == 1 && len(blocks) == 1 && h.Codec() == avrofile.CodecNull {
		a := RawAlert{Value: b, unread: schemaErr}
		if schemaErr == nil {
			describe(schema, blocks[0].Data, &a)
		}
		return []RawAlert{a}, nil
	}
	var plan *avrofile.Schema
	if schemaErr == nil {
		plan, schemaErr = schemas.Compile(text)
	}
	if schemaErr != nil {
		return nil, fmt.Errorf("packager: %d alerts under a schema that cannot be read: %w", total, schemaErr)
	}
	// The file's schema text as it is (hamba's encoder would need a schema
	// it can parse strictly) and its sync marker; the records go out
	// uncompressed.
	one := &avrofile.Header{Sync: h.Sync, Meta: []avrofile.MetaEntry{
		{Key: avrofile.KeySchema, Value: h.Schema()},
		{Key: avrofile.KeyCodec, Value: []byte(avrofile.CodecNull)},
	}}
	header := avrofile.AppendHeader(nil, one)
	var out []RawAlert
	for _, bl := range blocks {
		off := 0
		for range bl.Count {
			n, err := plan.Skip(bl.Data[off:])
			if err != nil {
				return nil, fmt.Errorf("packager: alert %d: %w", len(out), err)
			}
			rec := bl.Data[off : off+n]
			off += n
			a := RawAlert{Value: avrofile.AppendBlock(slices.Clip(header), 1, rec, one.Sync)}
			describe(schema, rec, &a)
			out = append(out, a)
		}
		if off != len(bl.Data) {
			return nil, fmt.Errorf("packager: block holds %d bytes past its %d records", len(bl.Data)-off, bl.Count)
		}
	}
	return out, nil
}

// describe fills the key and topic fields of a from the record; what cannot
// be read is left empty (old prototype alerts have no objectId) and a record
// that does not decode is noted in a.unread.
func describe(schema avro.Schema, rec []byte, a *RawAlert) {
	var m map[string]any
	if err := avro.Unmarshal(schema, rec, &m); err != nil {
		a.unread = err
		return
	}
	if id, ok := m["objectId"].(string); ok && id != "" {
		a.Key = []byte(id)
	}
	cand, _ := m["candidate"].(map[string]any)
	if c, ok := m["candid"].(int64); ok {
		a.Candid = c
	} else if c, ok := cand["candid"].(int64); ok {
		a.Candid = c
	}
	if a.Key == nil && a.Candid != 0 {
		a.Key = []byte(strconv.FormatInt(a.Candid, 10))
	}
	if cand == nil {
		return
	}
	if jd, ok := cand["jd"].(float64); ok {
		a.JD = jd
	}
	switch p := cand["programid"].(type) {
	case int:
		a.Programid = p
	case int64:
		a.Programid = int(p)
	}
}
