package filter

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"cel.dev/cel-go/interpreter"
	"github.com/hamba/avro/v2"

	"github.com/ztfbroker/ztfbroker/avrofile"
	"github.com/ztfbroker/ztfbroker/packager"
)

// ErrNotAlert is a record value that is not an alert this package reads.
var ErrNotAlert = errors.New("filter: not an alert")

// Alert is one decoded alert as filters see it: its writer schema's
// fields read by name into the packager's 4.02 records (a field the writer
// lacks is zero; a null optional one too, and has() tells them apart).
// Cutouts are decoded only when a filter reads them.
type Alert struct {
	Topic     string
	Schemavsn string
	Publisher string
	ObjectID  string
	Candid    int64
	Candidate packager.Candidate
	Prv       []packager.PrvCandidate
	Fp        []packager.FpHist
	Cutouts   [3]packager.Cutout
}

// Parts names what of an alert to decode besides its candidate: a writer
// field with no struct field is stepped over without a copy.
type Parts struct {
	History, Forced, Cutouts bool
}

// What hamba decodes into, from the least to the most.
type (
	alertHead struct {
		Schemavsn string             `avro:"schemavsn"`
		Publisher string             `avro:"publisher"`
		ObjectID  string             `avro:"objectId"`
		Candid    int64              `avro:"candid"`
		Candidate packager.Candidate `avro:"candidate"`
	}
	alertHistory struct {
		alertHead
		PrvCandidates []packager.PrvCandidate `avro:"prv_candidates"`
	}
	alertForced struct {
		alertHistory
		FpHists []packager.FpHist `avro:"fp_hists"`
	}
	alertWhole struct {
		alertForced
		CutoutScience    *packager.Cutout `avro:"cutoutScience"`
		CutoutTemplate   *packager.Cutout `avro:"cutoutTemplate"`
		CutoutDifference *packager.Cutout `avro:"cutoutDifference"`
	}
)

// ResolveName makes an Alert the CEL activation of an evaluation.
func (a *Alert) ResolveName(name string) (any, bool) {
	switch name {
	case "candidate":
		return &a.Candidate, true
	case "prv_candidates":
		if a.Prv == nil {
			return []packager.PrvCandidate{}, true
		}
		return a.Prv, true
	case "fp_hists":
		if a.Fp == nil {
			return []packager.FpHist{}, true
		}
		return a.Fp, true
	case "objectId":
		return a.ObjectID, true
	case "candid":
		return a.Candid, true
	case "schemavsn":
		return a.Schemavsn, true
	case "publisher":
		return a.Publisher, true
	case "topic":
		return a.Topic, true
	case "cutoutScience":
		return &a.Cutouts[0], true
	case "cutoutTemplate":
		return &a.Cutouts[1], true
	case "cutoutDifference":
		return &a.Cutouts[2], true
	}
	return nil, false
}

// Parent is part of interpreter.Activation: an Alert has none.
func (a *Alert) Parent() interpreter.Activation { return nil }

// Decoder reads record values (one Avro container file each, as ZTF and
// the packager write them) into Alerts, parsing each writer schema once.
type Decoder struct {
	schemas *avrofile.Schemas
	// last is the latest writer schema: a stream's alerts all carry the
	// same, so most are matched by a byte comparison, without hashing
	// 20 kB of schema text into the cache.
	last atomic.Pointer[lastSchema]

	confluentOnce sync.Once
	confluent     avro.Schema
}

type lastSchema struct {
	text   []byte
	schema avro.Schema
}

// NewDecoder returns a decoder with a cache of writer schemas.
func NewDecoder() *Decoder { return &Decoder{schemas: avrofile.NewSchemas(0)} }

// Decode reads the first alert of value into a, with the parts asked for.
// A value is a container file (the format ZTF ships), or a Confluent
// frame (a zero byte, a 4-byte schema id, one alert) written with the
// packager's 4.02 schema, whatever the id.
func (d *Decoder) Decode(value []byte, parts Parts, a *Alert) error {
	if len(value) > 5 && value[0] == 0 {
		d.confluentOnce.Do(func() {
			if s, err := packager.LoadSchema(); err == nil {
				d.confluent = s.Alert
			}
		})
		if d.confluent == nil {
			return fmt.Errorf("%w: the packager's schema did not load", ErrNotAlert)
		}
		return d.decodeRecord(d.confluent, value[5:], parts, a)
	}
	h, n, err := avrofile.ParseHeader(value)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAlert, err)
	}
	var schema avro.Schema
	if l := d.last.Load(); l != nil && bytes.Equal(l.text, h.Schema()) {
		schema = l.schema
	} else {
		text := string(h.Schema())
		if schema, err = d.schemas.Parse(text); err != nil {
			return fmt.Errorf("%w: writer schema: %v", ErrNotAlert, err)
		}
		d.last.Store(&lastSchema{text: []byte(text), schema: schema})
	}
	blk, _, err := avrofile.ReadBlock(value[n:], h.Sync)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAlert, err)
	}
	data, err := avrofile.Decompress(h.Codec(), blk.Data)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAlert, err)
	}
	return d.decodeRecord(schema, data, parts, a)
}

// decodeRecord decodes one alert record of schema.
func (d *Decoder) decodeRecord(schema avro.Schema, data []byte, parts Parts, a *Alert) error {
	var r alertWhole
	var into any = &r.alertHead
	switch {
	case parts.Cutouts:
		into = &r
	case parts.Forced:
		into = &r.alertForced
	case parts.History:
		into = &r.alertHistory
	}
	if err := avro.Unmarshal(schema, data, into); err != nil {
		return fmt.Errorf("%w: %v", ErrNotAlert, err)
	}
	*a = Alert{Topic: a.Topic, Schemavsn: r.Schemavsn, Publisher: r.Publisher, ObjectID: r.ObjectID, Candid: r.Candid,
		Candidate: r.Candidate, Prv: r.PrvCandidates, Fp: r.FpHists}
	for i, c := range []*packager.Cutout{r.CutoutScience, r.CutoutTemplate, r.CutoutDifference} {
		if c != nil {
			a.Cutouts[i] = *c
		}
	}
	return nil
}
