package broker

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Codecs as numbered in the batch attributes, plus raw and xerial snappy.
type codec struct {
	name   string
	attr   int16
	xerial bool
}

var codecs = []codec{
	{"none", 0, false},
	{"gzip", 1, false},
	{"snappy", 2, false},
	{"snappy-xerial", 2, true},
	{"lz4", 3, false},
	{"zstd", 4, false},
}

// testBatch describes a v2 record batch for makeBatch.
type testBatch struct {
	codec      codec
	baseTS     int64
	tsDeltas   []int64 // one record per delta
	valueSize  int
	attrs      int16 // extra attribute bits (transactional, ...)
	producerID int64
	sequence   int32 // with producerID: epoch 0 and this base sequence
}

// makeBatch encodes a batch with kmsg the way a client does, compressing
// its records and computing the CRC.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func makeBatch(t testing.TB, tb testBatch) []byte {
	t.Helper()
	var raw []byte
	maxTS := tb.baseTS
	for i, d := range tb.tsDeltas {
		val := bytes.Repeat([]byte{byte('a' + i%26)}, tb.valueSize)
		r := kmsg.Record{TimestampDelta64: d, OffsetDelta: int32(i), Key: []byte{byte(i)}, Value: val}
		enc := r.AppendTo(nil) // Length 0 encodes as one byte
		body := enc[1:]
		raw = binary.AppendVarint(raw, int64(len(body)))
		raw = append(raw, body...)
		maxTS = max(maxTS, tb.baseTS+d)
	}
	records := compress(t, tb.codec, raw)
	pid := tb.producerID
	if pid == 0 {
		pid = -1
	}
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: 77, // as a client may send: the broker zeroes it
		Magic:                2,
		Attributes:           tb.codec.attr | tb.attrs,
		LastOffsetDelta:      int32(len(tb.tsDeltas) - 1),
		FirstTimestamp:       tb.baseTS,
		MaxTimestamp:         maxTS,
		ProducerID:           pid,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           int32(len(tb.tsDeltas)),
		Records:              records,
	}
	if tb.producerID > 0 {
		b.ProducerEpoch, b.FirstSequence = 0, tb.sequence
	}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[offLength:], uint32(len(out)-offEpoch))
	binary.BigEndian.PutUint32(out[offCRC:], crc32.Checksum(out[offAttributes:], castagnoli))
	return out
}

func compress(t testing.TB, c codec, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch c.attr {
	case 0:
		return raw
	case 1:
		w := gzip.NewWriter(&buf)
		w.Write(raw)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case 2:
		if !c.xerial {
			return s2.EncodeSnappy(nil, raw)
		}
		buf.Write(xerialMagic)
		buf.Write([]byte{0, 0, 0, 1, 0, 0, 0, 1})
		for len(raw) > 0 { // small blocks, so that there are several
			n := min(len(raw), 100)
			block := s2.EncodeSnappy(nil, raw[:n])
			buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(block))))
			buf.Write(block)
			raw = raw[n:]
		}
	case 3:
		w := lz4.NewWriter(&buf)
		w.Write(raw)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case 4:
		w, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		return w.EncodeAll(raw, nil)
	}
	return buf.Bytes()
}

func deltas(n int, step int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i) * step
	}
	return out
}

// rawBatch is a v2 batch put together field by field, so that a test can
// make one that lies (a wrong count, garbage records) under a correct CRC.
type rawBatch struct {
	attrs        int16
	count        int32
	lastDelta    int32 // used when not 0; else count-1
	baseTS       int64
	producerID   int64 // 0 means -1
	baseSequence int32
	body         []byte
}

func (r rawBatch) encode() []byte {
	last := r.lastDelta
	if last == 0 {
		last = r.count - 1
	}
	pid, epoch, seq := r.producerID, int16(0), r.baseSequence
	if pid == 0 {
		pid, epoch, seq = -1, -1, -1
	}
	b := make([]byte, batchHeaderLen, batchHeaderLen+len(r.body))
	binary.BigEndian.PutUint32(b[offLength:], uint32(batchHeaderLen-offEpoch+len(r.body)))
	b[offMagic] = 2
	binary.BigEndian.PutUint16(b[offAttributes:], uint16(r.attrs))
	binary.BigEndian.PutUint32(b[offLastDelta:], uint32(last))
	binary.BigEndian.PutUint64(b[offBaseTime:], uint64(r.baseTS))
	binary.BigEndian.PutUint64(b[offMaxTime:], uint64(r.baseTS+int64(max(r.count, 1))-1))
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(pid))
	binary.BigEndian.PutUint16(b[offProdEpoch:], uint16(epoch))
	binary.BigEndian.PutUint32(b[offBaseSeq:], uint32(seq))
	binary.BigEndian.PutUint32(b[offRecordCount:], uint32(r.count))
	b = append(b, r.body...)
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}

// recordBytes is one record as a client frames it.
func recordBytes(offsetDelta int32, tsDelta int64, valueSize int) []byte {
	r := kmsg.Record{TimestampDelta64: tsDelta, OffsetDelta: offsetDelta, Key: []byte{'k'},
		Value: bytes.Repeat([]byte{'v'}, valueSize)}
	body := r.AppendTo(nil)[1:] // Length 0 encodes as one byte
	return append(binary.AppendVarint(nil, int64(len(body))), body...)
}

// recordsBody is n records with offsetDeltas from first.
func recordsBody(n int, first int32, valueSize int) []byte {
	var out []byte
	for i := range n {
		out = append(out, recordBytes(first+int32(i), int64(i), valueSize)...)
	}
	return out
}

// withLength rewrites a record's length prefix by delta.
func withLength(rec []byte, delta int64) []byte {
	n, k := binary.Varint(rec)
	return append(binary.AppendVarint(nil, n+delta), rec[k:]...)
}

func flipLast(b []byte) []byte {
	out := append([]byte(nil), b...)
	out[len(out)-5] ^= 0xff // inside gzip's CRC32 trailer
	return out
}
