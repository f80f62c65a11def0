package alertcat

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hamba/avro/v2"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// BytesStyle says how bytes and fixed values are written in JSON.
type BytesStyle int

const (
	// Base64 writes standard base64 (RFC 4648, with padding).
	Base64 BytesStyle = iota
	// DataURI writes data: URIs whose media type is sniffed
	// (application/gzip for the gzipped FITS cutouts).
	DataURI
)

// decoder turns the Avro binary encoding of one value into JSON text.
type decoder struct {
	b     []byte
	pos   int
	style BytesStyle
	// candid is the top-level "candid" field, used to name files.
	candid    int64
	hasCandid bool
	// objectID and jd (candidate.jd) make the key and timestamp of a
	// Kafka record written from a file; inCandidate is set while the
	// top-level "candidate" field is decoded.
	objectID    string
	jd          float64
	hasJD       bool
	inCandidate bool
}

// reset forgets the fields found in the previous record.
func (d *decoder) reset() {
	d.candid, d.hasCandid = 0, false
	d.objectID, d.jd, d.hasJD, d.inCandidate = "", 0, false, false
}

// maxDepth bounds nesting, against recursive schemas and crafted input.
const maxDepth = 512

func (d *decoder) long() (int64, error) {
	v, n, err := avrofile.ReadLong(d.b[d.pos:])
	d.pos += n
	return v, err
}

// bytes reads a bytes or string value, aliasing d.b.
func (d *decoder) bytes() ([]byte, error) {
	v, n, err := avrofile.ReadBytes(d.b[d.pos:])
	d.pos += n
	return v, err
}

func (d *decoder) take(n int64) ([]byte, error) {
	if n < 0 || int64(len(d.b)-d.pos) < n {
		return nil, avrofile.ErrTruncated
	}
	v := d.b[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return v, nil
}

// value appends the JSON form of the next value of schema s to dst.
func (d *decoder) value(dst []byte, s avro.Schema, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("values nested too deep")
	}
	switch t := s.(type) {
	case *avro.RefSchema:
		return d.value(dst, t.Schema(), depth)
	case *avro.RecordSchema:
		dst = append(dst, '{')
		for i, f := range t.Fields() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, f.Name())
			dst = append(dst, ':')
			start, jsonStart := d.pos, len(dst)
			if depth == 0 {
				d.inCandidate = f.Name() == "candidate"
			}
			var err error
			if dst, err = d.value(dst, f.Type(), depth+1); err != nil {
				return nil, fmt.Errorf("%s.%s: %w", t.Name(), f.Name(), err)
			}
			switch {
			case depth == 0 && f.Name() == "candid" && f.Type().Type() == avro.Long:
				d2 := decoder{b: d.b, pos: start}
				d.candid, _ = d2.long()
				d.hasCandid = true
			case depth == 0 && f.Name() == "objectId":
				// The JSON just written: a string, or null in a union.
				_ = json.Unmarshal(dst[jsonStart:], &d.objectID)
			case depth == 1 && d.inCandidate && f.Name() == "jd":
				// Shortest form that reads back to the same bits; "NaN"
				// and null do not parse and leave no time.
				if v, err := strconv.ParseFloat(string(dst[jsonStart:]), 64); err == nil {
					d.jd, d.hasJD = v, true
				}
			}
			if depth == 0 {
				d.inCandidate = false
			}
		}
		return append(dst, '}'), nil
	case *avro.UnionSchema:
		idx, err := d.long()
		if err != nil {
			return nil, err
		}
		types := t.Types()
		if idx < 0 || idx >= int64(len(types)) {
			return nil, fmt.Errorf("union branch %d of %d", idx, len(types))
		}
		br := types[idx]
		if br.Type() == avro.Null {
			return append(dst, "null"...), nil
		}
		if simpleNullable(t) {
			return d.value(dst, br, depth)
		}
		dst = append(dst, '{')
		dst = appendString(dst, branchName(br))
		dst = append(dst, ':')
		if dst, err = d.value(dst, br, depth); err != nil {
			return nil, err
		}
		return append(dst, '}'), nil
	case *avro.ArraySchema:
		dst = append(dst, '[')
		first := true
		for {
			n, err := d.blockCount()
			if err != nil {
				return nil, err
			}
			if n == 0 {
				break
			}
			for ; n > 0; n-- {
				if !first {
					dst = append(dst, ',')
				}
				first = false
				if dst, err = d.value(dst, t.Items(), depth+1); err != nil {
					return nil, err
				}
			}
		}
		return append(dst, ']'), nil
	case *avro.MapSchema:
		dst = append(dst, '{')
		first := true
		for {
			n, err := d.blockCount()
			if err != nil {
				return nil, err
			}
			if n == 0 {
				break
			}
			for ; n > 0; n-- {
				if !first {
					dst = append(dst, ',')
				}
				first = false
				k, err := d.bytes()
				if err != nil {
					return nil, err
				}
				dst = appendString(dst, string(k))
				dst = append(dst, ':')
				if dst, err = d.value(dst, t.Values(), depth+1); err != nil {
					return nil, err
				}
			}
		}
		return append(dst, '}'), nil
	case *avro.EnumSchema:
		i, err := d.long()
		if err != nil {
			return nil, err
		}
		syms := t.Symbols()
		if i < 0 || i >= int64(len(syms)) {
			return nil, fmt.Errorf("enum index %d of %d", i, len(syms))
		}
		return appendString(dst, syms[i]), nil
	case *avro.FixedSchema:
		v, err := d.take(int64(t.Size()))
		if err != nil {
			return nil, err
		}
		return appendBytes(dst, v, d.style), nil
	}
	switch s.Type() {
	case avro.Null:
		return append(dst, "null"...), nil
	case avro.Boolean:
		v, err := d.take(1)
		if err != nil {
			return nil, err
		}
		if v[0] > 1 {
			return nil, fmt.Errorf("boolean byte %d", v[0])
		}
		return strconv.AppendBool(dst, v[0] == 1), nil
	case avro.Int, avro.Long:
		v, err := d.long()
		if err != nil {
			return nil, err
		}
		return strconv.AppendInt(dst, v, 10), nil
	case avro.Float:
		v, err := d.take(4)
		if err != nil {
			return nil, err
		}
		bits := binary.LittleEndian.Uint32(v)
		f := math.Float32frombits(bits)
		switch {
		case f != f:
			if bits == 0x7fc00000 {
				return append(dst, `"NaN"`...), nil
			}
			return fmt.Appendf(dst, `"NaN(0x%08x)"`, bits), nil
		case math.IsInf(float64(f), 1):
			return append(dst, `"Infinity"`...), nil
		case math.IsInf(float64(f), -1):
			return append(dst, `"-Infinity"`...), nil
		}
		return strconv.AppendFloat(dst, float64(f), 'g', -1, 32), nil
	case avro.Double:
		v, err := d.take(8)
		if err != nil {
			return nil, err
		}
		bits := binary.LittleEndian.Uint64(v)
		f := math.Float64frombits(bits)
		switch {
		case f != f:
			if bits == 0x7ff8000000000000 {
				return append(dst, `"NaN"`...), nil
			}
			return fmt.Appendf(dst, `"NaN(0x%016x)"`, bits), nil
		case math.IsInf(f, 1):
			return append(dst, `"Infinity"`...), nil
		case math.IsInf(f, -1):
			return append(dst, `"-Infinity"`...), nil
		}
		return strconv.AppendFloat(dst, f, 'g', -1, 64), nil
	case avro.Bytes:
		v, err := d.bytes()
		if err != nil {
			return nil, err
		}
		return appendBytes(dst, v, d.style), nil
	case avro.String:
		v, err := d.bytes()
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(v) {
			return nil, errors.New("string is not UTF-8")
		}
		return appendString(dst, string(v)), nil
	}
	return nil, fmt.Errorf("avro type %s not supported", s.Type())
}

func (d *decoder) blockCount() (int64, error) {
	n, err := d.long()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		n = -n
		if _, err := d.long(); err != nil {
			return 0, err
		}
	}
	// Items of zero bytes (null) could make a short input claim billions.
	if n > int64(len(d.b)-d.pos) && n > 1<<16 {
		return 0, fmt.Errorf("block of %d items in %d bytes", n, len(d.b)-d.pos)
	}
	return n, nil
}

// simpleNullable reports a two-branch union with null: written in JSON as
// the bare value or null, as ZTF's consumers (fastavro) expect. Any other
// union is written in the Avro JSON encoding, {"branch": value}.
func simpleNullable(u *avro.UnionSchema) bool {
	ts := u.Types()
	return len(ts) == 2 && (ts[0].Type() == avro.Null) != (ts[1].Type() == avro.Null)
}

func branchName(s avro.Schema) string {
	if r, ok := s.(*avro.RefSchema); ok {
		s = r.Schema()
	}
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	return string(s.Type())
}

func appendBytes(dst, v []byte, style BytesStyle) []byte {
	dst = append(dst, '"')
	if style == DataURI {
		dst = append(dst, "data:"...)
		dst = append(dst, mediaType(v)...)
		dst = append(dst, ";base64,"...)
	}
	dst = base64.StdEncoding.AppendEncode(dst, v)
	return append(dst, '"')
}

func mediaType(v []byte) string {
	switch {
	case len(v) >= 2 && v[0] == 0x1f && v[1] == 0x8b:
		return "application/gzip"
	case len(v) >= 3 && v[0] == 0xff && v[1] == 0xd8 && v[2] == 0xff:
		return "image/jpeg"
	case strings.HasPrefix(string(v), "SIMPLE  ="):
		return "application/fits"
	}
	return "application/octet-stream"
}

func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// encoder turns a JSON value (as parsed by parseJSON) into Avro binary.
type encoder struct{ b []byte }

func (e *encoder) long(v int64) { e.b = avrofile.AppendLong(e.b, v) }

func (e *encoder) value(s avro.Schema, v any, path string) error {
	switch t := s.(type) {
	case *avro.RefSchema:
		return e.value(t.Schema(), v, path)
	case *avro.RecordSchema:
		obj, ok := v.(*object)
		if !ok {
			return fmt.Errorf("%s: want an object for record %s, got %s", path, t.FullName(), jsonKind(v))
		}
		for _, f := range t.Fields() {
			fv, ok := obj.get(f.Name())
			if !ok {
				return fmt.Errorf("%s: field %q missing", path, f.Name())
			}
			if err := e.value(f.Type(), fv, path+"."+f.Name()); err != nil {
				return err
			}
		}
		return nil
	case *avro.UnionSchema:
		types := t.Types()
		if v == nil {
			for i, br := range types {
				if br.Type() == avro.Null {
					e.long(int64(i))
					return nil
				}
			}
			return fmt.Errorf("%s: null for a union without null", path)
		}
		if simpleNullable(t) {
			for i, br := range types {
				if br.Type() != avro.Null {
					e.long(int64(i))
					return e.value(br, v, path)
				}
			}
		}
		obj, ok := v.(*object)
		if !ok || len(obj.keys) != 1 {
			return fmt.Errorf("%s: union value must be {\"branch\": value}", path)
		}
		name := obj.keys[0]
		for i, br := range types {
			if branchName(br) == name {
				e.long(int64(i))
				return e.value(br, obj.vals[name], path)
			}
		}
		return fmt.Errorf("%s: union has no branch %q", path, name)
	case *avro.ArraySchema:
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, got %s", path, jsonKind(v))
		}
		// One block then the end marker, as every ZTF writer does; a
		// writer that used several blocks would not round-trip bytewise.
		if len(arr) > 0 {
			e.long(int64(len(arr)))
			for i, it := range arr {
				if err := e.value(t.Items(), it, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
		e.long(0)
		return nil
	case *avro.MapSchema:
		obj, ok := v.(*object)
		if !ok {
			return fmt.Errorf("%s: want an object for a map, got %s", path, jsonKind(v))
		}
		if len(obj.keys) > 0 {
			e.long(int64(len(obj.keys)))
			for _, k := range obj.keys {
				e.long(int64(len(k)))
				e.b = append(e.b, k...)
				if err := e.value(t.Values(), obj.vals[k], path+"."+k); err != nil {
					return err
				}
			}
		}
		e.long(0)
		return nil
	case *avro.EnumSchema:
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a string for enum, got %s", path, jsonKind(v))
		}
		for i, sym := range t.Symbols() {
			if sym == str {
				e.long(int64(i))
				return nil
			}
		}
		return fmt.Errorf("%s: %q is not a symbol of enum %s", path, str, t.FullName())
	case *avro.FixedSchema:
		b, err := jsonBytes(v)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(b) != t.Size() {
			return fmt.Errorf("%s: fixed %s wants %d bytes, got %d", path, t.FullName(), t.Size(), len(b))
		}
		e.b = append(e.b, b...)
		return nil
	}
	switch s.Type() {
	case avro.Null:
		if v != nil {
			return fmt.Errorf("%s: want null, got %s", path, jsonKind(v))
		}
		return nil
	case avro.Boolean:
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("%s: want a boolean, got %s", path, jsonKind(v))
		}
		if b {
			e.b = append(e.b, 1)
		} else {
			e.b = append(e.b, 0)
		}
		return nil
	case avro.Int, avro.Long:
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%s: want an integer, got %s", path, jsonKind(v))
		}
		bits := 64
		if s.Type() == avro.Int {
			bits = 32
		}
		i, err := strconv.ParseInt(string(n), 10, bits)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		e.long(i)
		return nil
	case avro.Float:
		bits, err := jsonFloat(v, 32)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		e.b = binary.LittleEndian.AppendUint32(e.b, uint32(bits))
		return nil
	case avro.Double:
		bits, err := jsonFloat(v, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		e.b = binary.LittleEndian.AppendUint64(e.b, bits)
		return nil
	case avro.Bytes:
		b, err := jsonBytes(v)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		e.b = avrofile.AppendBytes(e.b, b)
		return nil
	case avro.String:
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a string, got %s", path, jsonKind(v))
		}
		e.long(int64(len(str)))
		e.b = append(e.b, str...)
		return nil
	}
	return fmt.Errorf("%s: avro type %s not supported", path, s.Type())
}

// jsonFloat returns the IEEE bits of a JSON number or of one of the
// strings the decoder writes for values JSON has no number for.
func jsonFloat(v any, size int) (uint64, error) {
	var f float64
	switch t := v.(type) {
	case json.Number:
		var err error
		if f, err = strconv.ParseFloat(string(t), size); err != nil {
			return 0, err
		}
	case string:
		switch {
		case t == "NaN":
			if size == 32 {
				return 0x7fc00000, nil
			}
			return 0x7ff8000000000000, nil
		case t == "Infinity":
			f = math.Inf(1)
		case t == "-Infinity":
			f = math.Inf(-1)
		case strings.HasPrefix(t, "NaN(0x") && strings.HasSuffix(t, ")"):
			return strconv.ParseUint(t[6:len(t)-1], 16, size)
		default:
			return 0, fmt.Errorf("want a number, got string %q", t)
		}
	default:
		return 0, fmt.Errorf("want a number, got %s", jsonKind(v))
	}
	if size == 32 {
		return uint64(math.Float32bits(float32(f))), nil
	}
	return math.Float64bits(f), nil
}

func jsonBytes(v any) ([]byte, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("want base64 or a data: URI, got %s", jsonKind(v))
	}
	if strings.HasPrefix(s, "data:") {
		comma := strings.IndexByte(s, ',')
		if comma < 0 || !strings.HasSuffix(s[:comma], ";base64") {
			return nil, errors.New("data: URI must be base64")
		}
		s = s[comma+1:]
	}
	return base64.StdEncoding.DecodeString(s)
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case *object:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
