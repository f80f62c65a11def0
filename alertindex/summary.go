package alertindex

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/hamba/avro/v2"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// Summary is what the index keeps of one alert: where it is in the log and
// the candidate's fields that searches filter on. Floats that the alert
// leaves null are NaN.
type Summary struct {
	Candid   int64
	ObjectID string
	// Topic, Partition and Offset are where the alert is in the log.
	Topic     string
	Partition int32
	Offset    int64

	RA, Dec, JD float64
	Fid         int32
	MagPSF      float32
	SigmaPSF    float32
	RB, DRB     float32
	IsDiffPos   string
	NDetHist    int32
	ProgramID   int32
}

// Errors of Decode, each wrapped with the detail.
var (
	ErrNotAlert   = errors.New("alertindex: not a ZTF alert container file")
	ErrNoPosition = errors.New("alertindex: alert without candid, jd, ra or dec")
)

// Decoder finds the summary fields of alerts, parsing each writer schema
// once (Schemas caches them by text). A Decoder is for one goroutine.
type Decoder struct {
	Schemas *avrofile.Schemas

	// The last writer schema, whose text a stream's messages repeat: a
	// comparison spares copying 20 kB to look it up.
	lastText   []byte
	lastSchema avro.Schema
	// Which fields of the last candidate record schema the summary
	// reads: a name compared once per schema, not once per alert.
	candSchema *avro.RecordSchema
	candWanted []bool
}

// wanted says which fields of candidate record c the summary reads.
func (d *Decoder) wanted(c *avro.RecordSchema) []bool {
	if c != d.candSchema {
		d.candWanted = d.candWanted[:0]
		for _, f := range c.Fields() {
			switch f.Name() {
			case "jd", "ra", "dec", "fid", "magpsf", "sigmapsf", "rb", "drb", "isdiffpos", "ndethist", "programid", "candid":
				d.candWanted = append(d.candWanted, true)
			default:
				d.candWanted = append(d.candWanted, false)
			}
		}
		d.candSchema = c
	}
	return d.candWanted
}

// ErrShort is DecodePrefix's answer to a prefix that ends before the
// summary's fields.
var ErrShort = errors.New("alertindex: the value's prefix ends before the summary's fields")

// Decode reads the summary of the first alert of a Kafka message value (a
// ZTF container file). Topic, partition and offset are left to the caller.
func (d *Decoder) Decode(value []byte) (Summary, error) {
	s, _, err := d.decode(value, false)
	return s, err
}

// DecodePrefix is Decode of the first bytes of a value whose rest is cut
// off (a Tap's). It returns ErrShort when they end before the summary's
// fields (or the block is compressed, which is decoded whole), and the
// bytes of the value the summary needed.
func (d *Decoder) DecodePrefix(prefix []byte) (Summary, int, error) {
	s, n, err := d.decode(prefix, true)
	if err != nil && errors.Is(err, avrofile.ErrTruncated) {
		return s, n, fmt.Errorf("%w: %w", ErrShort, err)
	}
	return s, n, err
}

// decode is Decode, of a prefix when cut; it returns the bytes read.
func (d *Decoder) decode(value []byte, cut bool) (Summary, int, error) {
	h, off, err := avrofile.ParseHeader(value)
	if err != nil {
		return Summary{}, 0, fmt.Errorf("%w: %w", ErrNotAlert, err)
	}
	var data []byte
	if cut {
		// The first block as far as it goes: its count, its size in
		// bytes, then the data (its sync marker may be cut off).
		count, n, err := avrofile.ReadLong(value[off:])
		if err != nil {
			return Summary{}, 0, fmt.Errorf("%w: %w", ErrNotAlert, err)
		}
		off += n
		size, n, err := avrofile.ReadLong(value[off:])
		if err != nil {
			return Summary{}, 0, fmt.Errorf("%w: %w", ErrNotAlert, err)
		}
		off += n
		switch {
		case count < 1:
			return Summary{}, 0, fmt.Errorf("%w: empty block", ErrNotAlert)
		case size < 0:
			return Summary{}, 0, fmt.Errorf("%w: block of %d bytes", ErrNotAlert, size)
		case h.Codec() != avrofile.CodecNull:
			return Summary{}, 0, fmt.Errorf("%w: block compressed with %s", avrofile.ErrTruncated, h.Codec())
		}
		data = value[off:min(int64(len(value)), int64(off)+size)]
	} else {
		blk, _, err := avrofile.ReadBlock(value[off:], h.Sync)
		if err != nil {
			return Summary{}, 0, fmt.Errorf("%w: %w", ErrNotAlert, err)
		}
		if blk.Count < 1 {
			return Summary{}, 0, fmt.Errorf("%w: empty block", ErrNotAlert)
		}
		if data, err = avrofile.Decompress(h.Codec(), blk.Data); err != nil {
			return Summary{}, 0, fmt.Errorf("%w: %w", ErrNotAlert, err)
		}
	}
	s, n, err := d.summary(h, data)
	return s, off + n, err
}

// summary reads the summary's fields of one alert's data, per the writer
// schema of h, and returns the bytes read.
func (d *Decoder) summary(h *avrofile.Header, data []byte) (Summary, int, error) {
	var err error
	schema := d.lastSchema
	if text := h.Schema(); schema == nil || !bytes.Equal(text, d.lastText) {
		if schema, err = d.Schemas.Parse(string(text)); err != nil {
			return Summary{}, 0, fmt.Errorf("%w: schema: %w", ErrNotAlert, err)
		}
		d.lastText, d.lastSchema = append(d.lastText[:0], text...), schema
	}
	rec, ok := deref(schema).(*avro.RecordSchema)
	if !ok {
		return Summary{}, 0, fmt.Errorf("%w: schema is not a record", ErrNotAlert)
	}
	s := Summary{MagPSF: nan32, SigmaPSF: nan32, RB: nan32, DRB: nan32, RA: math.NaN(), Dec: math.NaN(), JD: math.NaN()}
	r := &reader{b: data}
	var haveCandid bool
	// The fields after candidate (its history, the cutouts: most of the
	// bytes) are not read once objectId, candid and candidate are.
	need := 0
	for _, f := range rec.Fields() {
		switch f.Name() {
		case "objectId", "candid", "candidate":
			need++
		}
	}
	for _, f := range rec.Fields() {
		if need == 0 {
			break
		}
		switch f.Name() {
		case "objectId", "candid", "candidate":
			need--
		}
		switch f.Name() {
		case "objectId":
			v, _, err := r.scalar(f.Type())
			if err != nil {
				return s, r.pos, fmt.Errorf("%w: objectId: %w", ErrNotAlert, err)
			}
			s.ObjectID = v.str
		case "candid":
			v, isNull, err := r.scalar(f.Type())
			if err != nil {
				return s, r.pos, fmt.Errorf("%w: candid: %w", ErrNotAlert, err)
			}
			s.Candid, haveCandid = v.i, !isNull
		case "candidate":
			c, ok := deref(f.Type()).(*avro.RecordSchema)
			if !ok {
				return s, r.pos, fmt.Errorf("%w: candidate is not a record", ErrNotAlert)
			}
			if err := r.candidate(c, d.wanted(c), &s, &haveCandid); err != nil {
				return s, r.pos, fmt.Errorf("%w: candidate: %w", ErrNotAlert, err)
			}
		default:
			if err := r.skip(f.Type(), 0); err != nil {
				return s, r.pos, fmt.Errorf("%w: %s: %w", ErrNotAlert, f.Name(), err)
			}
		}
	}
	if !haveCandid || math.IsNaN(s.JD) || math.IsNaN(s.RA) || math.IsNaN(s.Dec) ||
		s.Dec < -90 || s.Dec > 90 || math.IsInf(s.RA, 0) {
		return s, r.pos, ErrNoPosition
	}
	return s, r.pos, nil
}

var nan32 = float32(math.NaN())

// candidate reads the summary's fields of the candidate record, those
// wanted (Decoder.wanted).
func (r *reader) candidate(c *avro.RecordSchema, wanted []bool, s *Summary, haveCandid *bool) error {
	for i, f := range c.Fields() {
		if !wanted[i] {
			if err := r.skip(f.Type(), 1); err != nil {
				return fmt.Errorf("%s: %w", f.Name(), err)
			}
			continue
		}
		name := f.Name()
		v, isNull, err := r.scalar(f.Type())
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if isNull {
			continue
		}
		switch name {
		case "jd":
			s.JD = v.f
		case "ra":
			s.RA = v.f
		case "dec":
			s.Dec = v.f
		case "fid":
			s.Fid = int32(v.i)
		case "magpsf":
			s.MagPSF = float32(v.f)
		case "sigmapsf":
			s.SigmaPSF = float32(v.f)
		case "rb":
			s.RB = float32(v.f)
		case "drb":
			s.DRB = float32(v.f)
		case "isdiffpos":
			s.IsDiffPos = v.str
		case "ndethist":
			s.NDetHist = int32(v.i)
		case "programid":
			s.ProgramID = int32(v.i)
		case "candid":
			// The old schemas have no top-level candid.
			if !*haveCandid {
				s.Candid, *haveCandid = v.i, true
			}
		}
	}
	return nil
}

// maxDepth bounds nesting against recursive schemas.
const maxDepth = 64

// reader walks the Avro binary encoding of one record.
type reader struct {
	b   []byte
	pos int
}

func (r *reader) long() (int64, error) {
	v, n, err := avrofile.ReadLong(r.b[r.pos:])
	r.pos += n
	return v, err
}

func (r *reader) take(n int64) ([]byte, error) {
	if n < 0 || int64(len(r.b)-r.pos) < n {
		return nil, avrofile.ErrTruncated
	}
	v := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return v, nil
}

// value is a scalar read by scalar: numbers as both i and f.
type value struct {
	i   int64
	f   float64
	str string
}

// scalar reads a number, boolean or string, or a union of one with null.
func (r *reader) scalar(s avro.Schema) (value, bool, error) {
	s = deref(s)
	if u, ok := s.(*avro.UnionSchema); ok {
		idx, err := r.long()
		if err != nil {
			return value{}, false, err
		}
		types := u.Types()
		if idx < 0 || idx >= int64(len(types)) {
			return value{}, false, fmt.Errorf("union branch %d of %d", idx, len(types))
		}
		s = deref(types[idx])
	}
	switch s.Type() {
	case avro.Null:
		return value{}, true, nil
	case avro.Int, avro.Long:
		v, err := r.long()
		return value{i: v, f: float64(v)}, false, err
	case avro.Float:
		b, err := r.take(4)
		if err != nil {
			return value{}, false, err
		}
		f := float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		return value{i: int64(f), f: f}, false, nil
	case avro.Double:
		b, err := r.take(8)
		if err != nil {
			return value{}, false, err
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(b))
		return value{i: int64(f), f: f}, false, nil
	case avro.Boolean:
		b, err := r.take(1)
		if err != nil {
			return value{}, false, err
		}
		return value{i: int64(b[0]), f: float64(b[0])}, false, nil
	case avro.String, avro.Bytes:
		n, err := r.long()
		if err != nil {
			return value{}, false, err
		}
		b, err := r.take(n)
		if err != nil {
			return value{}, false, err
		}
		if len(b) > maxString || !utf8.Valid(b) {
			return value{}, false, fmt.Errorf("string of %d bytes, not short UTF-8", len(b))
		}
		return value{str: string(b)}, false, nil
	}
	// Anything else is not a field the summary reads; step over it.
	return value{}, true, r.skip(s, 0)
}

// maxString bounds the strings a summary keeps (objectId, isdiffpos).
const maxString = 64

func deref(s avro.Schema) avro.Schema {
	if ref, ok := s.(*avro.RefSchema); ok {
		return ref.Schema()
	}
	return s
}

// skip steps over one value of schema s.
func (r *reader) skip(s avro.Schema, depth int) error {
	if depth > maxDepth {
		return errors.New("values nested too deep")
	}
	switch t := deref(s).(type) {
	case *avro.RecordSchema:
		for _, f := range t.Fields() {
			if err := r.skip(f.Type(), depth+1); err != nil {
				return err
			}
		}
		return nil
	case *avro.UnionSchema:
		idx, err := r.long()
		if err != nil {
			return err
		}
		types := t.Types()
		if idx < 0 || idx >= int64(len(types)) {
			return fmt.Errorf("union branch %d of %d", idx, len(types))
		}
		return r.skip(types[idx], depth+1)
	case *avro.ArraySchema:
		return r.blocks(depth, func() error { return r.skip(t.Items(), depth+1) })
	case *avro.MapSchema:
		return r.blocks(depth, func() error {
			n, err := r.long()
			if err != nil {
				return err
			}
			if _, err := r.take(n); err != nil {
				return err
			}
			return r.skip(t.Values(), depth+1)
		})
	case *avro.EnumSchema:
		_, err := r.long()
		return err
	case *avro.FixedSchema:
		_, err := r.take(int64(t.Size()))
		return err
	}
	switch s.Type() {
	case avro.Null:
		return nil
	case avro.Boolean:
		_, err := r.take(1)
		return err
	case avro.Int, avro.Long, avro.Enum:
		_, err := r.long()
		return err
	case avro.Float:
		_, err := r.take(4)
		return err
	case avro.Double:
		_, err := r.take(8)
		return err
	case avro.String, avro.Bytes:
		n, err := r.long()
		if err != nil {
			return err
		}
		_, err = r.take(n)
		return err
	}
	return fmt.Errorf("avro type %s not supported", s.Type())
}

// blocks steps over the blocks of an array or map, item by item.
func (r *reader) blocks(depth int, item func() error) error {
	for {
		n, err := r.long()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n < 0 {
			n = -n
			size, err := r.long()
			if err != nil {
				return err
			}
			// The block's byte size lets it be stepped over whole.
			if _, err := r.take(size); err != nil {
				return err
			}
			continue
		}
		if n > int64(len(r.b)-r.pos) && n > 1<<16 {
			return fmt.Errorf("block of %d items in %d bytes", n, len(r.b)-r.pos)
		}
		for ; n > 0; n-- {
			if err := item(); err != nil {
				return err
			}
		}
	}
}
