package avrofile

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Stepping over values without decoding them is how a multi-alert file is
// cut at record boundaries and how candid is found behind the fields before
// it. The plan is compiled from the schema JSON itself rather than from a
// strict parser's schema: ZTF's schemas before 4.x carry union defaults that
// strict parsers refuse, and neither defaults nor doc, aliases or logical
// types change how a value is laid out.

var (
	// ErrSchema means schema JSON that cannot be compiled.
	ErrSchema = errors.New("avrofile: bad schema")
	// ErrUnionIndex means a union branch index the schema does not have.
	ErrUnionIndex = errors.New("avrofile: union index out of range")
	// ErrTooDeep means records nested deeper than maxDepth, which only a
	// recursive schema with hostile data reaches.
	ErrTooDeep = errors.New("avrofile: records nested too deep")
)

// maxDepth bounds record nesting while skipping; ZTF alerts nest three deep.
const maxDepth = 200

// Schema is a writer schema compiled to step over its values.
type Schema struct {
	// Fields are the top-level record's fields in order; nil when the
	// schema is not a record.
	Fields []Field
	skip   skipFunc
}

// Field is one field of the top-level record.
type Field struct {
	Name string
	// Type is the field's type as the schema JSON writes it, decoded by
	// encoding/json: a string (a primitive or a name), a []any (a union)
	// or a map[string]any.
	Type any
	skip skipFunc
}

type skipFunc func(*decoder) error

// Compile compiles schema JSON (the avro.schema of a header).
func Compile(schemaJSON []byte) (*Schema, error) {
	var v any
	if err := json.Unmarshal(schemaJSON, &v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	c := &compiler{named: map[string]*skipFunc{}}
	if m, ok := v.(map[string]any); ok && (m["type"] == "record" || m["type"] == "error") {
		fields, skip, err := c.record(m, "")
		if err != nil {
			return nil, err
		}
		return &Schema{Fields: fields, skip: skip}, nil
	}
	skip, err := c.compile(v, "")
	if err != nil {
		return nil, err
	}
	return &Schema{skip: skip}, nil
}

// Field returns the index of the top-level field called name, or -1.
func (s *Schema) Field(name string) int {
	for i, f := range s.Fields {
		if f.Name == name {
			return i
		}
	}
	return -1
}

// Skip returns the length of the value at the start of b.
func (s *Schema) Skip(b []byte) (int, error) {
	d := &decoder{b: b}
	err := s.skip(d)
	return d.off, err
}

// SkipFields returns the length of the first n fields of the record at the
// start of b: the offset of field n.
func (s *Schema) SkipFields(b []byte, n int) (int, error) {
	if n > len(s.Fields) {
		return 0, fmt.Errorf("%w: %d fields, not %d", ErrSchema, len(s.Fields), n)
	}
	d := &decoder{b: b}
	for _, f := range s.Fields[:n] {
		if err := f.skip(d); err != nil {
			return d.off, fmt.Errorf("field %s: %w", f.Name, err)
		}
	}
	return d.off, nil
}

// compiler turns schema JSON into skip functions. Named types are
// registered as they are met, so references resolve the way Avro defines.
type compiler struct {
	named map[string]*skipFunc
}

func (c *compiler) compile(t any, ns string) (skipFunc, error) {
	switch t := t.(type) {
	case string:
		return c.primitive(t, ns)
	case []any:
		branches := make([]skipFunc, len(t))
		for i, b := range t {
			s, err := c.compile(b, ns)
			if err != nil {
				return nil, err
			}
			branches[i] = s
		}
		return func(d *decoder) error {
			i, err := d.long()
			if err != nil {
				return err
			}
			if i < 0 || i >= int64(len(branches)) {
				return fmt.Errorf("%w: %d of %d", ErrUnionIndex, i, len(branches))
			}
			return branches[i](d)
		}, nil
	case map[string]any:
		return c.complex(t, ns)
	}
	return nil, fmt.Errorf("%w: unexpected %T", ErrSchema, t)
}

func (c *compiler) primitive(name, ns string) (skipFunc, error) {
	switch name {
	case "null":
		return func(*decoder) error { return nil }, nil
	case "boolean":
		return func(d *decoder) error { return d.skip(1) }, nil
	case "int", "long":
		return func(d *decoder) error { _, err := d.long(); return err }, nil
	case "float":
		return func(d *decoder) error { return d.skip(4) }, nil
	case "double":
		return func(d *decoder) error { return d.skip(8) }, nil
	case "bytes", "string":
		return func(d *decoder) error { _, err := d.bytes(); return err }, nil
	}
	ref := c.named[fullName(name, ns)]
	if ref == nil {
		ref = c.named[name]
	}
	if ref == nil {
		return nil, fmt.Errorf("%w: unknown type %q", ErrSchema, name)
	}
	// Late-bound so a record may refer to itself.
	return func(d *decoder) error { return (*ref)(d) }, nil
}

func (c *compiler) complex(m map[string]any, ns string) (skipFunc, error) {
	typ, ok := m["type"].(string)
	if !ok {
		if m["type"] == nil {
			return nil, fmt.Errorf("%w: type missing", ErrSchema)
		}
		return c.compile(m["type"], ns)
	}
	switch typ {
	case "record", "error":
		_, skip, err := c.record(m, ns)
		return skip, err
	case "enum":
		slot, _ := c.define(m, ns)
		*slot = func(d *decoder) error { _, err := d.long(); return err }
		return *slot, nil
	case "fixed":
		slot, _ := c.define(m, ns)
		size, _ := m["size"].(float64)
		if size < 0 || size > math.MaxInt32 {
			return nil, fmt.Errorf("%w: fixed size %v", ErrSchema, m["size"])
		}
		n := int64(size)
		*slot = func(d *decoder) error { return d.skip(n) }
		return *slot, nil
	case "array":
		item, err := c.compile(m["items"], ns)
		if err != nil {
			return nil, err
		}
		return func(d *decoder) error { return skipBlocks(d, item) }, nil
	case "map":
		value, err := c.compile(m["values"], ns)
		if err != nil {
			return nil, err
		}
		return func(d *decoder) error {
			return skipBlocks(d, func(d *decoder) error {
				if _, err := d.bytes(); err != nil {
					return err
				}
				return value(d)
			})
		}, nil
	}
	// {"type": "long", "logicalType": ...} and the like.
	return c.compile(typ, ns)
}

// record compiles a record, defining its name before its fields so that
// they may refer to it.
func (c *compiler) record(m map[string]any, ns string) ([]Field, skipFunc, error) {
	slot, inner := c.define(m, ns)
	raw, _ := m["fields"].([]any)
	fields := make([]Field, 0, len(raw))
	for _, f := range raw {
		fm, _ := f.(map[string]any)
		if fm == nil {
			return nil, nil, fmt.Errorf("%w: field is not an object", ErrSchema)
		}
		name, _ := fm["name"].(string)
		s, err := c.compile(fm["type"], inner)
		if err != nil {
			return nil, nil, fmt.Errorf("field %s: %w", name, err)
		}
		fields = append(fields, Field{Name: name, Type: fm["type"], skip: s})
	}
	*slot = func(d *decoder) error {
		if d.depth++; d.depth > maxDepth {
			return ErrTooDeep
		}
		for _, f := range fields {
			if err := f.skip(d); err != nil {
				return err
			}
		}
		d.depth--
		return nil
	}
	return fields, *slot, nil
}

func (c *compiler) define(m map[string]any, ns string) (*skipFunc, string) {
	name, _ := m["name"].(string)
	inner := namespaceOf(m, ns)
	slot := new(skipFunc)
	c.named[fullName(name, inner)] = slot
	return slot, inner
}

// skipBlocks steps over the blocks of an array or map. A block of -n items
// gives its size in bytes and is jumped over whole.
func skipBlocks(d *decoder, item skipFunc) error {
	for {
		n, err := d.long()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n < 0 {
			size, err := d.long()
			if err != nil {
				return err
			}
			if err := d.skip(size); err != nil {
				return err
			}
			continue
		}
		for ; n > 0; n-- {
			start := d.off
			if err := item(d); err != nil {
				return err
			}
			// A type encodes to no bytes (null, fixed 0, records of those)
			// for every value or to at least one for every value: stop
			// here rather than spin through a hostile count of nothing.
			if d.off == start {
				break
			}
		}
	}
}

// namespaceOf is the namespace m defines for the names inside it.
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
