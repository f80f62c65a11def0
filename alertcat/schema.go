package alertcat

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/hamba/avro/v2"
)

// Schemas parses writer schemas leniently and caches them by their text, so
// a stream of alerts that all carry the same 20 kB schema parses it once.
//
// Lenient means: every field default is removed before parsing. Most ZTF
// schemas before 4.02 declare union defaults that do not match the first
// branch ({"type": ["float","null"], "default": null}), which strict parsers
// (hamba/avro included) refuse. Defaults only matter for schema resolution;
// alertcat always reads and writes with the writer schema itself, so the
// binary encoding is unaffected. The original text is kept for the header.
type Schemas struct {
	mu     sync.Mutex
	byText map[string]avro.Schema
}

// NewSchemas returns an empty cache.
func NewSchemas() *Schemas { return &Schemas{byText: map[string]avro.Schema{}} }

// Parse returns the parsed form of a writer schema text.
func (s *Schemas) Parse(text string) (avro.Schema, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sc, ok := s.byText[text]; ok {
		return sc, nil
	}
	sc, err := parseLenient(text)
	if err != nil {
		return nil, err
	}
	if len(s.byText) > 1000 {
		clear(s.byText)
	}
	s.byText[text] = sc
	return sc, nil
}

func parseLenient(text string) (avro.Schema, error) {
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		return nil, fmt.Errorf("writer schema is not JSON: %w", err)
	}
	stripDefaults(v)
	clean, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	// A fresh cache per schema: the same name (ztf.alert.prv_candidate)
	// means different records in different schema versions.
	sc, err := avro.ParseBytesWithCache(clean, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("parse writer schema: %w", err)
	}
	return sc, nil
}

func stripDefaults(v any) {
	switch t := v.(type) {
	case map[string]any:
		if fields, ok := t["fields"].([]any); ok {
			for _, f := range fields {
				if fm, ok := f.(map[string]any); ok {
					delete(fm, "default")
				}
			}
		}
		for _, c := range t {
			stripDefaults(c)
		}
	case []any:
		for _, c := range t {
			stripDefaults(c)
		}
	}
}
