package archive

import (
	"errors"
	"fmt"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// Reading candid needs only the container header, the writer schema and the
// first record's fields up to candid. ZTF's embedded schemas carry union
// defaults that strict parsers refuse (see the data README), so the writer
// schema is compiled by avrofile, which ignores them, into a plan that steps
// over the fields before candid and stops there. Plans are cached by schema
// text: a night uses one or two.

// ErrNoCandid means a message value is not a single-alert container whose
// first record has a readable top-level candid.
var ErrNoCandid = errors.New("archive: no candid in message")

// candidReader reads candids, caching compiled schemas. Not safe for
// concurrent use.
type candidReader struct {
	plans map[string]*candidPlan
}

type candidPlan struct {
	schema *avrofile.Schema
	field  int   // index of candid among the top-level fields
	branch int64 // union branch index of long when candid is a union, else -1
	err    error
}

func newCandidReader() *candidReader { return &candidReader{plans: map[string]*candidPlan{}} }

// Candid reads the top-level candid of the first alert in value.
func (c *candidReader) Candid(value []byte) (int64, error) {
	h, off, err := avrofile.ParseHeader(value)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoCandid, err)
	}
	schema := h.Schema()
	p, ok := c.plans[string(schema)]
	if !ok {
		p = compileCandidPlan(schema)
		if len(c.plans) > 64 { // a night has a handful of schemas; bound it anyway
			clear(c.plans)
		}
		c.plans[string(schema)] = p
	}
	if p.err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoCandid, p.err)
	}
	blk, _, err := avrofile.ReadBlock(value[off:], h.Sync)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoCandid, err)
	}
	data, err := avrofile.Decompress(h.Codec(), blk.Data)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoCandid, err)
	}
	if blk.Count < 1 {
		return 0, fmt.Errorf("%w: empty block", ErrNoCandid)
	}
	at, err := p.schema.SkipFields(data, p.field)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoCandid, err)
	}
	if p.branch >= 0 {
		idx, n, err := avrofile.ReadLong(data[at:])
		if err != nil || idx != p.branch {
			return 0, fmt.Errorf("%w: candid is not a long in this alert", ErrNoCandid)
		}
		at += n
	}
	v, _, err := avrofile.ReadLong(data[at:])
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoCandid, err)
	}
	return v, nil
}

// compileCandidPlan finds candid among the top-level fields: a long, or a
// union with a long branch (the prototype schemas).
func compileCandidPlan(schemaJSON []byte) *candidPlan {
	s, err := avrofile.Compile(schemaJSON)
	if err != nil {
		return &candidPlan{err: err}
	}
	if s.Fields == nil {
		return &candidPlan{err: errors.New("schema: top level is not a record")}
	}
	i := s.Field("candid")
	if i < 0 {
		return &candidPlan{err: errors.New("schema: no top-level candid")}
	}
	p := &candidPlan{schema: s, field: i, branch: -1}
	switch t := s.Fields[i].Type.(type) {
	case string:
		if t != "long" {
			return &candidPlan{err: fmt.Errorf("schema: candid is %s", t)}
		}
	case []any:
		for b, typ := range t {
			if typ == "long" {
				p.branch = int64(b)
			}
		}
		if p.branch < 0 {
			return &candidPlan{err: errors.New("schema: candid union has no long")}
		}
	default:
		return &candidPlan{err: errors.New("schema: candid is not a long")}
	}
	return p
}
