package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Byte positions in a v2 record batch header (Kafka's DefaultRecordBatch).
// These are part of the on-disk format: segments hold batches verbatim.
const (
	batchBaseOffsetPos      = 0  // int64, patched by the log
	batchLengthPos          = 8  // int32, bytes after this field
	batchLeaderEpochPos     = 12 // int32, patched by the log
	batchMagicPos           = 16 // int8, must be 2
	batchCRCPos             = 17 // uint32, CRC32C of [batchAttributesPos, end)
	batchAttributesPos      = 21 // int16
	batchLastOffsetDeltaPos = 23 // int32
	batchFirstTimestampPos  = 27 // int64
	batchMaxTimestampPos    = 35 // int64
	batchRecordsPos         = 57 // int32 record count
	batchHeaderSize         = 61 // first record starts here

	// batchFrameSize is what precedes batchLength's span: baseOffset + length.
	batchFrameSize = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrRecordCount refuses an incoming batch whose lastOffsetDelta is not
// recordCount-1, or whose recordCount is below 1: the log assigns offsets
// from lastOffsetDelta, so one such batch would move the log end offset by
// up to 2^31 past records that do not exist. It wraps ErrInvalidBatch; the
// broker answers it as Kafka does, INVALID_RECORD.
var ErrRecordCount = fmt.Errorf("%w: recordCount and lastOffsetDelta disagree", ErrInvalidBatch)

// batchHeader is what the log needs from a batch header.
type batchHeader struct {
	BaseOffset      int64
	Size            int64 // whole batch: 12 + batchLength
	LeaderEpoch     int32
	Magic           int8
	CRC             uint32
	LastOffsetDelta int32
	MaxTimestamp    int64
	Records         int32
}

func (h batchHeader) lastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }
func (h batchHeader) nextOffset() int64 { return h.lastOffset() + 1 }

// parseBatchHeader decodes the first batchHeaderSize bytes of a batch and
// checks what can be checked without the body: magic, length bounds and
// the offset delta. It never reads past len(b).
func parseBatchHeader(b []byte) (batchHeader, error) {
	if len(b) < batchHeaderSize {
		return batchHeader{}, errShortBatch
	}
	h := batchHeader{
		BaseOffset:      int64(binary.BigEndian.Uint64(b[batchBaseOffsetPos:])),
		Size:            batchFrameSize + int64(int32(binary.BigEndian.Uint32(b[batchLengthPos:]))),
		LeaderEpoch:     int32(binary.BigEndian.Uint32(b[batchLeaderEpochPos:])),
		Magic:           int8(b[batchMagicPos]),
		CRC:             binary.BigEndian.Uint32(b[batchCRCPos:]),
		LastOffsetDelta: int32(binary.BigEndian.Uint32(b[batchLastOffsetDeltaPos:])),
		MaxTimestamp:    int64(binary.BigEndian.Uint64(b[batchMaxTimestampPos:])),
		Records:         int32(binary.BigEndian.Uint32(b[batchRecordsPos:])),
	}
	if h.Magic != 2 {
		return h, &MagicError{Magic: h.Magic}
	}
	if h.Size < batchHeaderSize || h.Size > maxBatchSize {
		return h, errBatchLength
	}
	if h.LastOffsetDelta < 0 {
		return h, errBadDelta
	}
	return h, nil
}

// checkBatchCRC verifies the CRC32C of a whole batch (len(b) == h.Size).
func checkBatchCRC(b []byte, h batchHeader) error {
	if crc32.Checksum(b[batchAttributesPos:], castagnoli) != h.CRC {
		return errCRC
	}
	return nil
}

// validateIncoming checks a batch handed to Write: one whole v2 batch with
// a good CRC and nothing after it.
func validateIncoming(b []byte) (batchHeader, error) {
	h, err := parseBatchHeader(b)
	if err != nil {
		if _, ok := err.(*MagicError); ok {
			return h, err
		}
		if err == errBadDelta {
			return h, fmt.Errorf("%w: %w", ErrRecordCount, err)
		}
		return h, fmt.Errorf("%w: %w", ErrInvalidBatch, err)
	}
	if h.Size != int64(len(b)) {
		return h, fmt.Errorf("%w: length field says %d bytes, got %d", ErrInvalidBatch, h.Size, len(b))
	}
	if err := checkBatchCRC(b, h); err != nil {
		return h, fmt.Errorf("%w: %w", ErrInvalidBatch, err)
	}
	// Checked here and not in parseBatchHeader, which recovery shares:
	// batches stored before this check must not turn into corruption.
	if h.Records < 1 || int64(h.LastOffsetDelta) != int64(h.Records)-1 {
		return h, fmt.Errorf("%w: recordCount %d, lastOffsetDelta %d", ErrRecordCount, h.Records, h.LastOffsetDelta)
	}
	return h, nil
}

// checkStoredBatch verifies one stored batch: header, CRC, the offset the
// log expects at this place (-1 when unknown) and the leader epoch bound.
func checkStoredBatch(b []byte, expectOffset int64, maxEpoch int32) (batchHeader, error) {
	h, err := parseBatchHeader(b)
	if err != nil {
		return h, err
	}
	return h, checkParsedBatch(b, h, expectOffset, maxEpoch)
}

// checkParsedBatch is checkStoredBatch for a header already parsed from b.
func checkParsedBatch(b []byte, h batchHeader, expectOffset int64, maxEpoch int32) error {
	if h.Size != int64(len(b)) {
		return errBatchLength
	}
	if err := checkBatchCRC(b, h); err != nil {
		return err
	}
	return checkFraming(h, expectOffset, maxEpoch)
}

// checkFraming is checkParsedBatch without the body: the offset the log
// expects here and the leader epoch bound, for a batch whose CRC this
// process has already checked (a verified range, scrub.go).
func checkFraming(h batchHeader, expectOffset int64, maxEpoch int32) error {
	if expectOffset >= 0 && h.BaseOffset != expectOffset {
		return errBadOffset
	}
	if h.LeaderEpoch < 0 || h.LeaderEpoch > maxEpoch {
		return errBadEpoch
	}
	return nil
}

func putInt64(b []byte, v int64) { binary.BigEndian.PutUint64(b, uint64(v)) }
func putInt32(b []byte, v int32) { binary.BigEndian.PutUint32(b, uint32(v)) }
