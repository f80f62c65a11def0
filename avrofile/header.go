package avrofile

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// Magic opens every object container file. Part of the format.
const Magic = "Obj\x01"

// SyncSize is the length of the sync marker. Part of the format.
const SyncSize = 16

// Metadata keys and codecs the specification defines.
const (
	KeySchema = "avro.schema"
	KeyCodec  = "avro.codec"

	CodecNull    = "null"
	CodecDeflate = "deflate"
)

var (
	// ErrNotContainer means the input does not start with Magic.
	ErrNotContainer = errors.New("avrofile: not an Avro object container file")
	// ErrNoSchema means a header has no avro.schema entry.
	ErrNoSchema = errors.New("avrofile: header has no avro.schema")
)

// Header is the header of a container file, kept as it was written: the
// metadata entries in their written order (ZTF's producers disagree on
// whether avro.schema or avro.codec comes first) and the sync marker, so
// AppendHeader gives back the same bytes.
type Header struct {
	Meta []MetaEntry
	Sync [SyncSize]byte
}

// MetaEntry is one entry of the metadata map.
type MetaEntry struct {
	Key   string
	Value []byte
}

// NewHeader returns a header for schema with the null codec and a fresh
// random sync marker, in the key order ZTF's 4.x producers use.
func NewHeader(schema []byte) *Header {
	h := &Header{Meta: []MetaEntry{{KeySchema, schema}, {KeyCodec, []byte(CodecNull)}}}
	_, _ = rand.Read(h.Sync[:]) // crypto/rand.Read never fails
	return h
}

// Get returns the value of a metadata key.
func (h *Header) Get(key string) ([]byte, bool) {
	for _, e := range h.Meta {
		if e.Key == key {
			return e.Value, true
		}
	}
	return nil, false
}

// Schema returns the writer schema text (it aliases the header's entry).
func (h *Header) Schema() []byte {
	v, _ := h.Get(KeySchema)
	return v
}

// Codec returns the block codec: "null" when absent or empty, as the
// specification says.
func (h *Header) Codec() string {
	v, ok := h.Get(KeyCodec)
	if !ok || len(v) == 0 {
		return CodecNull
	}
	return string(v)
}

// AppendHeader appends the encoded header: Magic, the metadata map as one
// block, and the sync marker. This is what Java, fastavro and the ZTF
// producers write, so a parsed header encodes back to its bytes.
func AppendHeader(dst []byte, h *Header) []byte {
	dst = append(dst, Magic...)
	if len(h.Meta) > 0 {
		dst = AppendLong(dst, int64(len(h.Meta)))
		for _, e := range h.Meta {
			dst = AppendBytes(dst, []byte(e.Key))
			dst = AppendBytes(dst, e.Value)
		}
	}
	dst = AppendLong(dst, 0)
	return append(dst, h.Sync[:]...)
}

// ParseHeader parses the header at the start of b and returns it with its
// length: the first block starts there. Metadata values alias b.
func ParseHeader(b []byte) (*Header, int, error) {
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return nil, 0, ErrNotContainer
	}
	d := &decoder{b: b, off: len(Magic)}
	h, err := parseHeader(d)
	if err != nil {
		return nil, 0, err
	}
	return h, d.off, nil
}

// parseHeader reads what follows Magic: the metadata map and sync marker.
func parseHeader(src source) (*Header, error) {
	h := &Header{}
	for {
		n, err := src.long()
		if err != nil {
			return nil, fmt.Errorf("header metadata: %w", truncated(err))
		}
		if n == 0 {
			break
		}
		if n < 0 { // -n entries follow, after the block's size in bytes
			n = -n
			if _, err := src.long(); err != nil {
				return nil, fmt.Errorf("header metadata: %w", truncated(err))
			}
		}
		for ; n > 0; n-- {
			k, err := src.bytes()
			if err != nil {
				return nil, fmt.Errorf("header metadata key: %w", err)
			}
			v, err := src.bytes()
			if err != nil {
				return nil, fmt.Errorf("header metadata %q: %w", k, err)
			}
			h.Meta = append(h.Meta, MetaEntry{string(k), v})
		}
	}
	sync, err := src.fixed(SyncSize)
	if err != nil {
		return nil, fmt.Errorf("header sync marker: %w", err)
	}
	copy(h.Sync[:], sync)
	if _, ok := h.Get(KeySchema); !ok {
		return nil, ErrNoSchema
	}
	return h, nil
}
