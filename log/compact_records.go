package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// The cleaner (compact.go) is the one part of the log that looks inside a
// batch: it reads records to learn their keys and writes batches holding
// the records it keeps. Everything else stores batches as sent.

// Batch attribute bits (Kafka's DefaultRecordBatch); part of the format.
const (
	attrCodecMask     = 0x07
	attrControl       = 0x20
	attrDeleteHorizon = 0x40 // firstTimestamp holds the delete horizon (KIP-534)

	batchProducerFieldsLen = 14 // producerId i64, producerEpoch i16, baseSequence i32
	// maxDecompressedRecords bounds what one stored batch's records may
	// decompress to while cleaning, as the broker bounds produced ones.
	maxDecompressedRecords = 128 << 20
)

// errRecord is a record inside a stored batch that does not parse.
var errRecord = errors.New("malformed record")

// record is one record of a batch, as the cleaner needs it: its offset and
// timestamp deltas, its key (nil when null) and whether its value is null
// (a tombstone); rest is its bytes from offsetDelta to the end, which a
// rewrite copies unchanged.
type record struct {
	attrs       byte
	tsDelta     int64
	offsetDelta int32
	key         []byte
	tombstone   bool
	rest        []byte
}

// parseRecords splits the uncompressed records of a batch.
func parseRecords(b []byte, count int32, fn func(r record) error) error {
	for i := int32(0); i < count; i++ {
		n, k := binary.Varint(b)
		if k <= 0 || n < 0 || int64(len(b)-k) < n {
			return fmt.Errorf("%w: length", errRecord)
		}
		body := b[k : k+int(n)]
		b = b[k+int(n):]
		r, err := parseRecord(body)
		if err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func parseRecord(body []byte) (record, error) {
	var r record
	if len(body) < 1 {
		return r, fmt.Errorf("%w: empty", errRecord)
	}
	r.attrs = body[0]
	p := 1
	ts, k := binary.Varint(body[p:])
	if k <= 0 {
		return r, fmt.Errorf("%w: timestamp delta", errRecord)
	}
	r.tsDelta = ts
	p += k
	r.rest = body[p:]
	od, k := binary.Varint(body[p:])
	if k <= 0 || od < 0 || od > 1<<31-1 {
		return r, fmt.Errorf("%w: offset delta", errRecord)
	}
	r.offsetDelta = int32(od)
	p += k
	kl, k := binary.Varint(body[p:])
	if k <= 0 || kl < -1 || int64(len(body)-p-k) < kl {
		return r, fmt.Errorf("%w: key length", errRecord)
	}
	p += k
	if kl >= 0 {
		r.key = body[p : p+int(kl)]
		p += int(kl)
	}
	vl, k := binary.Varint(body[p:])
	if k <= 0 || vl < -1 || int64(len(body)-p-k) < vl {
		return r, fmt.Errorf("%w: value length", errRecord)
	}
	r.tombstone = vl < 0
	return r, nil
}

// appendRecord writes r with its timestamp delta taken against a new base
// timestamp (the same when nothing moved it).
func appendRecord(dst []byte, r record, tsDelta int64) []byte {
	var tmp [binary.MaxVarintLen64]byte
	tsLen := binary.PutVarint(tmp[:], tsDelta)
	dst = binary.AppendVarint(dst, int64(1+tsLen+len(r.rest)))
	dst = append(dst, r.attrs)
	dst = append(dst, tmp[:tsLen]...)
	return append(dst, r.rest...)
}

// zstdCoders are one clean pass's zstd encoder and decoder, made on first
// use: making one costs more than a small batch's records.
type zstdCoders struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

func (z *zstdCoders) close() {
	if z.enc != nil {
		z.enc.Close()
	}
	if z.dec != nil {
		z.dec.Close()
	}
}

// batchRecords returns the uncompressed records section of batch b.
func (z *zstdCoders) batchRecords(b []byte) ([]byte, error) {
	codec := b[batchAttributesPos+1] & attrCodecMask
	src := b[batchHeaderSize:]
	var rd io.Reader
	switch codec {
	case 0:
		return src, nil
	case 1:
		zr, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		rd = zr
	case 2:
		return unsnappy(src)
	case 3:
		rd = lz4.NewReader(bytes.NewReader(src))
	case 4:
		if z.dec == nil {
			d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxDecompressedRecords))
			if err != nil {
				return nil, fmt.Errorf("zstd: %w", err)
			}
			z.dec = d
		}
		out, err := z.dec.DecodeAll(src, nil)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unknown compression codec %d", codec)
	}
	out, err := io.ReadAll(io.LimitReader(rd, maxDecompressedRecords+1))
	if err != nil {
		return nil, fmt.Errorf("decompress codec %d: %w", codec, err)
	}
	if len(out) > maxDecompressedRecords {
		return nil, fmt.Errorf("records decompress past %d bytes", maxDecompressedRecords)
	}
	return out, nil
}

// xerialMagic opens snappy data framed as the Java client (snappy-java)
// writes it: the magic, then version and compatible version (int32 1, 1),
// then chunks, each an int32 length and a raw snappy block.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

func unsnappy(src []byte) ([]byte, error) {
	if !bytes.HasPrefix(src, xerialMagic) {
		return snappyBlock(nil, src)
	}
	if len(src) < 16 {
		return nil, errors.New("snappy: short xerial header")
	}
	var out []byte
	for p := 16; p < len(src); {
		if len(src)-p < 4 {
			return nil, errors.New("snappy: short xerial chunk length")
		}
		n := int(binary.BigEndian.Uint32(src[p:]))
		p += 4
		if n < 0 || n > len(src)-p {
			return nil, errors.New("snappy: xerial chunk past the end")
		}
		var err error
		if out, err = snappyBlock(out, src[p:p+n]); err != nil {
			return nil, err
		}
		p += n
	}
	return out, nil
}

// snappyBlock appends the decoding of one raw snappy block to dst.
func snappyBlock(dst, block []byte) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if len(dst)+n > maxDecompressedRecords {
		return nil, fmt.Errorf("records decompress past %d bytes", maxDecompressedRecords)
	}
	out, err := s2.Decode(make([]byte, n), block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return append(dst, out...), nil
}

// xerialChunk is the uncompressed size of one xerial chunk, snappy-java's.
const xerialChunk = 32 << 10

// compressRecords compresses records with codec, as a producer of that
// codec would (snappy in xerial framing, which every client reads).
func (z *zstdCoders) compressRecords(codec byte, records []byte) ([]byte, error) {
	var buf bytes.Buffer
	switch codec {
	case 0:
		return records, nil
	case 1:
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(records); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case 2:
		buf.Write(xerialMagic)
		buf.Write([]byte{0, 0, 0, 1, 0, 0, 0, 1})
		for p := 0; p < len(records); p += xerialChunk {
			block := s2.EncodeSnappy(nil, records[p:min(p+xerialChunk, len(records))])
			buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(block))))
			buf.Write(block)
		}
	case 3:
		zw := lz4.NewWriter(&buf)
		if _, err := zw.Write(records); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
	case 4:
		if z.enc == nil {
			e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
			if err != nil {
				return nil, err
			}
			z.enc = e
		}
		return z.enc.EncodeAll(records, nil), nil
	default:
		return nil, fmt.Errorf("unknown compression codec %d", codec)
	}
	return buf.Bytes(), nil
}

// buildBatch writes a v2 batch from the header of orig (baseOffset,
// lastOffsetDelta, leader epoch, producer fields kept), with attributes
// attrs, first and max timestamps, count records and the records section
// (already compressed), and computes its CRC.
func buildBatch(orig []byte, attrs int16, firstTs, maxTs int64, count int32, records []byte) []byte {
	b := make([]byte, batchHeaderSize, batchHeaderSize+len(records))
	copy(b, orig[:batchHeaderSize])
	b = append(b, records...)
	putInt32(b[batchLengthPos:], int32(len(b)-batchFrameSize))
	binary.BigEndian.PutUint16(b[batchAttributesPos:], uint16(attrs))
	putInt64(b[batchFirstTimestampPos:], firstTs)
	putInt64(b[batchMaxTimestampPos:], maxTs)
	putInt32(b[batchRecordsPos:], count)
	binary.BigEndian.PutUint32(b[batchCRCPos:], crc32.Checksum(b[batchAttributesPos:], castagnoli))
	return b
}

// emptyBatch is a batch of no records standing for the offsets
// [base, last] whose records the cleaner removed: no producer, no codec,
// no timestamp (-1: a time lookup never lands on it).
// Clients step over it to last+1 (KAFKA-5443), so offsets stay contiguous
// from batch to batch and recovery's checks hold for a compacted log.
func emptyBatch(base, last int64, epoch int32) []byte {
	h := make([]byte, batchHeaderSize)
	putInt64(h[batchBaseOffsetPos:], base)
	putInt32(h[batchLeaderEpochPos:], epoch)
	h[batchMagicPos] = 2
	putInt32(h[batchLastOffsetDeltaPos:], int32(last-base))
	putInt64(h[batchProducerIDPos:], -1)
	binary.BigEndian.PutUint16(h[batchProducerEpochPos:], 0xffff)
	putInt32(h[batchBaseSequencePos:], -1)
	return buildBatch(h, 0, -1, -1, 0, nil)
}
