package packager

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"
)

// Avro Object Container File, as ZTF sends each alert:
//
//	+-------------+------------------------------------------+-------------+
//	| "Obj" 0x01  | meta map: avro.schema = <schema JSON>,   | sync marker |
//	|             |           avro.codec  = "null"           | (16 bytes)  |
//	+-------------+------------------------------------------+-------------+
//	| block: count (zig-zag long) = 1 | size (long) | record | sync marker |
//	+-------------------------------------------------------------------------+
//
// The header of a packaged alert never changes for a given schema and sync
// marker, so it is written once by hamba/avro's ocf encoder and every alert
// is that header plus one block.

var (
	// ErrNotContainer is returned for input that does not start with the
	// container magic.
	ErrNotContainer = errors.New("packager: not an Avro object container file")
	ocfMagic        = []byte{'O', 'b', 'j', 1}
)

// containerHeader returns the header bytes of a container file carrying
// schemaText with codec null and the given sync marker.
func containerHeader(schema avro.Schema, schemaText []byte, sync [16]byte) ([]byte, error) {
	var buf bytes.Buffer
	enc, err := ocf.NewEncoderWithSchema(schema, &buf,
		ocf.WithCodec(ocf.Null),
		ocf.WithSyncBlock(sync),
		ocf.WithSchemaMarshaler(func(avro.Schema) ([]byte, error) { return schemaText, nil }))
	if err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func newSync() [16]byte {
	var s [16]byte
	_, _ = rand.Read(s[:])
	return s
}

// appendBlock appends one data block holding count records to dst.
func appendBlock(dst []byte, count int, records []byte, sync [16]byte) []byte {
	dst = binary.AppendVarint(dst, int64(count))
	dst = binary.AppendVarint(dst, int64(len(records)))
	dst = append(dst, records...)
	return append(dst, sync[:]...)
}

// container is a parsed object container file. Blocks keep the record bytes
// exactly as the file holds them (decompressed when the codec is deflate).
type container struct {
	schemaText []byte
	codec      string
	sync       [16]byte
	blocks     []block
}

type block struct {
	count   int64
	records []byte
}

// readContainer parses the header and blocks of b without interpreting the
// schema, so files whose schemas strict parsers refuse still read.
func readContainer(b []byte) (*container, error) {
	if !bytes.HasPrefix(b, ocfMagic) {
		return nil, ErrNotContainer
	}
	r := &byteReader{b: b, off: 4}
	c := &container{codec: "null"}
	for {
		n, err := r.long()
		if err != nil {
			return nil, fmt.Errorf("packager: container meta: %w", err)
		}
		if n == 0 {
			break
		}
		if n < 0 { // a negative count is followed by the block size
			n = -n
			if _, err := r.long(); err != nil {
				return nil, fmt.Errorf("packager: container meta: %w", err)
			}
		}
		for ; n > 0; n-- {
			k, err := r.bytes()
			if err != nil {
				return nil, fmt.Errorf("packager: container meta key: %w", err)
			}
			v, err := r.bytes()
			if err != nil {
				return nil, fmt.Errorf("packager: container meta value: %w", err)
			}
			switch string(k) {
			case "avro.schema":
				c.schemaText = v
			case "avro.codec":
				c.codec = string(v)
			}
		}
	}
	if c.schemaText == nil {
		return nil, errors.New("packager: container has no avro.schema")
	}
	if c.codec == "" {
		c.codec = "null"
	}
	if c.codec != "null" && c.codec != "deflate" {
		return nil, fmt.Errorf("packager: container codec %q not supported", c.codec)
	}
	s, err := r.n(16)
	if err != nil {
		return nil, fmt.Errorf("packager: container sync: %w", err)
	}
	copy(c.sync[:], s)
	for r.off < len(r.b) {
		count, err := r.long()
		if err != nil {
			return nil, fmt.Errorf("packager: block count: %w", err)
		}
		data, err := r.bytes()
		if err != nil {
			return nil, fmt.Errorf("packager: block data: %w", err)
		}
		s, err := r.n(16)
		if err != nil {
			return nil, fmt.Errorf("packager: block sync: %w", err)
		}
		if !bytes.Equal(s, c.sync[:]) {
			return nil, errors.New("packager: block sync marker does not match header")
		}
		if c.codec == "deflate" {
			data, err = io.ReadAll(flate.NewReader(bytes.NewReader(data)))
			if err != nil {
				return nil, fmt.Errorf("packager: inflate block: %w", err)
			}
		}
		c.blocks = append(c.blocks, block{count: count, records: data})
	}
	return c, nil
}

type byteReader struct {
	b   []byte
	off int
}

func (r *byteReader) long() (int64, error) {
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	r.off += n
	return v, nil
}

func (r *byteReader) n(n int) ([]byte, error) {
	if n < 0 || len(r.b)-r.off < n {
		return nil, io.ErrUnexpectedEOF
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s, nil
}

func (r *byteReader) bytes() ([]byte, error) {
	n, err := r.long()
	if err != nil {
		return nil, err
	}
	return r.n(int(n))
}

// skip advances past one value of schema s, so a block of several records can
// be cut at record boundaries without decoding or re-encoding them.
func (r *byteReader) skip(s avro.Schema) error {
	switch t := s.(type) {
	case *avro.PrimitiveSchema:
		switch t.Type() {
		case avro.Null:
			return nil
		case avro.Boolean:
			_, err := r.n(1)
			return err
		case avro.Int, avro.Long:
			_, err := r.long()
			return err
		case avro.Float:
			_, err := r.n(4)
			return err
		case avro.Double:
			_, err := r.n(8)
			return err
		case avro.String, avro.Bytes:
			_, err := r.bytes()
			return err
		}
	case *avro.NullSchema:
		return nil
	case *avro.RecordSchema:
		for _, f := range t.Fields() {
			if err := r.skip(f.Type()); err != nil {
				return err
			}
		}
		return nil
	case *avro.UnionSchema:
		i, err := r.long()
		if err != nil {
			return err
		}
		if i < 0 || int(i) >= len(t.Types()) {
			return fmt.Errorf("union index %d out of range", i)
		}
		return r.skip(t.Types()[i])
	case *avro.ArraySchema:
		return r.skipBlocks(func() error { return r.skip(t.Items()) })
	case *avro.MapSchema:
		return r.skipBlocks(func() error {
			if _, err := r.bytes(); err != nil {
				return err
			}
			return r.skip(t.Values())
		})
	case *avro.EnumSchema:
		_, err := r.long()
		return err
	case *avro.FixedSchema:
		_, err := r.n(t.Size())
		return err
	case *avro.RefSchema:
		return r.skip(t.Schema())
	}
	return fmt.Errorf("cannot skip schema type %s", s.Type())
}

func (r *byteReader) skipBlocks(item func() error) error {
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
			if _, err := r.long(); err != nil {
				return err
			}
		}
		for ; n > 0; n-- {
			if err := item(); err != nil {
				return err
			}
		}
	}
}
