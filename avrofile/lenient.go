package avrofile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
)

// The project's one lenient schema parser. Most ZTF writer schemas before
// 4.02 declare defaults the Avro specification calls invalid: a null default
// on a union whose first branch is not null ({"type": ["float", "null"],
// "default": null}) and, in the 2020-2021 operational alerts, tooflag's
// {"type": ["null", "int"], "default": 0}. Strict parsers, hamba/avro
// included, refuse the whole schema for one of them.
//
// ParseSchema drops exactly the defaults the specification calls invalid
// and keeps the rest, so a clean schema (4.02) parses to what a strict
// parser gives, and a parsed old schema still carries its valid defaults
// should it ever be used to resolve. Defaults play no part in the binary
// encoding, so reading a writer's data with the cleaned schema is exact.
// Each parse gets a fresh hamba name cache: the same name means different
// records in different ZTF schemas (ztf.alert.prv_candidate in the 3.5
// forced-photometry prototypes), so no name may leak from one parse into
// another, as it would through hamba's global cache.

// ParseSchema parses writer schema JSON (the avro.schema of a header)
// leniently: see above.
func ParseSchema(text []byte) (avro.Schema, error) {
	return parseTexts([][]byte{text})
}

// ParseSchemaFiles parses schema files in order, later ones referring to
// names the earlier ones define, and returns the last: avro.ParseFiles,
// leniently and without the global cache. For the ZTF schema/ folder the
// order is cutout, candidate, prv_candidate, fp_hist, alert.
func ParseSchemaFiles(paths ...string) (avro.Schema, error) {
	texts := make([][]byte, len(paths))
	for i, p := range paths {
		b, err := os.ReadFile(filepath.Clean(p))
		if err != nil {
			return nil, err
		}
		texts[i] = b
	}
	return parseTexts(texts)
}

func parseTexts(texts [][]byte) (avro.Schema, error) {
	if len(texts) == 0 {
		return nil, fmt.Errorf("%w: no schema", ErrSchema)
	}
	names := &avro.SchemaCache{}
	c := newCleaner()
	var s avro.Schema
	for _, text := range texts {
		clean, err := c.clean(text)
		if err != nil {
			return nil, err
		}
		s, err = parseHamba(clean, names)
		if err != nil {
			// Only a default hamba judges otherwise than the
			// specification gets here with a schema that is otherwise
			// sound (a record default that leaves out a bytes field with
			// a default of its own); defaults never change the encoding,
			// so drop them all rather than refuse the writer's data.
			var stripErr error
			if clean, stripErr = stripAllDefaults(clean); stripErr == nil {
				s, stripErr = parseHamba(clean, names)
			}
			if stripErr != nil {
				return nil, fmt.Errorf("%w: %w", ErrSchema, err)
			}
		}
	}
	return s, nil
}

// parseHamba is hamba's parse, made safe for outside bytes: hamba matches
// attribute names regardless of case ("Default"), and a recursive record
// with a default it cannot check yet dereferences a field not yet parsed.
func parseHamba(text []byte, names *avro.SchemaCache) (s avro.Schema, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("hamba/avro panicked: %v", r)
		}
	}()
	return avro.ParseBytesWithCache(text, "", names)
}

// cleaner deletes the defaults the specification calls invalid. Named types
// are registered as they are met, so a default is checked against the type
// a reference resolves to, across the texts of one ParseSchemaFiles.
type cleaner struct {
	named map[string]namedType
	// checked holds the record fields (full name + "." + field name) whose
	// default has been checked, and cost how many values that default
	// expands to, counting those filled in from field defaults.
	checked map[string]bool
	cost    map[string]int
	values  int // counted by valid
	changed bool
}

// maxDefaultValues bounds the values one field default may expand to. A
// record default that leaves fields out takes theirs, which may do the
// same: a few kB of schema can expand to 2^40 values, and hamba checks
// every one. ZTF's schemas have no record defaults at all.
const maxDefaultValues = 1 << 16

func newCleaner() *cleaner {
	return &cleaner{named: map[string]namedType{}, checked: map[string]bool{}, cost: map[string]int{}}
}

type namedType struct {
	def map[string]any
	ns  string // namespace enclosing the definition
}

// clean returns text with its invalid defaults deleted: text itself when it
// has none (so a clean schema is parsed from its own bytes), else the JSON
// re-encoded, numbers and strings unchanged.
func (c *cleaner) clean(text []byte) ([]byte, error) {
	v, err := decodeJSON(text)
	if err != nil {
		return nil, err
	}
	c.changed = false
	c.walk(v, "")
	if !c.changed {
		return text, nil
	}
	return encodeJSON(v)
}

func decodeJSON(text []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(text))
	d.UseNumber() // so a long default keeps every digit
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", ErrSchema, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: not JSON: data after the schema", ErrSchema)
	}
	return v, nil
}

func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false) // docs keep their < > &
	if err := e.Encode(v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// walk visits every type in t in the order Avro defines names, cleaning
// each record field's default once its type (and any record inside it) has
// been cleaned, and each enum's default.
func (c *cleaner) walk(t any, ns string) {
	switch t := t.(type) {
	case []any:
		for _, b := range t {
			c.walk(b, ns)
		}
	case map[string]any:
		switch typ := t["type"]; typ {
		case "record", "error":
			inner := c.define(t, ns)
			record := fullName(stringOf(t["name"]), inner)
			fields, _ := t["fields"].([]any)
			for _, f := range fields {
				fm, ok := f.(map[string]any)
				if !ok {
					continue
				}
				c.walk(fm["type"], inner)
				key := record + "." + stringOf(fm["name"])
				if def, ok := fm["default"]; ok {
					c.values = 0
					if !c.valid(fm["type"], def, inner, 0) || c.values > maxDefaultValues {
						delete(fm, "default")
						c.changed = true
					}
					c.cost[key] = c.values
				}
				c.checked[key] = true
			}
		case "enum":
			c.define(t, ns)
			if def, ok := t["default"]; ok && !isSymbol(t, def) {
				delete(t, "default")
				c.changed = true
			}
		case "fixed":
			c.define(t, ns)
		case "array":
			c.walk(t["items"], ns)
		case "map":
			c.walk(t["values"], ns)
		default:
			if _, ok := typ.(string); !ok {
				c.walk(typ, ns) // {"type": {...}} or {"type": [...]}
			}
		}
	}
}

// define registers a named type and returns the namespace of its insides.
func (c *cleaner) define(m map[string]any, ns string) string {
	name, _ := m["name"].(string)
	inner := namespaceOf(m, ns)
	c.named[fullName(name, inner)] = namedType{def: m, ns: ns}
	return inner
}

// valid reports whether def is a valid default for type t, as the Avro
// specification defines it: a union's default belongs to its first branch.
func (c *cleaner) valid(t, def any, ns string, depth int) bool {
	if c.values++; depth > maxDepth || c.values > maxDefaultValues {
		return false
	}
	switch t := t.(type) {
	case string:
		switch t {
		case "null":
			return def == nil
		case "boolean":
			_, ok := def.(bool)
			return ok
		case "int":
			return isInteger(def, 32)
		case "long":
			return isInteger(def, 64)
		case "float", "double":
			n, ok := def.(json.Number)
			_, err := n.Float64()
			return ok && err == nil
		case "string":
			_, ok := def.(string)
			return ok
		case "bytes":
			_, ok := byteString(def)
			return ok
		}
		named, ok := c.named[fullName(t, ns)]
		if !ok {
			named, ok = c.named[t]
		}
		if !ok {
			return true // an unknown name: leave the error to the parser
		}
		return c.valid(named.def, def, named.ns, depth+1)
	case []any:
		return len(t) > 0 && c.valid(t[0], def, ns, depth+1)
	case map[string]any:
		switch typ := t["type"]; typ {
		case "record", "error":
			obj, ok := def.(map[string]any)
			if !ok {
				return false
			}
			inner := namespaceOf(t, ns)
			record := fullName(stringOf(t["name"]), inner)
			fields, _ := t["fields"].([]any)
			for _, f := range fields {
				fm, _ := f.(map[string]any)
				name := stringOf(fm["name"])
				v, ok := obj[name]
				if !ok {
					if v, ok = fm["default"]; !ok {
						return false
					}
					if c.checked[record+"."+name] {
						c.values += c.cost[record+"."+name]
						continue // checked already, and kept
					}
				}
				if !c.valid(fm["type"], v, inner, depth+1) {
					return false
				}
			}
			return true
		case "enum":
			return isSymbol(t, def)
		case "fixed":
			n, ok := byteString(def)
			size, _ := t["size"].(json.Number)
			return ok && size.String() == strconv.Itoa(n)
		case "array":
			arr, ok := def.([]any)
			for _, v := range arr {
				if !c.valid(t["items"], v, ns, depth+1) {
					return false
				}
			}
			return ok
		case "map":
			obj, ok := def.(map[string]any)
			for _, v := range obj {
				if !c.valid(t["values"], v, ns, depth+1) {
					return false
				}
			}
			return ok
		default:
			// {"type": "long", "logicalType": ...} and {"type": {...}}.
			return c.valid(typ, def, ns, depth+1)
		}
	}
	return false
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

func isInteger(def any, bits int) bool {
	n, ok := def.(json.Number)
	if !ok {
		return false
	}
	_, err := strconv.ParseInt(n.String(), 10, bits)
	return err == nil
}

// byteString reports whether def is a default for bytes or fixed: a string
// of code points 0-255, one per byte. It returns the byte count.
func byteString(def any) (int, bool) {
	s, ok := def.(string)
	if !ok {
		return 0, false
	}
	for _, r := range s {
		if r > 255 {
			return 0, false
		}
	}
	return utf8.RuneCountInString(s), true
}

func isSymbol(enum map[string]any, def any) bool {
	s, ok := def.(string)
	symbols, _ := enum["symbols"].([]any)
	for _, sym := range symbols {
		if ok && sym == s {
			return true
		}
	}
	return false
}

// stripAllDefaults deletes every record field's and enum's default.
func stripAllDefaults(text []byte) ([]byte, error) {
	v, err := decodeJSON(text)
	if err != nil {
		return nil, err
	}
	var strip func(any)
	strip = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if t["type"] == "enum" {
				delete(t, "default")
			}
			if fields, ok := t["fields"].([]any); ok {
				for _, f := range fields {
					if fm, ok := f.(map[string]any); ok {
						delete(fm, "default")
					}
				}
			}
			for _, x := range t {
				strip(x)
			}
		case []any:
			for _, x := range t {
				strip(x)
			}
		}
	}
	strip(v)
	return encodeJSON(v)
}
