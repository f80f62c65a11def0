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
