package avrofile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

var (
	// ErrTruncated means the input ends inside a header, a block or a value.
	ErrTruncated = errors.New("avrofile: data ends early")
	// ErrLongOverflow means a long runs past the 10 bytes of a 64-bit varint.
	ErrLongOverflow = errors.New("avrofile: long longer than 64 bits")
	// ErrLength means a length is negative or over MaxBlockSize.
	ErrLength = errors.New("avrofile: length out of range")
)

// MaxBlockSize bounds the lengths read from a stream and the size of an
// inflated block, so outside bytes cannot make a reader allocate without
// limit. ZTF blocks are one alert of at most a few hundred kB.
const MaxBlockSize = 64 << 20

// ReadLong reads the zig-zag varint at the start of b and returns it with
// the number of bytes it takes.
func ReadLong(b []byte) (int64, int, error) {
	v, n := binary.Varint(b)
	switch {
	case n == 0:
		return 0, 0, ErrTruncated
	case n < 0:
		return 0, 0, ErrLongOverflow
	}
	return v, n, nil
}

// ReadBytes reads the length-prefixed bytes (or string) at the start of b
// and returns them, aliasing b, with the number of bytes they take.
func ReadBytes(b []byte) ([]byte, int, error) {
	n, k, err := ReadLong(b)
	if err != nil {
		return nil, 0, err
	}
	if n < 0 {
		return nil, 0, ErrLength
	}
	if n > int64(len(b)-k) {
		return nil, 0, ErrTruncated
	}
	end := k + int(n)
	return b[k:end:end], end, nil
}

// AppendLong appends v as a zig-zag varint.
func AppendLong(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }

// AppendBytes appends v with its length in front (Avro bytes and string).
func AppendBytes(dst, v []byte) []byte { return append(AppendLong(dst, int64(len(v))), v...) }

// source is what the header and block parsers read from: a byte slice,
// whose values they alias, or a stream, whose values they copy out. One
// parser over both keeps the two readers from drifting apart.
type source interface {
	long() (int64, error)
	bytes() ([]byte, error)
	fixed(n int) ([]byte, error)
}

// decoder reads a byte slice: the parsers' slice source, and what
// Schema's skip functions step through.
type decoder struct {
	b     []byte
	off   int
	depth int // records entered, bounded by maxDepth
}

func (d *decoder) long() (int64, error) {
	v, n, err := ReadLong(d.b[d.off:])
	d.off += n
	return v, err
}

func (d *decoder) bytes() ([]byte, error) {
	v, n, err := ReadBytes(d.b[d.off:])
	d.off += n
	return v, err
}

func (d *decoder) fixed(n int) ([]byte, error) {
	if err := d.skip(int64(n)); err != nil {
		return nil, err
	}
	return d.b[d.off-n : d.off : d.off], nil
}

func (d *decoder) skip(n int64) error {
	if n < 0 {
		return ErrLength
	}
	if n > int64(len(d.b)-d.off) {
		return ErrTruncated
	}
	d.off += int(n)
	return nil
}

// stream reads an io.Reader without reading ahead, so a caller can go on
// reading what follows a container file (alertcat reads files concatenated
// on stdin). It counts the bytes read since reset to tell a clean end of
// input between blocks from a file cut short inside one.
type stream struct {
	r   io.Reader
	br  io.ByteReader // r, when it is one
	n   int64
	one [1]byte
}

func newStream(r io.Reader) *stream {
	s := &stream{r: r}
	s.br, _ = r.(io.ByteReader)
	return s
}

func (s *stream) ReadByte() (byte, error) {
	if s.br != nil {
		c, err := s.br.ReadByte()
		if err == nil {
			s.n++
		}
		return c, err
	}
	_, err := io.ReadFull(s, s.one[:])
	return s.one[0], err
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	return n, err
}

func (s *stream) long() (int64, error) {
	var u uint64
	for i := range binary.MaxVarintLen64 {
		c, err := s.ReadByte()
		if err != nil {
			if i == 0 && s.n == 0 && errors.Is(err, io.EOF) {
				return 0, io.EOF // nothing read: the caller decides if that is clean
			}
			return 0, truncated(err)
		}
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break
		}
		u |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), nil
		}
	}
	return 0, ErrLongOverflow
}

func (s *stream) bytes() ([]byte, error) {
	n, err := s.long()
	if err != nil {
		return nil, truncated(err)
	}
	if n < 0 || n > MaxBlockSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrLength, n)
	}
	// Grow with the data actually there, not with a length read from
	// outside bytes.
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, s, n); err != nil {
		return nil, truncated(err)
	}
	return buf.Bytes(), nil
}

func (s *stream) fixed(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s, b); err != nil {
		return nil, truncated(err)
	}
	return b, nil
}

// truncated turns an end of input inside a value into ErrTruncated.
func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}
