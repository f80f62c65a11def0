package broker

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzValidateRecords fuzzes the record framing check behind a correct CRC
// (FuzzRecords rarely gets past the CRC): whatever body, count and codec,
// splitBatches must not panic, and a batch it accepts must read to its end
// with offsets 0..n-1, and, uncompressed, decode record by record with
// kmsg as a client decodes it.
func FuzzValidateRecords(f *testing.F) {
	f.Add(recordsBody(3, 0, 5), int32(3), uint8(0))
	f.Add(recordsBody(1, 0, 0), int32(1), uint8(0))
	f.Add(compress(f, codecs[1], recordsBody(2, 0, 9)), int32(2), uint8(1))
	f.Add(compress(f, codecs[2], recordsBody(2, 0, 9)), int32(2), uint8(2))
	f.Add(compress(f, codecs[3], recordsBody(2, 0, 9)), int32(2), uint8(2))
	f.Add(compress(f, codecs[4], recordsBody(2, 0, 9)), int32(2), uint8(3))
	f.Add(compress(f, codecs[5], recordsBody(2, 0, 9)), int32(2), uint8(4))
	f.Fuzz(func(t *testing.T, body []byte, count int32, codec uint8) {
		in := rawBatch{attrs: int16(codec & 7), count: count, body: body}.encode()
		bs, err := splitBatches(in, 1<<20)
		if err != nil {
			return
		}
		b := bs[0].batch
		recs, err := allRecords(b)
		if err != nil || len(recs) != int(count) {
			t.Fatalf("accepted batch reads %d of %d records: %v", len(recs), count, err)
		}
		for i, r := range recs {
			if r.offset != int64(i) {
				t.Fatalf("record %d at offset %d", i, r.offset)
			}
		}
		if codec&7 != 0 {
			return
		}
		rest := body
		for i := range count {
			var r kmsg.Record
			length, n := varint(rest)
			if n <= 0 || int64(len(rest)-n) < length {
				t.Fatalf("record %d: accepted, but its length does not fit", i)
			}
			if err := r.ReadFrom(rest[:n+int(length)]); err != nil {
				t.Fatalf("record %d: accepted, but kmsg cannot decode it: %v", i, err)
			}
			if r.OffsetDelta != i {
				t.Fatalf("record %d: kmsg reads offsetDelta %d", i, r.OffsetDelta)
			}
			rest = rest[n+int(length):]
		}
		if len(rest) != 0 {
			t.Fatalf("accepted with %d bytes after the records", len(rest))
		}
	})
}

func varint(b []byte) (int64, int) {
	w := recordWalker{src: &sliceSource{b: b}, rem: 5}
	v, err := w.varint(5)
	if err != nil {
		return 0, -1
	}
	return v, 5 - int(w.rem)
}
