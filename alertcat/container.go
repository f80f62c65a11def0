package alertcat

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// magic opens every Avro object container file.
var magic = []byte{'O', 'b', 'j', 1}

// Header is the header of an Avro object container file, kept exactly as it
// was written: the metadata keys in their written order (writers disagree on
// whether avro.schema or avro.codec comes first) and the 16-byte sync marker.
type Header struct {
	Meta []MetaEntry
	Sync [16]byte
}

// MetaEntry is one key of the container file's metadata map.
type MetaEntry struct {
	Key   string
	Value []byte
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

// Schema returns the writer schema text.
func (h *Header) Schema() string {
	v, _ := h.Get("avro.schema")
	return string(v)
}

// Codec returns the block codec, "null" when absent.
func (h *Header) Codec() string {
	v, ok := h.Get("avro.codec")
	if !ok || len(v) == 0 {
		return "null"
	}
	return string(v)
}

// Equal reports whether two headers encode to the same bytes.
func (h *Header) Equal(o *Header) bool {
	if h.Sync != o.Sync || len(h.Meta) != len(o.Meta) {
		return false
	}
	for i := range h.Meta {
		if h.Meta[i].Key != o.Meta[i].Key || !bytes.Equal(h.Meta[i].Value, o.Meta[i].Value) {
			return false
		}
	}
	return true
}

// NewHeader returns a header for schema with the null codec and a fresh
// random sync marker, in the key order the ZTF 4.x producers use.
func NewHeader(schema string) *Header {
	h := &Header{Meta: []MetaEntry{{"avro.schema", []byte(schema)}, {"avro.codec", []byte("null")}}}
	_, _ = rand.Read(h.Sync[:])
	return h
}

// AppendHeader appends the encoded header: magic, the metadata map as one
// block, and the sync marker. This is what Java, fastavro and the ZTF
// producers write, so re-encoding a parsed header gives the same bytes.
func AppendHeader(dst []byte, h *Header) []byte {
	dst = append(dst, magic...)
	if len(h.Meta) > 0 {
		dst = appendLong(dst, int64(len(h.Meta)))
		for _, e := range h.Meta {
			dst = appendLong(dst, int64(len(e.Key)))
			dst = append(dst, e.Key...)
			dst = appendLong(dst, int64(len(e.Value)))
			dst = append(dst, e.Value...)
		}
	}
	dst = appendLong(dst, 0)
	return append(dst, h.Sync[:]...)
}

// AppendBlock appends one data block holding count records whose
// (uncompressed) encodings are data, compressed with the header's codec.
func AppendBlock(dst []byte, h *Header, count int, data []byte) ([]byte, error) {
	switch c := h.Codec(); c {
	case "null":
	case "deflate":
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
		_, _ = w.Write(data)
		_ = w.Close()
		data = buf.Bytes()
	default:
		return nil, fmt.Errorf("avro codec %q not supported", c)
	}
	dst = appendLong(dst, int64(count))
	dst = appendLong(dst, int64(len(data)))
	dst = append(dst, data...)
	return append(dst, h.Sync[:]...), nil
}

// IsContainer reports whether b starts like an Avro object container file.
func IsContainer(b []byte) bool { return bytes.HasPrefix(b, magic) }

// Block is one data block of a container file, decompressed.
type Block struct {
	Count int64
	Data  []byte
}

// ErrNotAvro is returned for bytes that are neither an Avro container file
// nor Confluent-framed Avro.
var ErrNotAvro = errors.New("alertcat: not Avro")

// ContainerReader reads a container file block by block.
type ContainerReader struct {
	r      *byteReader
	Header *Header
}

// NewContainerReader reads the header from r.
func NewContainerReader(r io.Reader) (*ContainerReader, error) {
	br := &byteReader{r: r}
	m := make([]byte, 4)
	if _, err := io.ReadFull(br, m); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: too short for a container file", ErrNotAvro)
		}
		return nil, err
	}
	if !bytes.Equal(m, magic) {
		return nil, fmt.Errorf("%w: starts with % x, not Obj\\x01", ErrNotAvro, m)
	}
	h := &Header{}
	for {
		n, err := readLong(br)
		if err != nil {
			return nil, fmt.Errorf("container header: %w", err)
		}
		if n == 0 {
			break
		}
		if n < 0 {
			n = -n
			if _, err := readLong(br); err != nil {
				return nil, fmt.Errorf("container header: %w", err)
			}
		}
		for i := int64(0); i < n; i++ {
			k, err := readBytes(br)
			if err != nil {
				return nil, fmt.Errorf("container header: %w", err)
			}
			v, err := readBytes(br)
			if err != nil {
				return nil, fmt.Errorf("container header: %w", err)
			}
			h.Meta = append(h.Meta, MetaEntry{string(k), v})
		}
	}
	if _, err := io.ReadFull(br, h.Sync[:]); err != nil {
		return nil, fmt.Errorf("container header sync marker: %w", err)
	}
	if _, ok := h.Get("avro.schema"); !ok {
		return nil, errors.New("container header: no avro.schema")
	}
	br.n = 0
	return &ContainerReader{r: br, Header: h}, nil
}

// Next returns the next block, or io.EOF after the last one.
func (c *ContainerReader) Next() (Block, error) {
	count, err := readLong(c.r)
	if err != nil {
		if errors.Is(err, io.EOF) && c.r.n == 0 {
			return Block{}, io.EOF
		}
		return Block{}, fmt.Errorf("block count: %w", err)
	}
	c.r.n = 0
	data, err := readBytes(c.r)
	if err != nil {
		return Block{}, fmt.Errorf("block data: %w", err)
	}
	var sync [16]byte
	if _, err := io.ReadFull(c.r, sync[:]); err != nil {
		return Block{}, fmt.Errorf("block sync marker: %w", err)
	}
	if sync != c.Header.Sync {
		return Block{}, errors.New("block sync marker does not match the header")
	}
	c.r.n = 0
	switch codec := c.Header.Codec(); codec {
	case "null":
	case "deflate":
		d, err := io.ReadAll(flate.NewReader(bytes.NewReader(data)))
		if err != nil {
			return Block{}, fmt.Errorf("deflate block: %w", err)
		}
		data = d
	default:
		return Block{}, fmt.Errorf("avro codec %q not supported", codec)
	}
	return Block{Count: count, Data: data}, nil
}

// byteReader counts bytes read since the last block so that a clean EOF
// between blocks can be told from a truncated block.
type byteReader struct {
	r   io.Reader
	n   int
	one [1]byte
}

func (b *byteReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += n
	return n, err
}

func (b *byteReader) ReadByte() (byte, error) {
	_, err := io.ReadFull(b, b.one[:])
	return b.one[0], err
}

func readLong(r io.ByteReader) (int64, error) {
	u, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, err
	}
	return int64(u>>1) ^ -int64(u&1), nil
}

func readBytes(r *byteReader) ([]byte, error) {
	n, err := readLong(r)
	if err != nil {
		return nil, err
	}
	if n < 0 || n > 256<<20 {
		return nil, fmt.Errorf("bad length %d", n)
	}
	// Grow with the data actually there, not with a length read from
	// outside bytes.
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, n); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf.Bytes(), nil
}

func appendLong(dst []byte, v int64) []byte {
	return binary.AppendUvarint(dst, uint64((v<<1)^(v>>63)))
}
