package broker

import (
	"bufio"
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
	// attrKnown is every bit a client may set; 0x40 (delete horizon) is
	// the log cleaner's and the rest are unused.
	attrKnown = 0x3f
	maxCodec  = 4 // zstd

	// maxDecompressed bounds the bytes one batch's records decompress to.
	// They are read as a stream and never held whole, so this bounds the
	// CPU one batch costs (a 10 MiB gzip batch of zeros would be 10 GiB),
	// not memory. Real batches (librdkafka's and franz-go's batch.size is
	// 1 MB, Java's 16 KiB) are far below it.
	maxDecompressed = 128 << 20
	// maxSnappyBlock bounds one snappy block, which is decoded whole:
	// librdkafka sends a batch's records as one raw block.
	maxSnappyBlock = 32 << 20
	// maxZstdWindow bounds a zstd stream's window, the history its
	// decoder holds: 8 MiB is what levels up to 19 and klauspost's
	// encoder (franz-go) use.
	maxZstdWindow = 8 << 20
	// decompressSlots is how many batches are decompressed at once in the
	// whole process, whatever asks (produce checks, ListOffsets): with the
	// bounds above one slot holds at most ~32 MiB.
	decompressSlots = 2
	// streamBuffer is what a decompressed stream is read through.
	streamBuffer = 32 << 10
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
// batches, and what Kafka's LogValidator refuses (see validate). It sets
// each partitionLeaderEpoch to 0 in place (outside the CRC).
func splitBatches(records []byte, maxBytes int32) ([]checkedBatch, error) {
	return splitBatchesTap(records, maxBytes, nil)
}

// splitBatchesTap is splitBatches keeping, for c when not nil, each record's
// key and value prefix for a Tap (tap.go).
func splitBatchesTap(records []byte, maxBytes int32, c *tapCapture) ([]checkedBatch, error) {
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
			if errors.Is(err, log.ErrRecordCount) {
				return nil, fmt.Errorf("%w: %w", err, kerr.InvalidRecord)
			}
			return nil, fmt.Errorf("%w: %w", err, kerr.CorruptMessage)
		}
		if err := b.validateTap(c); err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint32(b[offEpoch:], 0)
		out = append(out, checkedBatch{batch: b, checked: checked})
	}
	return out, nil
}

// checkTimestamps refuses, with INVALID_TIMESTAMP, batches whose first or
// max timestamp lies further from now (unix ms) than the topic's
// message.timestamp.before.max.ms or after.max.ms allow (KIP-937). A
// timestamp of -1 (none) passes, as in Kafka.
func checkTimestamps(batches []checkedBatch, tc *topicConfig, now int64) error {
	for _, b := range batches {
		for _, ts := range []int64{b.baseTimestamp(), b.maxTimestamp()} {
			// Differences as uint64: exact for any two int64s.
			switch {
			case ts == -1:
			case ts < now && uint64(now-ts) > uint64(tc.timestampBeforeMaxMs):
				return fmt.Errorf("timestamp %d is %d ms before the broker's clock, over message.timestamp.before.max.ms %d: %w",
					ts, uint64(now-ts), tc.timestampBeforeMaxMs, kerr.InvalidTimestamp)
			case ts > now && uint64(ts-now) > uint64(tc.timestampAfterMaxMs):
				return fmt.Errorf("timestamp %d is %d ms after the broker's clock, over message.timestamp.after.max.ms %d: %w",
					ts, uint64(ts-now), tc.timestampAfterMaxMs, kerr.InvalidTimestamp)
			}
		}
	}
	return nil
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

// validate is Kafka's LogValidator for a batch from a client whose framing
// and CRC are already checked and whose recordCount is lastOffsetDelta+1
// (log.CheckBatch): the attributes, the producer fields and every record's
// framing, decompressing as a stream for a compressed batch. A batch that
// passes can be read record by record to its end, which is what a consumer
// does; one that does not would stop consumers at it for good.
func (b batch) validate() error { return b.validateTap(nil) }

// validateTap is validate keeping records for c (tap.go) when not nil.
func (b batch) validateTap(c *tapCapture) error {
	attrs := b.attributes()
	switch {
	case attrs&attrCodec > maxCodec:
		return fmt.Errorf("unknown compression codec %d: %w", attrs&attrCodec, kerr.CorruptMessage)
	case attrs&attrTransactional != 0:
		return fmt.Errorf("transactional batches are not supported: %w", kerr.TransactionalIDAuthorizationFailed)
	case attrs&attrControl != 0:
		return fmt.Errorf("control batch from a client: %w", kerr.InvalidRecord)
	case attrs&^attrKnown != 0:
		return fmt.Errorf("attributes %#04x set bits a client may not set: %w", uint16(attrs), kerr.InvalidRecord)
	case attrs&attrLogAppendTime != 0:
		// Kafka rewrites the timestamp type; a stored batch here keeps
		// the client's bytes, and topics are CreateTime.
		return fmt.Errorf("producer set the timestamp type to LogAppendTime: %w", kerr.InvalidTimestamp)
	case b.producerID() >= 0 && b.baseSequence() < 0:
		return fmt.Errorf("producerId %d with baseSequence %d: %w", b.producerID(), b.baseSequence(), kerr.InvalidRecord)
	}
	if attrs&attrCodec == 0 {
		if body := int64(len(b) - batchHeaderLen); int64(b.recordCount())*minRecordSize > body {
			return fmt.Errorf("recordCount %d does not fit in %d bytes of records: %w", b.recordCount(), body, kerr.InvalidRecord)
		}
	}
	err := b.scanRecordsTap(nil, c)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errTooLarge):
		return fmt.Errorf("%w: %w", err, kerr.MessageTooLarge)
	case errors.Is(err, errBadRecords):
		return fmt.Errorf("%w: %w", err, kerr.InvalidRecord)
	}
	return fmt.Errorf("%w: %w", err, kerr.CorruptMessage) // the payload does not decompress
}

// record is the part of a record the broker needs: its offset and timestamp.
type record struct {
	offset    int64
	timestamp int64
	nullKey   bool // a compacted topic refuses it
}

var (
	errBadRecords = errors.New("broker: malformed records in batch")
	errTooLarge   = errors.New("broker: batch decompresses past the bound")
)

// Record v2 framing (Kafka's DefaultRecord); varints are zigzag, at most 5
// bytes for an int32 and 10 for an int64:
//
//	length varint (bytes after it)
//	attributes int8
//	timestampDelta varlong
//	offsetDelta varint
//	keyLength varint (-1 null), key
//	valueLength varint (-1 null), value
//	headerCount varint, then per header:
//	  keyLength varint (>= 0), key, valueLength varint (-1 null), value
//
// minRecordSize is the smallest: a length and six one-byte fields.
const minRecordSize = 7

// byteSource is what records are read from: the batch body itself, or a
// decompressing stream behind a bufio.Reader.
type byteSource interface {
	io.ByteReader
	Discard(n int) (int, error)
}

// sliceSource reads a byte slice; it returns io.EOF at its end.
type sliceSource struct{ b []byte }

func (s *sliceSource) ReadByte() (byte, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c, nil
}

func (s *sliceSource) Discard(n int) (int, error) {
	if n > len(s.b) {
		k := len(s.b)
		s.b = nil
		return k, io.EOF
	}
	s.b = s.b[n:]
	return n, nil
}

// recordWalker reads record framing from src without keeping any of it:
// keys, values and headers are skipped, so a record costs no memory
// whatever its size.
type recordWalker struct {
	src     byteSource
	rem     int64 // bytes left in the current record
	nullKey bool  // the last record read had a null key

	// tap keeps keys and value prefixes for a Tap (tap.go); nil: none.
	tap *tapCapture
}

// malformed wraps what is wrong with a record as errBadRecords; a read
// error from a decompressor (corrupt stream, errTooLarge) is kept as is.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRecords, fmt.Sprintf(format, args...))
}

func (w *recordWalker) readByte() (byte, error) {
	if w.rem <= 0 {
		return 0, malformed("field runs past the record's length")
	}
	c, err := w.src.ReadByte()
	if err == io.EOF {
		return 0, malformed("records end inside a record")
	}
	if err != nil {
		return 0, err
	}
	w.rem--
	return c, nil
}

// varint reads a zigzag varint of at most maxLen bytes.
func (w *recordWalker) varint(maxLen int) (int64, error) {
	var ux uint64
	for i := 0; i < maxLen; i++ {
		c, err := w.readByte()
		if err != nil {
			return 0, err
		}
		ux |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			x := int64(ux >> 1)
			if ux&1 != 0 {
				x = ^x
			}
			return x, nil
		}
	}
	return 0, malformed("varint longer than %d bytes", maxLen)
}

// int32Field reads a varint that Kafka reads as an int32 and checks that it
// is at least minValue.
func (w *recordWalker) int32Field(name string, minValue int64) (int64, error) {
	v, err := w.varint(5)
	if err != nil {
		return 0, err
	}
	if v < minValue || v > 1<<31-1 {
		return 0, malformed("%s %d", name, v)
	}
	return v, nil
}

func (w *recordWalker) skip(n int64) error {
	if n > w.rem {
		return malformed("%d bytes past the record's length", n-w.rem)
	}
	k, err := w.src.Discard(int(n))
	w.rem -= int64(k)
	if err == io.EOF {
		return malformed("records end inside a record")
	}
	return err
}

// bytesField skips a length-prefixed key, value or header value.
func (w *recordWalker) bytesField(name string, minLen int64) error {
	n, err := w.int32Field(name, minLen)
	if err != nil {
		return err
	}
	if n > 0 {
		return w.skip(n)
	}
	return nil
}

// next reads one record and returns its timestamp and offset deltas.
func (w *recordWalker) next() (tsDelta, offsetDelta int64, err error) {
	w.rem = 5
	length, err := w.int32Field("record length", minRecordSize-1)
	if err != nil {
		return 0, 0, err
	}
	w.rem = length
	if _, err := w.readByte(); err != nil { // attributes, unused in v2
		return 0, 0, err
	}
	if tsDelta, err = w.varint(10); err != nil {
		return 0, 0, err
	}
	if offsetDelta, err = w.int32Field("offsetDelta", 0); err != nil {
		return 0, 0, err
	}
	keyLen, err := w.int32Field("key length", -1)
	if err != nil {
		return 0, 0, err
	}
	if err := w.skipKey(keyLen); err != nil {
		return 0, 0, err
	}
	w.nullKey = keyLen < 0
	valueLen, err := w.int32Field("value length", -1)
	if err != nil {
		return 0, 0, err
	}
	if err := w.skipValue(offsetDelta, valueLen); err != nil {
		return 0, 0, err
	}
	headers, err := w.int32Field("header count", 0)
	if err != nil {
		return 0, 0, err
	}
	if headers*2 > w.rem {
		return 0, 0, malformed("%d headers in %d bytes", headers, w.rem)
	}
	for range headers {
		if err := w.bytesField("header key length", 0); err != nil {
			return 0, 0, err
		}
		if err := w.bytesField("header value length", -1); err != nil {
			return 0, 0, err
		}
	}
	if w.rem != 0 {
		return 0, 0, malformed("record length %d, its fields end %d bytes before", length, w.rem)
	}
	return tsDelta, offsetDelta, nil
}

// scanRecords reads b's records in order, checking every one's framing and
// that offsetDeltas run 0..recordCount-1 (rise, within lastOffsetDelta, in
// a batch compaction left fewer records in), and calls fn (when not nil) with
// each until fn returns false. Read to the end, the records must fill the
// (decompressed) body exactly. A compressed batch is decompressed as a
// stream in one of decompressSlots, never held whole.
func (b batch) scanRecords(fn func(record) bool) error { return b.scanRecordsTap(fn, nil) }

// scanRecordsTap is scanRecords keeping records for c (tap.go) when not nil.
func (b batch) scanRecordsTap(fn func(record) bool, c *tapCapture) error {
	src, slot, err := b.openRecords()
	if err != nil {
		return err
	}
	if slot != nil {
		defer slot.release()
	}
	n := b.recordCount()
	if n < 0 {
		return malformed("recordCount %d", n)
	}
	base, baseTS, maxTS := b.baseOffset(), b.baseTimestamp(), b.maxTimestamp()
	logAppend := b.attributes()&attrLogAppendTime != 0
	w := recordWalker{src: src, tap: c}
	// A batch the log cleaner rewrote keeps its lastOffsetDelta and holds
	// fewer records (log/compact.go): their deltas rise with gaps.
	compacted := int64(n) < int64(b.lastOffsetDelta())+1
	prev := int64(-1)
	for i := int64(0); i < int64(n); i++ {
		tsDelta, offsetDelta, err := w.next()
		if err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
		if (!compacted && offsetDelta != i) || (compacted && (offsetDelta <= prev || offsetDelta > int64(b.lastOffsetDelta()))) {
			return malformed("record %d has offsetDelta %d", i, offsetDelta)
		}
		prev = offsetDelta
		r := record{offset: base + offsetDelta, timestamp: baseTS + tsDelta, nullKey: w.nullKey}
		if logAppend {
			r.timestamp = maxTS
		}
		if fn != nil && !fn(r) {
			return nil
		}
	}
	switch _, err := src.ReadByte(); {
	case err == nil:
		return malformed("bytes after the last of %d records", n)
	case err != io.EOF:
		return err // a compressed stream's checksum is checked at its end
	}
	return nil
}

// decompressSlot is what one batch is decompressed with: the decoders,
// the snappy block and the read buffer are kept from batch to batch, so a
// compressed batch costs no allocation (a zstd decoder costs about a window
// to build). Only decompressSlots exist in the whole process, whatever asks
// (produce checks, ListOffsets): a batch waits for a free one. They are the
// package's one piece of shared state on purpose: what they bound, memory,
// belongs to the process, however many Brokers run in it (tests).
type decompressSlot struct {
	src     bytes.Reader
	bounded boundedReader
	buf     *bufio.Reader
	zstd    *zstd.Decoder // made on first use, as are gzip and lz4
	gzip    *gzip.Reader
	lz4     *lz4.Reader
	xerial  xerialReader
	block   []byte // the array snappy blocks are decoded into, each whole
}

// keptSnappyBlock bounds the snappy block a slot keeps between batches:
// librdkafka's 1 MB batches fit, a rare larger one is not held for good.
const keptSnappyBlock = 2 << 20

var decompressSlotsFree = func() chan *decompressSlot {
	free := make(chan *decompressSlot, decompressSlots)
	for range decompressSlots {
		free <- &decompressSlot{buf: bufio.NewReaderSize(nil, streamBuffer)}
	}
	return free
}()

// openRecords returns b's records as a byteSource, decompressing them as a
// stream in a free decompressSlot, which the caller releases (nil for a
// batch without compression).
func (b batch) openRecords() (byteSource, *decompressSlot, error) {
	codec, body := b.attributes()&attrCodec, []byte(b[batchHeaderLen:])
	if codec == 0 {
		return &sliceSource{b: body}, nil, nil
	}
	if codec > maxCodec {
		return nil, nil, fmt.Errorf("broker: unknown compression codec %d", codec)
	}
	slot := <-decompressSlotsFree
	r, err := slot.decompressor(codec, body)
	if err != nil {
		slot.release()
		return nil, nil, err
	}
	slot.bounded = boundedReader{r: r, left: maxDecompressed, codec: codecNames[codec]}
	slot.buf.Reset(&slot.bounded)
	return slot.buf, slot, nil
}

// release drops what the slot read (a stream keeps no batch alive) and
// frees it.
func (s *decompressSlot) release() {
	s.buf.Reset(nil)
	s.bounded = boundedReader{}
	s.src.Reset(nil)
	if cap(s.xerial.buf) > cap(s.block) {
		s.block = s.xerial.buf
	}
	s.xerial = xerialReader{}
	if s.zstd != nil {
		s.zstd.Reset(nil)
	}
	if cap(s.block) > keptSnappyBlock {
		s.block = nil
	}
	decompressSlotsFree <- s
}

var codecNames = [...]string{"none", "gzip", "snappy", "lz4", "zstd"}

// boundedReader fails with errTooLarge once more than left bytes are read.
type boundedReader struct {
	r     io.Reader
	left  int64
	codec string
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a stream that ends exactly at the bound
		// from one that goes on.
		var one [1]byte
		if n, _ := io.ReadFull(b.r, one[:]); n > 0 {
			return 0, fmt.Errorf("%s: records decompress to over %d bytes: %w", b.codec, maxDecompressed, errTooLarge)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err != nil && err != io.EOF {
		err = codecError(b.codec, err)
	}
	return n, err
}

// codecError names the codec, and marks a zstd window over maxZstdWindow as
// errTooLarge: it is a decompression bomb's way to ask for memory.
func codecError(codec string, err error) error {
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return fmt.Errorf("%s: %w: %w", codec, err, errTooLarge)
	}
	return fmt.Errorf("%s: %w", codec, err)
}

// xerialMagic starts snappy framed the way the Java producer frames it; raw
// snappy (librdkafka) has no header.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// decompressor returns a stream of src decompressed per codec with the
// slot's decoders.
func (s *decompressSlot) decompressor(codec int16, src []byte) (io.Reader, error) {
	s.src.Reset(src)
	switch codec {
	case 1:
		if s.gzip == nil {
			r, err := gzip.NewReader(&s.src)
			if err != nil {
				return nil, fmt.Errorf("gzip: %w", err)
			}
			s.gzip = r
		} else if err := s.gzip.Reset(&s.src); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return s.gzip, nil
	case 2:
		if bytes.HasPrefix(src, xerialMagic) {
			if len(src) < len(xerialMagic)+8 {
				return nil, errors.New("snappy: truncated xerial header")
			}
			s.xerial = xerialReader{src: src[len(xerialMagic)+8:], buf: s.block}
			return &s.xerial, nil
		}
		block, err := unsnappyBlock(s.block, src)
		if err != nil {
			return nil, err
		}
		s.block = block
		s.src.Reset(block)
		return &s.src, nil
	case 3:
		if s.lz4 == nil {
			s.lz4 = lz4.NewReader(&s.src)
		} else {
			s.lz4.Reset(&s.src)
		}
		return s.lz4, nil
	case 4:
		if s.zstd == nil {
			d, err := newZstdDecoder()
			if err != nil {
				return nil, err
			}
			s.zstd = d
		}
		if err := s.zstd.Reset(&s.src); err != nil {
			return nil, codecError("zstd", err)
		}
		return s.zstd, nil
	}
	return nil, fmt.Errorf("broker: unknown compression codec %d", codec)
}

// newZstdDecoder decodes in the caller's goroutine
// (WithDecoderConcurrency(1)), so a slot's decoder holds no goroutine, and
// refuses a window over maxZstdWindow.
func newZstdDecoder() (*zstd.Decoder, error) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderMaxMemory(maxDecompressed))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return d, nil
}

// xerialReader decodes xerial-framed snappy one block at a time: the magic,
// version and compatible version (int32 each), then blocks of a big-endian
// int32 length and raw snappy. Each block is decoded into buf, the array of
// the one before.
type xerialReader struct {
	src   []byte
	buf   []byte
	block []byte // what is left to read of buf
}

func (x *xerialReader) Read(p []byte) (int, error) {
	for len(x.block) == 0 {
		if len(x.src) == 0 {
			return 0, io.EOF
		}
		if len(x.src) < 4 {
			return 0, errors.New("snappy: truncated xerial block length")
		}
		n := int64(binary.BigEndian.Uint32(x.src))
		x.src = x.src[4:]
		if n > int64(len(x.src)) {
			return 0, errors.New("snappy: truncated xerial block")
		}
		block, err := unsnappyBlock(x.buf, x.src[:n])
		if err != nil {
			return 0, err
		}
		x.buf, x.block, x.src = block, block, x.src[n:]
	}
	n := copy(p, x.block)
	x.block = x.block[n:]
	return n, nil
}

// unsnappyBlock decodes one raw snappy block (s2 decodes snappy) into dst's
// array when it is large enough. A block says its decoded length first:
// checked before anything is allocated.
func unsnappyBlock(dst, src []byte) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > maxSnappyBlock {
		return nil, fmt.Errorf("snappy: block decodes to %d bytes, over %d: %w", n, maxSnappyBlock, errTooLarge)
	}
	block, err := s2.Decode(dst, src)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return block, nil
}
