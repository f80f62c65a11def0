package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ztfbroker/ztfbroker/filter"
)

// The one naming rule of settings: lowercase words joined by dots, Kafka's
// own name where Kafka has one (log.retention.ms, fetch.max.bytes), and a
// duration carries its unit in the name as Kafka's do (.ms, an integer).
// A YAML mapping is a prefix: `packager: {source: {kind: x}}` and
// `packager.source.kind: x` are the same setting. Every value travels as the
// string a flag would give (lists comma-separated), so the file, --set and
// the named flags take one path into each package's Config.

// settings are flat name -> value pairs, with where each came from.
type settings struct {
	values map[string]string
	origin map[string]string // name -> "line N" or "flag"
}

func newSettings() settings {
	return settings{values: map[string]string{}, origin: map[string]string{}}
}

// set records one setting; a name given twice in one source is an error.
func (s settings) set(name, value, origin string) error {
	if prev, dup := s.origin[name]; dup && prev != "flag" && origin != "flag" {
		return fmt.Errorf("%s (%s): set twice, also at %s", name, origin, prev)
	}
	s.values[name], s.origin[name] = value, origin
	return nil
}

// take removes and returns the settings under prefix (without it).
func (s settings) take(prefix string) map[string]string {
	out := map[string]string{}
	for k, v := range s.values {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			out[rest] = v
			delete(s.values, k)
		}
	}
	return out
}

// takeKeys removes and returns the named settings.
func (s settings) takeKeys(names ...string) map[string]string {
	out := map[string]string{}
	for _, k := range names {
		if v, ok := s.values[k]; ok {
			out[k] = v
			delete(s.values, k)
		}
	}
	return out
}

// configDoc is a parsed config file: its flat settings and the listener list,
// the one setting that is a list of mappings.
type configDoc struct {
	settings  settings
	listeners []listenerSection
	filters   []filter.Declared
}

// readConfigFile parses file into flat settings.
func readConfigFile(file string) (configDoc, error) {
	doc := configDoc{settings: newSettings()}
	data, err := os.ReadFile(file)
	if err != nil {
		return doc, fmt.Errorf("config: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return doc, fmt.Errorf("config %s: %w", file, err)
	}
	if len(root.Content) == 0 {
		return doc, nil // an empty file keeps every default
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return doc, fmt.Errorf("config %s: want a mapping of settings at the top", file)
	}
	var errs []error
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, n := top.Content[i].Value, top.Content[i+1]
		if k == "listeners" {
			if err := decodeListeners(n, &doc.listeners); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if k == "filters" {
			if err := decodeFilters(n, &doc.filters); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		errs = append(errs, flatten(k, n, doc.settings)...)
	}
	if err := errors.Join(errs...); err != nil {
		return doc, fmt.Errorf("config %s:\n%w", file, err)
	}
	return doc, nil
}

// flatten adds node under name: mappings become prefixes, sequences of
// scalars comma-joined values.
func flatten(name string, n *yaml.Node, into settings) []error {
	where := fmt.Sprintf("line %d", n.Line)
	switch n.Kind {
	case yaml.MappingNode:
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, flatten(name+"."+n.Content[i].Value, n.Content[i+1], into)...)
		}
		return errs
	case yaml.SequenceNode:
		items := make([]string, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode || strings.Contains(c.Value, ",") {
				return []error{fmt.Errorf("%s (%s): want a list of single values", name, where)}
			}
			items = append(items, c.Value)
		}
		return errs1(into.set(name, strings.Join(items, ","), where))
	case yaml.ScalarNode:
		return errs1(into.set(name, n.Value, where))
	}
	return []error{fmt.Errorf("%s (%s): want a value, a list or a mapping", name, where)}
}

func errs1(err error) []error {
	if err == nil {
		return nil
	}
	return []error{err}
}

func decodeListeners(n *yaml.Node, into *[]listenerSection) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("listeners (line %d): want a list of listeners, each with name, listen and advertise", n.Line)
	}
	var ls []listenerSection
	for _, item := range n.Content {
		var l listenerSection
		if err := item.Decode(&l); err != nil {
			return fmt.Errorf("listeners (line %d): %w", item.Line, err)
		}
		// Decode has no strict mode for a node: check the keys by hand.
		if item.Kind == yaml.MappingNode {
			for i := 0; i < len(item.Content); i += 2 {
				switch k := item.Content[i].Value; k {
				case "name", "listen", "advertise", "protocol", "tls.cert", "tls.key",
					"sasl.mechanisms", "sasl.plain.allow.insecure", "allow.cidrs":
				default:
					return fmt.Errorf("listeners (line %d): unknown key %q (want name, listen, advertise, protocol, "+
						"tls.cert, tls.key, sasl.mechanisms, sasl.plain.allow.insecure, allow.cidrs)", item.Content[i].Line, k)
				}
			}
		}
		ls = append(ls, l)
	}
	*into = ls
	return nil
}

// decodeFilters reads the top-level `filters:` list (filter.Declared).
func decodeFilters(n *yaml.Node, into *[]filter.Declared) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("filters (line %d): want a list of filters, each with name, topics and expression", n.Line)
	}
	ds := []filter.Declared{} // even empty, the list owns the declared filters
	for _, item := range n.Content {
		var d filter.Declared
		if item.Kind != yaml.MappingNode {
			return fmt.Errorf("filters (line %d): want name, topics, expression, and optionally owner, format, start", item.Line)
		}
		for i := 0; i < len(item.Content); i += 2 {
			switch k := item.Content[i].Value; k {
			case "name", "owner", "topics", "expression", "format", "start":
			default:
				return fmt.Errorf("filters (line %d): unknown key %q (want name, owner, topics, expression, format, start)",
					item.Content[i].Line, k)
			}
		}
		if err := item.Decode(&d); err != nil {
			return fmt.Errorf("filters (line %d): %w", item.Line, err)
		}
		ds = append(ds, d)
	}
	*into = ds
	return nil
}

// applyTagged sets the fields of the struct *dst named by their yaml tags
// (nested structs as prefixes) from values, removing what it used. Durations
// are integer milliseconds under a name ending in .ms, or Go durations.
func applyTagged(dst any, values map[string]string) []error {
	var errs []error
	walkTagged(reflect.ValueOf(dst).Elem(), "", func(name string, f reflect.Value) {
		v, ok := values[name]
		if !ok {
			return
		}
		delete(values, name)
		if err := setField(f, name, strings.TrimSpace(v)); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, v, err))
		}
	})
	return errs
}

// taggedNames lists every setting name of a tagged struct.
func taggedNames(v any) []string {
	var names []string
	walkTagged(reflect.ValueOf(v), "", func(name string, _ reflect.Value) { names = append(names, name) })
	sort.Strings(names)
	return names
}

var durationType = reflect.TypeOf(time.Duration(0))
var timeType = reflect.TypeOf(time.Time{})

func walkTagged(v reflect.Value, prefix string, visit func(string, reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if !sf.IsExported() || tag == "-" {
			continue
		}
		f := v.Field(i)
		if sf.Anonymous && tag == "" && f.Kind() == reflect.Struct {
			walkTagged(f, prefix, visit)
			continue
		}
		if tag == "" {
			continue
		}
		if f.Kind() == reflect.Struct && f.Type() != timeType {
			walkTagged(f, prefix+tag+".", visit)
			continue
		}
		visit(prefix+tag, f)
	}
}

func setField(f reflect.Value, name, v string) error {
	switch {
	case f.Type() == durationType:
		if strings.HasSuffix(name, ".ms") {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil && !errors.Is(err, strconv.ErrRange) {
				return errors.New("not an integer of milliseconds")
			}
			// A larger count would wrap around in a time.Duration.
			if most := int64(math.MaxInt64 / time.Millisecond); err != nil || n > most || n < -most {
				return fmt.Errorf("out of range: at most %d ms (292 years)", most)
			}
			f.SetInt(int64(time.Duration(n) * time.Millisecond))
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("not a duration (such as 30s or 5m)")
		}
		f.SetInt(int64(d))
		return nil
	case f.Type() == timeType:
		if v == "" {
			f.Set(reflect.Zero(timeType))
			return nil
		}
		tm, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return errors.New("not an RFC 3339 time")
		}
		f.Set(reflect.ValueOf(tm))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(v)
	case reflect.Bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("not true or false")
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(v, 10, f.Type().Bits())
		if errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("out of range: a %d-bit integer", f.Type().Bits())
		}
		if err != nil {
			return fmt.Errorf("not an integer of %d bits", f.Type().Bits())
		}
		f.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(v, 10, f.Type().Bits())
		if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(v, "-") {
			return fmt.Errorf("out of range: 0 to %d", uint64(1)<<f.Type().Bits()-1)
		}
		if err != nil {
			return errors.New("not a non-negative integer")
		}
		f.SetUint(n)
	case reflect.Float32, reflect.Float64:
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return errors.New("not a number")
		}
		f.SetFloat(x)
	case reflect.Slice:
		var parts []string
		if v != "" && v != "[]" {
			parts = strings.Split(v, ",")
		}
		if len(parts) == 0 {
			f.Set(reflect.Zero(f.Type())) // an empty list is no list
			return nil
		}
		s := reflect.MakeSlice(f.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setField(s.Index(i), name, strings.TrimSpace(p)); err != nil {
				return fmt.Errorf("item %d: %w", i+1, err)
			}
		}
		f.Set(s)
	default:
		return fmt.Errorf("cannot be set (a %s)", f.Type())
	}
	return nil
}
