package avrofile

import (
	"container/list"
	"sync"

	"github.com/hamba/avro/v2"
)

// DefaultSchemasSize is how many writer schemas NewSchemas keeps when given
// no size: ZTF has written a few dozen schema texts in all, and a night or
// a replayed archive uses one or two.
const DefaultSchemasSize = 64

// Schemas caches writer schemas by their exact text, so a stream of alerts
// or a replay of thousands of files that all carry the same 20 kB schema
// parses and compiles it once. It keeps at most its size of schemas,
// dropping the least recently used. Errors are kept too: a schema that does
// not parse fails the same way every time. Safe for concurrent use; a
// schema is parsed outside the lock, once.
//
// The key is the text, not its canonical form: finding the canonical form
// takes the parse the cache is there to save, and two texts with the same
// canonical form may still differ in defaults and docs.
type Schemas struct {
	mu     sync.Mutex
	size   int
	byText map[string]*list.Element
	lru    list.List // of *writerSchema, most recently used at the front
}

type writerSchema struct {
	text string

	parse  sync.Once
	schema avro.Schema
	err    error

	compile sync.Once
	plan    *Schema
	planErr error
}

// NewSchemas returns an empty cache of at most size schemas, or
// DefaultSchemasSize when size < 1.
func NewSchemas(size int) *Schemas {
	if size < 1 {
		size = DefaultSchemasSize
	}
	return &Schemas{size: size, byText: map[string]*list.Element{}}
}

// Parse returns ParseSchema of text, parsed at most once while cached.
func (s *Schemas) Parse(text string) (avro.Schema, error) {
	w := s.get(text)
	w.parse.Do(func() { w.schema, w.err = ParseSchema([]byte(w.text)) })
	return w.schema, w.err
}

// Compile returns Compile of text, compiled at most once while cached.
func (s *Schemas) Compile(text string) (*Schema, error) {
	w := s.get(text)
	w.compile.Do(func() { w.plan, w.planErr = Compile([]byte(w.text)) })
	return w.plan, w.planErr
}

// Len is the number of schemas held.
func (s *Schemas) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

func (s *Schemas) get(text string) *writerSchema {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.byText[text]; ok {
		s.lru.MoveToFront(el)
		return el.Value.(*writerSchema)
	}
	w := &writerSchema{text: text}
	s.byText[text] = s.lru.PushFront(w)
	if s.lru.Len() > s.size {
		last := s.lru.Back()
		s.lru.Remove(last)
		delete(s.byText, last.Value.(*writerSchema).text)
	}
	return w
}
