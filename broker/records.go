package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ztfbroker/ztfbroker/log"
)

// Record batch v2 layout (big endian), the only format accepted:
//
//	 0 baseOffset int64          -- patched by the log
//	 8 batchLength int32         -- bytes after this field
//	12 partitionLeaderEpoch int32 -- set to 0 here
//	16 magic int8 (2)
//	17 crc uint32 (CRC-32C of bytes 21..end)
//	21 attributes int16 (bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control)
//	23 lastOffsetDelta int32
//	27 baseTimestamp int64
//	35 maxTimestamp int64
//	43 producerId int64
//	51 producerEpoch int16
//	53 baseSequence int32
//	57 recordCount int32
//	61 records (compressed as a whole per the codec)
const (
	batchHeaderLen = 61
	offLength      = 8
	offEpoch       = 12
	offMagic       = 16
	offCRC         = 17
	offAttributes  = 21
	offLastDelta   = 23
	offBaseTime    = 27
	offMaxTime     = 35
	offProducerID  = 43
	offProdEpoch   = 51
	offBaseSeq     = 53
	offRecordCount = 57

	attrCodec         = 0x07
	attrLogAppendTime = 0x08
	attrTransactional = 0x10
	attrControl       = 0x20

	// maxDecompressed bounds one batch's records once decompressed, so that
	// a hostile batch cannot make the broker allocate without limit.
	maxDecompressed = 128 << 20
)

// batch is a view of one record batch inside a produce request or a read.
type batch []byte

func (b batch) attributes() int16 { return int16(binary.BigEndian.Uint16(b[offAttributes:])) }
func (b batch) baseOffset() int64 { return int64(binary.BigEndian.Uint64(b)) }
func (b batch) lastOffset() int64 { return b.baseOffset() + int64(b.lastOffsetDelta()) }
func (b batch) lastOffsetDelta() int32 {
	return int32(binary.BigEndian.Uint32(b[offLastDelta:]))
}
func (b batch) baseTimestamp() int64 { return int64(binary.BigEndian.Uint64(b[offBaseTime:])) }
func (b batch) maxTimestamp() int64  { return int64(binary.BigEndian.Uint64(b[offMaxTime:])) }

// ProducerID, ProducerEpoch and BaseSequence are what the idempotent
// producer check (issue 4) reads.
func (b batch) producerID() int64    { return int64(binary.BigEndian.Uint64(b[offProducerID:])) }
func (b batch) producerEpoch() int16 { return int16(binary.BigEndian.Uint16(b[offProdEpoch:])) }
func (b batch) baseSequence() int32  { return int32(binary.BigEndian.Uint32(b[offBaseSeq:])) }
func (b batch) recordCount() int32   { return int32(binary.BigEndian.Uint32(b[offRecordCount:])) }

// checkedBatch is a produced batch with the store's check of it (framing,
// magic, CRC), so that the CRC is computed once, here, and not again when
// the batch is written.
type checkedBatch struct {
	batch
	checked log.Checked
}

// splitBatches cuts a produce request's records into v2 batches by their
// batchLength, checking each for what a Kafka broker refuses: old message
// formats, bad framing or CRC, size over maxBytes, transactional or control
// batches. It sets each partitionLeaderEpoch to 0 in place (outside the CRC).
func splitBatches(records []byte, maxBytes int32) ([]checkedBatch, error) {
	if len(records) == 0 {
		return nil, fmt.Errorf("no record batch: %w", kerr.CorruptMessage)
	}
	var out []checkedBatch
	for len(records) > 0 {
		if len(records) < offMagic+1 {
			return nil, fmt.Errorf("truncated batch header: %w", kerr.CorruptMessage)
		}
		if magic := records[offMagic]; magic != 2 {
			return nil, fmt.Errorf("message format magic %d: only v2 record batches: %w", magic, kerr.UnsupportedForMessageFormat)
		}
		length := int64(int32(binary.BigEndian.Uint32(records[offLength:])))
		size := length + offEpoch
		if size < batchHeaderLen || size > int64(len(records)) {
			return nil, fmt.Errorf("batchLength %d does not fit the %d bytes sent: %w", length, len(records), kerr.CorruptMessage)
		}
		if size > int64(maxBytes) {
			return nil, fmt.Errorf("batch of %d bytes over max.message.bytes %d: %w", size, maxBytes, kerr.MessageTooLarge)
		}
		b := batch(records[:size:size])
		records = records[size:]
		checked, err := log.CheckBatch(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", err, kerr.CorruptMessage)
		}
		attrs := b.attributes()
		if attrs&attrTransactional != 0 {
			return nil, fmt.Errorf("transactional batches are not supported: %w", kerr.TransactionalIDAuthorizationFailed)
		}
		if attrs&attrControl != 0 {
			return nil, fmt.Errorf("control batch from a client: %w", kerr.InvalidRecord)
		}
		if b.lastOffsetDelta() < 0 || b.recordCount() < 0 {
			return nil, fmt.Errorf("negative lastOffsetDelta or record count: %w", kerr.CorruptMessage)
		}
		binary.BigEndian.PutUint32(b[offEpoch:], 0)
		out = append(out, checkedBatch{batch: b, checked: checked})
	}
	return out, nil
}

// nextBatch cuts the first whole batch off data read from the log.
func nextBatch(data []byte) (batch, []byte, bool) {
	if len(data) < batchHeaderLen {
		return nil, data, false
	}
	size := int64(int32(binary.BigEndian.Uint32(data[offLength:]))) + offEpoch
	if size < batchHeaderLen || size > int64(len(data)) {
		return nil, data, false
	}
	return batch(data[:size]), data[size:], true
}

// record is the part of a record the broker needs: its offset and timestamp.
type record struct {
	offset    int64
	timestamp int64
}

var errBadRecords = errors.New("broker: malformed records in batch")

// records decodes the offsets and timestamps of every record of b,
// decompressing them when needed.
func (b batch) records() ([]record, error) {
	raw, err := decompress(b.attributes()&attrCodec, b[batchHeaderLen:])
	if err != nil {
		return nil, err
	}
	n := b.recordCount()
	if n < 0 || int64(n) > int64(len(raw)) {
		return nil, errBadRecords
	}
	base, baseTS, maxTS := b.baseOffset(), b.baseTimestamp(), b.maxTimestamp()
	logAppend := b.attributes()&attrLogAppendTime != 0
	out := make([]record, 0, n)
	for i := int32(0); i < n; i++ {
		length, k := binary.Varint(raw)
		if k <= 0 || length < 0 || int64(len(raw)-k) < length {
			return nil, errBadRecords
		}
		body := raw[k : int64(k)+length]
		raw = raw[int64(k)+length:]
		if len(body) < 1 {
			return nil, errBadRecords
		}
		body = body[1:] // attributes
		tsDelta, k := binary.Varint(body)
		if k <= 0 {
			return nil, errBadRecords
		}
		offDelta, k2 := binary.Varint(body[k:])
		if k2 <= 0 {
			return nil, errBadRecords
		}
		r := record{offset: base + offDelta, timestamp: baseTS + tsDelta}
		if logAppend {
			r.timestamp = maxTS
		}
		out = append(out, r)
	}
	return out, nil
}

// xerialMagic starts snappy framed the way the Java producer frames it; raw
// snappy (librdkafka) has no header.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

func decompress(codec int16, src []byte) ([]byte, error) {
	switch codec {
	case 0:
		return src, nil
	case 1:
		r, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer r.Close()
		return readBounded(r, "gzip")
	case 2:
		return unsnappy(src)
	case 3:
		return readBounded(lz4.NewReader(bytes.NewReader(src)), "lz4")
	case 4:
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxDecompressed))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer d.Close()
		out, err := d.DecodeAll(src, nil)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("broker: unknown compression codec %d", codec)
}

func readBounded(r io.Reader, codec string) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, maxDecompressed+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", codec, err)
	}
	if len(out) > maxDecompressed {
		return nil, fmt.Errorf("%s: batch decompresses to over %d bytes", codec, maxDecompressed)
	}
	return out, nil
}

func unsnappy(src []byte) ([]byte, error) {
	if !bytes.HasPrefix(src, xerialMagic) {
		return unsnappyBlock(nil, src)
	}
	// xerial: magic, version and compatible version (int32 each), then
	// blocks of a big-endian int32 length and raw snappy.
	if len(src) < len(xerialMagic)+8 {
		return nil, errors.New("snappy: truncated xerial header")
	}
	src = src[len(xerialMagic)+8:]
	var out []byte
	for len(src) > 0 {
		if len(src) < 4 {
			return nil, errors.New("snappy: truncated xerial block length")
		}
		n := int64(binary.BigEndian.Uint32(src))
		src = src[4:]
		if n > int64(len(src)) {
			return nil, errors.New("snappy: truncated xerial block")
		}
		var err error
		if out, err = unsnappyBlock(out, src[:n]); err != nil {
			return nil, err
		}
		src = src[n:]
	}
	return out, nil
}

// unsnappyBlock appends one raw snappy block (s2 decodes snappy) to dst.
func unsnappyBlock(dst, src []byte) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if len(dst)+n > maxDecompressed {
		return nil, fmt.Errorf("snappy: batch decompresses to over %d bytes", maxDecompressed)
	}
	block, err := s2.Decode(nil, src)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return append(dst, block...), nil
}
