package archive

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// Reading candid needs only the container header, the writer schema and the
// first record's fields up to candid. ZTF's embedded schemas carry union
// defaults that strict parsers refuse (see the data README), and defaults do
// not change the binary encoding, so this reader ignores them: it compiles
// the writer schema into skippers for the fields before candid and stops
// there. Compiled schemas are cached by their text: a night uses one or two.

// ErrNoCandid means a message value is not a single-alert container whose
// first record has a readable top-level candid.
var ErrNoCandid = errors.New("archive: no candid in message")

var ocfMagic = []byte("Obj\x01")

// OCFHeader is the start of an Avro object container file.
type OCFHeader struct {
	Meta map[string][]byte
	Sync [16]byte
	// Len is the header length: the first data block starts there.
	Len int
}

type avroReader struct {
	b   []byte
	off int
}

var errShort = errors.New("avro: data too short")

func (r *avroReader) long() (int64, error) {
	var u uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.off >= len(r.b) {
			return 0, errShort
		}
		c := r.b[r.off]
		r.off++
		u |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), nil
		}
	}
	return 0, errors.New("avro: varint too long")
}

func (r *avroReader) skip(n int64) error {
	if n < 0 || n > int64(len(r.b)-r.off) {
		return errShort
	}
	r.off += int(n)
	return nil
}

func (r *avroReader) bytes() ([]byte, error) {
	n, err := r.long()
	if err != nil {
		return nil, err
	}
	start := r.off
	if err := r.skip(n); err != nil {
		return nil, err
	}
	return r.b[start:r.off], nil
}

// ParseOCFHeader reads the magic, metadata map and sync marker of b.
func ParseOCFHeader(b []byte) (OCFHeader, error) {
	h := OCFHeader{Meta: map[string][]byte{}}
	if !bytes.HasPrefix(b, ocfMagic) {
		return h, errors.New("avro: not an object container file")
	}
	r := &avroReader{b: b, off: len(ocfMagic)}
	for {
		n, err := r.long()
		if err != nil {
			return h, err
		}
		if n == 0 {
			break
		}
		if n < 0 {
			n = -n
			if _, err := r.long(); err != nil { // block size in bytes
				return h, err
			}
		}
		for ; n > 0; n-- {
			k, err := r.bytes()
			if err != nil {
				return h, err
			}
			v, err := r.bytes()
			if err != nil {
				return h, err
			}
			h.Meta[string(k)] = v
		}
	}
	if len(b)-r.off < 16 {
		return h, errShort
	}
	copy(h.Sync[:], b[r.off:])
	h.Len = r.off + 16
	return h, nil
}

// OCFBlock is one data block of a container file.
type OCFBlock struct {
	Count int64
	Data  []byte // as stored (compressed when the codec is not null)
	// End is the offset just past the block's sync marker.
	End int
}

// ReadOCFBlock reads the block that starts at off.
func ReadOCFBlock(b []byte, off int, sync [16]byte) (OCFBlock, error) {
	r := &avroReader{b: b, off: off}
	n, err := r.long()
	if err != nil {
		return OCFBlock{}, err
	}
	data, err := r.bytes()
	if err != nil {
		return OCFBlock{}, err
	}
	if len(b)-r.off < 16 || !bytes.Equal(b[r.off:r.off+16], sync[:]) {
		return OCFBlock{}, errors.New("avro: bad sync marker")
	}
	return OCFBlock{Count: n, Data: data, End: r.off + 16}, nil
}

// candidReader reads candids, caching compiled schemas. Not safe for
// concurrent use.
type candidReader struct {
	plans map[string]*candidPlan
}

type candidPlan struct {
	before []skipFunc // fields ahead of candid
	candid skipFunc   // nil when candid is a plain long
	branch int64      // union branch index of long when candid is a union
	err    error
}

func newCandidReader() *candidReader { return &candidReader{plans: map[string]*candidPlan{}} }

// Candid reads the top-level candid of the first alert in value.
func (c *candidReader) Candid(value []byte) (int64, error) {
	h, err := ParseOCFHeader(value)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoCandid, err)
	}
	schema := h.Meta["avro.schema"]
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
	blk, err := ReadOCFBlock(value, h.Len, h.Sync)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoCandid, err)
	}
	data := blk.Data
	switch codec := string(h.Meta["avro.codec"]); codec {
	case "", "null":
	case "deflate":
		data, err = io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(data)), 64<<20))
		if err != nil {
			return 0, fmt.Errorf("%w: deflate: %v", ErrNoCandid, err)
		}
	default:
		return 0, fmt.Errorf("%w: codec %q not supported", ErrNoCandid, codec)
	}
	if blk.Count < 1 {
		return 0, fmt.Errorf("%w: empty block", ErrNoCandid)
	}
	r := &avroReader{b: data}
	for _, skip := range p.before {
		if err := skip(r); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrNoCandid, err)
		}
	}
	if p.candid != nil {
		idx, err := r.long()
		if err != nil || idx != p.branch {
			return 0, fmt.Errorf("%w: candid is not a long in this alert", ErrNoCandid)
		}
	}
	v, err := r.long()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoCandid, err)
	}
	return v, nil
}

type skipFunc func(*avroReader) error

// schemaCompiler turns parsed schema JSON into skippers. Named types are
// registered as they are met, so references resolve the way Avro defines.
type schemaCompiler struct {
	named map[string]*skipFunc
}

func compileCandidPlan(schemaJSON []byte) *candidPlan {
	var s any
	if err := json.Unmarshal(schemaJSON, &s); err != nil {
		return &candidPlan{err: fmt.Errorf("schema: %v", err)}
	}
	top, ok := s.(map[string]any)
	if !ok || top["type"] != "record" {
		return &candidPlan{err: errors.New("schema: top level is not a record")}
	}
	sc := &schemaCompiler{named: map[string]*skipFunc{}}
	ns := namespaceOf(top, "")
	fields, _ := top["fields"].([]any)
	p := &candidPlan{}
	for _, f := range fields {
		fm, _ := f.(map[string]any)
		if fm == nil {
			return &candidPlan{err: errors.New("schema: bad field")}
		}
		if fm["name"] == "candid" {
			switch t := fm["type"].(type) {
			case string:
				if t != "long" {
					return &candidPlan{err: fmt.Errorf("schema: candid is %s", t)}
				}
			case []any:
				p.candid = func(*avroReader) error { return nil }
				p.branch = -1
				for i, b := range t {
					if b == "long" {
						p.branch = int64(i)
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
		skip, err := sc.compile(fm["type"], ns)
		if err != nil {
			return &candidPlan{err: err}
		}
		p.before = append(p.before, skip)
	}
	return &candidPlan{err: errors.New("schema: no top-level candid")}
}

func namespaceOf(m map[string]any, enclosing string) string {
	name, _ := m["name"].(string)
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[:i]
	}
	if ns, ok := m["namespace"].(string); ok {
		return ns
	}
	return enclosing
}

func fullName(name, ns string) string {
	if strings.ContainsRune(name, '.') || ns == "" {
		return name
	}
	return ns + "." + name
}

func (sc *schemaCompiler) compile(t any, ns string) (skipFunc, error) {
	switch t := t.(type) {
	case string:
		return sc.primitive(t, ns)
	case []any:
		branches := make([]skipFunc, len(t))
		for i, b := range t {
			s, err := sc.compile(b, ns)
			if err != nil {
				return nil, err
			}
			branches[i] = s
		}
		return func(r *avroReader) error {
			i, err := r.long()
			if err != nil {
				return err
			}
			if i < 0 || i >= int64(len(branches)) {
				return fmt.Errorf("avro: union index %d out of range", i)
			}
			return branches[i](r)
		}, nil
	case map[string]any:
		return sc.complex(t, ns)
	}
	return nil, fmt.Errorf("schema: unexpected %T", t)
}

func (sc *schemaCompiler) primitive(name, ns string) (skipFunc, error) {
	switch name {
	case "null":
		return func(*avroReader) error { return nil }, nil
	case "boolean":
		return func(r *avroReader) error { return r.skip(1) }, nil
	case "int", "long":
		return func(r *avroReader) error { _, err := r.long(); return err }, nil
	case "float":
		return func(r *avroReader) error { return r.skip(4) }, nil
	case "double":
		return func(r *avroReader) error { return r.skip(8) }, nil
	case "bytes", "string":
		return func(r *avroReader) error { _, err := r.bytes(); return err }, nil
	}
	ref := sc.named[fullName(name, ns)]
	if ref == nil {
		ref = sc.named[name]
	}
	if ref == nil {
		return nil, fmt.Errorf("schema: unknown type %q", name)
	}
	// Late-bound so a record may refer to itself.
	return func(r *avroReader) error { return (*ref)(r) }, nil
}

func (sc *schemaCompiler) define(m map[string]any, ns string) (*skipFunc, string) {
	name, _ := m["name"].(string)
	full := fullName(name, namespaceOf(m, ns))
	slot := new(skipFunc)
	sc.named[full] = slot
	return slot, namespaceOf(m, ns)
}

func (sc *schemaCompiler) complex(m map[string]any, ns string) (skipFunc, error) {
	typ, _ := m["type"].(string)
	switch typ {
	case "record", "error":
		slot, inner := sc.define(m, ns)
		fields, _ := m["fields"].([]any)
		skips := make([]skipFunc, 0, len(fields))
		for _, f := range fields {
			fm, _ := f.(map[string]any)
			if fm == nil {
				return nil, errors.New("schema: bad field")
			}
			s, err := sc.compile(fm["type"], inner)
			if err != nil {
				return nil, err
			}
			skips = append(skips, s)
		}
		*slot = func(r *avroReader) error {
			for _, s := range skips {
				if err := s(r); err != nil {
					return err
				}
			}
			return nil
		}
		return *slot, nil
	case "enum":
		slot, _ := sc.define(m, ns)
		*slot = func(r *avroReader) error { _, err := r.long(); return err }
		return *slot, nil
	case "fixed":
		slot, _ := sc.define(m, ns)
		size, _ := m["size"].(float64)
		if size < 0 || size > math.MaxInt32 {
			return nil, errors.New("schema: bad fixed size")
		}
		n := int64(size)
		*slot = func(r *avroReader) error { return r.skip(n) }
		return *slot, nil
	case "array", "map":
		key := "items"
		if typ == "map" {
			key = "values"
		}
		item, err := sc.compile(m[key], ns)
		if err != nil {
			return nil, err
		}
		isMap := typ == "map"
		return func(r *avroReader) error {
			for {
				n, err := r.long()
				if err != nil {
					return err
				}
				if n == 0 {
					return nil
				}
				if n < 0 {
					size, err := r.long()
					if err != nil {
						return err
					}
					if err := r.skip(size); err != nil {
						return err
					}
					continue
				}
				for ; n > 0; n-- {
					if isMap {
						if _, err := r.bytes(); err != nil {
							return err
						}
					}
					if err := item(r); err != nil {
						return err
					}
				}
			}
		}, nil
	case "":
		return nil, errors.New("schema: type missing")
	}
	// {"type": "long", "logicalType": ...} and the like.
	return sc.compile(typ, ns)
}
