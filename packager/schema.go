package packager

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hamba/avro/v2"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// The ZTF alert schema, version 4.02, copied byte for byte from
// ZwickyTransientFacility/ztf-avro-alert, folder schema/, commit
// 75a9831c0762ebb03f81edc1bcf3f7d335deb1e9 (2023-10-12, "Update to v4.02").
// That repository states no licence; ZTF distributes the alerts and their
// schema publicly, and the files are used here as published, with credit.
//
//go:embed schema/*.avsc
var schemaFiles embed.FS

// SchemaVersion is the schemavsn written into every packaged alert.
const SchemaVersion = "4.02"

// Schema is the 4.02 alert schema: the parsed form used to encode, the
// writer-schema text put into each container file (the five files nested into
// one JSON document, docs kept, as ZTF's own alerts carry it) and the
// sub-schemas the history store encodes its rows with.
type Schema struct {
	Alert        avro.Schema
	Text         []byte
	Fingerprint  [32]byte
	Candidate    *avro.RecordSchema
	PrvCandidate *avro.RecordSchema
	FpHist       *avro.RecordSchema
}

// LoadSchema parses the embedded 4.02 schema files.
func LoadSchema() (*Schema, error) {
	read := func(name string) (string, error) {
		b, err := schemaFiles.ReadFile("schema/" + name + ".avsc")
		return string(b), err
	}
	parts := map[string]string{}
	for _, n := range []string{"cutout", "candidate", "prv_candidate", "fp_hist", "alert"} {
		s, err := read(n)
		if err != nil {
			return nil, fmt.Errorf("packager: read schema %s: %w", n, err)
		}
		parts[n] = s
	}
	// Nest the named types at their first use, as ZTF's writer schema does.
	text := parts["alert"]
	for _, n := range []string{"candidate", "prv_candidate", "fp_hist", "cutout"} {
		ref := `"ztf.alert.` + n + `"`
		if !strings.Contains(text, ref) {
			return nil, fmt.Errorf("packager: schema alert.avsc does not name %s", ref)
		}
		text = strings.Replace(text, ref, parts[n], 1)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(text)); err != nil {
		return nil, fmt.Errorf("packager: compact schema: %w", err)
	}
	// Through the project's one parser, so no name lands in hamba's global
	// cache where another parse could pick it up. 4.02 has no invalid
	// default, so this is what a strict parser gives; the tests check that
	// hamba's strict reader opens what the packager writes.
	alert, err := avrofile.ParseSchema(compact.Bytes())
	if err != nil {
		return nil, fmt.Errorf("packager: parse schema: %w", err)
	}
	s := &Schema{Alert: alert, Text: compact.Bytes(), Fingerprint: sha256.Sum256([]byte(alert.String()))}
	rec := alert.(*avro.RecordSchema)
	for _, f := range rec.Fields() {
		switch f.Name() {
		case "candidate":
			s.Candidate = f.Type().(*avro.RecordSchema)
		case "prv_candidates":
			s.PrvCandidate = unionArrayItems(f.Type())
		case "fp_hists":
			s.FpHist = unionArrayItems(f.Type())
		}
	}
	if s.Candidate == nil || s.PrvCandidate == nil || s.FpHist == nil {
		return nil, fmt.Errorf("packager: schema lacks candidate, prv_candidates or fp_hists")
	}
	return s, nil
}

func unionArrayItems(t avro.Schema) *avro.RecordSchema {
	u, ok := t.(*avro.UnionSchema)
	if !ok {
		return nil
	}
	for _, b := range u.Types() {
		if a, ok := b.(*avro.ArraySchema); ok {
			r, _ := a.Items().(*avro.RecordSchema)
			return r
		}
	}
	return nil
}

// headSchema is a record of the alert's fields before prv_candidates.
func headSchema(s *Schema) (avro.Schema, error) {
	var fields []*avro.Field
	for _, f := range s.Alert.(*avro.RecordSchema).Fields() {
		if f.Name() == "prv_candidates" {
			break
		}
		nf, err := avro.NewField(f.Name(), f.Type())
		if err != nil {
			return nil, err
		}
		fields = append(fields, nf)
	}
	return avro.NewRecordSchema("head", "ztfbroker.packager", fields)
}
