package archive

import (
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// Reading candid needs only the container header, the writer schema and the
// first record's fields up to candid. ZTF's embedded schemas carry union
// defaults that strict parsers refuse (see the data README), so the writer
// schema is compiled by avrofile, which ignores them, into a plan that steps
// over the fields before candid and stops there. Plans are cached by schema
// text: a night uses one or two.

// Member names. A member is named after its alert's candid: "<candid>.avro"
// for a positive candid, "n<|candid|>.avro" for a negative one (the 2016
// prototype alerts), so that no name starts with '-' and reads as an option
// to tar, md5sum or a shell glob, and the candid can still be read back from
// the name without ambiguity. A repeated name gets "_2", "_3", ... before
// ".avro"; a message without a readable candid is kept verbatim as
// "nocandid_<partition>_<offset>.avro".
//
// Confluent-framed messages (packager.format: confluent: byte 0, a 4-byte
// big-endian schema id, the Avro body) are archived as the single-alert
// container file the ocf format would have carried: the writer schema
// looked up by id (Job.Schemas), the null codec, a sync marker that is the
// MD5 of the schema text (so the same topic still gives the same
// tar bytes), and one block holding the body as it is. The schema travels
// with data at rest whichever format the topic had. A frame whose id is
// unknown or whose body is not exactly one record of that schema is kept
// verbatim under a nocandid_ name; a lookup that fails otherwise (registry
// unreachable) fails the run, which resumes from its checkpoint next time.

// MemberBase is the member name of candid before ".avro".
func MemberBase(candid int64) string {
	if candid < 0 {
		// uint64 of the negation is right for math.MinInt64 too.
		return "n" + strconv.FormatUint(uint64(-candid), 10)
	}
	return strconv.FormatInt(candid, 10)
}

// ErrNoCandid means a message value is not a single-alert container whose
// first record has a readable top-level candid.
var ErrNoCandid = errors.New("archive: no candid in message")

// candidReader reads candids, caching compiled schemas, and turns Confluent
// frames into container files. Not safe for concurrent use.
type candidReader struct {
	plans map[string]*candidPlan
	// schemas finds the writer schema of a Confluent frame (nil: none).
	schemas SchemaLookup
	// headers are the container headers of the schema ids seen so far.
	headers map[int32]*frameSchema
}

// frameSchema is a Confluent schema id's container header and its plan.
type frameSchema struct {
	header []byte
	sync   [avrofile.SyncSize]byte
	plan   *candidPlan
	err    error // the id is unknown: an ErrNoCandid
}

// confluentMagic opens a Confluent-framed value; a container file opens
// with avrofile.Magic, so the two never mix up.
const confluentMagic = 0

// Member returns the bytes to archive for value and its candid: a container
// file as it is, a Confluent frame as a container file of its own (see
// Member names). An error wrapping ErrNoCandid means value is kept
// verbatim without a candid; any other error is the schema lookup's.
func (c *candidReader) Member(value []byte) ([]byte, int64, error) {
	if len(value) == 0 || value[0] != confluentMagic {
		cand, err := c.Candid(value)
		return value, cand, err
	}
	if len(value) < 5 {
		return value, 0, fmt.Errorf("%w: Confluent frame of %d bytes", ErrNoCandid, len(value))
	}
	id := int32(binary.BigEndian.Uint32(value[1:5]))
	fs, err := c.frameSchema(id)
	if err != nil {
		return value, 0, err
	}
	if fs.err != nil {
		return value, 0, fs.err
	}
	body := value[5:]
	if fs.plan.err != nil {
		return value, 0, fmt.Errorf("%w: schema id %d: %v", ErrNoCandid, id, fs.plan.err)
	}
	if n, err := fs.plan.schema.Skip(body); err != nil || n != len(body) {
		return value, 0, fmt.Errorf("%w: body is not one record of schema id %d (%d of %d bytes, %v)", ErrNoCandid, id, n, len(body), err)
	}
	cand, err := fs.plan.candid(body)
	if err != nil {
		return value, 0, err
	}
	out := make([]byte, 0, len(fs.header)+len(body)+32)
	out = append(out, fs.header...)
	return avrofile.AppendBlock(out, 1, body, fs.sync), cand, nil
}

func (c *candidReader) frameSchema(id int32) (*frameSchema, error) {
	if fs, ok := c.headers[id]; ok {
		return fs, nil
	}
	if c.schemas == nil {
		return &frameSchema{err: fmt.Errorf("%w: Confluent frame (schema id %d) and no schema lookup", ErrNoCandid, id)}, nil
	}
	text, err := c.schemas(id)
	fs := &frameSchema{}
	switch {
	case errors.Is(err, ErrUnknownSchema):
		fs.err = fmt.Errorf("%w: %v", ErrNoCandid, err)
	case err != nil:
		return nil, fmt.Errorf("archive: schema id %d: %w", id, err)
	default:
		fs.sync = md5.Sum(text) // 16 bytes, as a sync marker is
		h := &avrofile.Header{Sync: fs.sync, Meta: []avrofile.MetaEntry{
			{Key: avrofile.KeySchema, Value: slices.Clone(text)},
			{Key: avrofile.KeyCodec, Value: []byte(avrofile.CodecNull)},
		}}
		fs.header = avrofile.AppendHeader(nil, h)
		fs.plan = c.plan(text)
	}
	if c.headers == nil || len(c.headers) > 64 { // a topic has one or two ids; garbage may have many
		c.headers = map[int32]*frameSchema{}
	}
	c.headers[id] = fs
	return fs, nil
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
	p := c.plan(h.Schema())
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
	return p.candid(data)
}

// plan is the cached plan of a writer schema.
func (c *candidReader) plan(schema []byte) *candidPlan {
	p, ok := c.plans[string(schema)]
	if !ok {
		p = compileCandidPlan(schema)
		if len(c.plans) > 64 { // a night has a handful of schemas; bound it anyway
			clear(c.plans)
		}
		c.plans[string(schema)] = p
	}
	return p
}

// candid reads the top-level candid of the record at the start of data.
func (p *candidPlan) candid(data []byte) (int64, error) {
	if p.err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoCandid, p.err)
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
