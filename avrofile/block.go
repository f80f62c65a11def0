package avrofile

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
)

var (
	// ErrSyncMarker means a block does not end with the header's sync marker.
	ErrSyncMarker = errors.New("avrofile: block sync marker does not match the header")
	// ErrCodec means a codec other than null or deflate.
	ErrCodec = errors.New("avrofile: codec not supported")
)

// Block is one data block: count records, encoded with the header's codec.
type Block struct {
	Count int64
	Data  []byte // as stored: compressed unless the codec is null
}

// ReadBlock reads the block at the start of b and returns it, its Data
// aliasing b, with its length (through its sync marker). A file's blocks
// are read by calling it from the header's length until b runs out.
func ReadBlock(b []byte, sync [SyncSize]byte) (Block, int, error) {
	d := &decoder{b: b}
	blk, err := readBlock(d, sync)
	if err != nil {
		return Block{}, 0, err
	}
	return blk, d.off, nil
}

func readBlock(src source, sync [SyncSize]byte) (Block, error) {
	count, err := src.long()
	if err == io.EOF { // a stream ended cleanly between blocks
		return Block{}, err
	}
	if err != nil {
		return Block{}, fmt.Errorf("block count: %w", err)
	}
	if count < 0 {
		return Block{}, fmt.Errorf("block count %d: %w", count, ErrLength)
	}
	data, err := src.bytes()
	if err != nil {
		return Block{}, fmt.Errorf("block data: %w", err)
	}
	s, err := src.fixed(SyncSize)
	if err != nil {
		return Block{}, fmt.Errorf("block sync marker: %w", err)
	}
	if [SyncSize]byte(s) != sync {
		return Block{}, ErrSyncMarker
	}
	return Block{Count: count, Data: data}, nil
}

// AppendBlock appends a block of count records whose bytes, already
// encoded with the header's codec (see Compress), are data.
func AppendBlock(dst []byte, count int64, data []byte, sync [SyncSize]byte) []byte {
	dst = AppendLong(dst, count)
	dst = AppendBytes(dst, data)
	return append(dst, sync[:]...)
}

// Reader reads a container file from a stream, block by block. It reads
// no further than the block it returns, so the stream may go on with
// something else after the file.
type Reader struct {
	Header *Header
	s      *stream
}

// NewReader reads the header from r.
func NewReader(r io.Reader) (*Reader, error) {
	s := newStream(r)
	m, err := s.fixed(len(Magic))
	if errors.Is(err, ErrTruncated) || err == nil && string(m) != Magic {
		return nil, ErrNotContainer
	}
	if err != nil {
		return nil, err
	}
	h, err := parseHeader(s)
	if err != nil {
		return nil, err
	}
	return &Reader{Header: h, s: s}, nil
}

// Next returns the next block, its Data a fresh copy, or io.EOF when the
// stream ends cleanly after the last one.
func (r *Reader) Next() (Block, error) {
	r.s.n = 0
	return readBlock(r.s, r.Header.Sync)
}

// Decompress returns the records of a block stored with codec. For the
// null codec that is data itself.
func Decompress(codec string, data []byte) ([]byte, error) {
	switch codec {
	case CodecNull:
		return data, nil
	case CodecDeflate:
		fr := flate.NewReader(bytes.NewReader(data))
		defer fr.Close()
		var buf bytes.Buffer
		n, err := io.Copy(&buf, io.LimitReader(fr, MaxBlockSize+1))
		if err != nil {
			return nil, fmt.Errorf("inflate block: %w", truncated(err))
		}
		if n > MaxBlockSize {
			return nil, fmt.Errorf("inflate block: %w: over %d bytes", ErrLength, MaxBlockSize)
		}
		return buf.Bytes(), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrCodec, codec)
}

// Compress encodes the records of a block with codec. For the null codec
// that is records itself.
func Compress(codec string, records []byte) ([]byte, error) {
	switch codec {
	case CodecNull:
		return records, nil
	case CodecDeflate:
		var buf bytes.Buffer
		fw, _ := flate.NewWriter(&buf, flate.DefaultCompression) // only a bad level fails
		_, _ = fw.Write(records)                                 // a bytes.Buffer does not fail
		if err := fw.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrCodec, codec)
}
