package broker

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ztfbroker/ztfbroker/log"
)

func TestSplitBatches(t *testing.T) {
	one := makeBatch(t, testBatch{baseTS: 1000, tsDeltas: deltas(3, 1), valueSize: 10})
	two := makeBatch(t, testBatch{codec: codecs[1], baseTS: 2000, tsDeltas: deltas(5, 1), valueSize: 10})
	magic1 := append([]byte(nil), one...)
	magic1[offMagic] = 1
	badCRC := append([]byte(nil), one...)
	badCRC[len(badCRC)-1] ^= 0x01
	txn := makeBatch(t, testBatch{baseTS: 1, tsDeltas: deltas(1, 1), attrs: attrTransactional, producerID: 7})
	control := makeBatch(t, testBatch{baseTS: 1, tsDeltas: deltas(1, 1), attrs: attrControl})
	longLen := append([]byte(nil), one...)
	binary.BigEndian.PutUint32(longLen[offLength:], uint32(len(one)))

	cases := map[string]struct {
		in      []byte
		max     int32
		batches int
		want    *kerr.Error
	}{
		"one":           {in: one, max: 1 << 20, batches: 1},
		"two":           {in: append(append([]byte(nil), one...), two...), max: 1 << 20, batches: 2},
		"empty":         {in: nil, max: 1 << 20, want: kerr.CorruptMessage},
		"magic 1":       {in: magic1, max: 1 << 20, want: kerr.UnsupportedForMessageFormat},
		"bad crc":       {in: badCRC, max: 1 << 20, want: kerr.CorruptMessage},
		"truncated":     {in: one[:len(one)-3], max: 1 << 20, want: kerr.CorruptMessage},
		"short header":  {in: one[:10], max: 1 << 20, want: kerr.CorruptMessage},
		"length past":   {in: longLen, max: 1 << 20, want: kerr.CorruptMessage},
		"too large":     {in: one, max: int32(len(one) - 1), want: kerr.MessageTooLarge},
		"exactly max":   {in: one, max: int32(len(one)), batches: 1},
		"transactional": {in: txn, max: 1 << 20, want: kerr.TransactionalIDAuthorizationFailed},
		"control":       {in: control, max: 1 << 20, want: kerr.InvalidRecord},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			in := append([]byte(nil), c.in...)
			got, err := splitBatches(in, c.max)
			if c.want != nil {
				if !errors.Is(err, c.want) {
					t.Fatalf("err = %v, want %v", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.batches {
				t.Fatalf("%d batches, want %d", len(got), c.batches)
			}
			for _, b := range got {
				if e := binary.BigEndian.Uint32(b.batch[offEpoch:]); e != 0 {
					t.Errorf("partitionLeaderEpoch %d, want 0", e)
				}
				if _, err := log.CheckBatch(b.batch); err != nil {
					t.Errorf("CRC broken by patching the epoch: %v", err)
				}
			}
		})
	}
}

func TestRecordsEveryCodec(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			raw := makeBatch(t, testBatch{codec: c, baseTS: 5000, tsDeltas: []int64{0, 30, 10, 20}, valueSize: 300})
			b := batch(raw)
			binary.BigEndian.PutUint64(b, 100) // as the log assigns
			recs, err := b.records()
			if err != nil {
				t.Fatal(err)
			}
			want := []record{{100, 5000}, {101, 5030}, {102, 5010}, {103, 5020}}
			if len(recs) != len(want) {
				t.Fatalf("got %v, want %v", recs, want)
			}
			for i := range want {
				if recs[i] != want[i] {
					t.Fatalf("got %v, want %v", recs, want)
				}
			}
		})
	}
}

func TestRecordsLogAppendTime(t *testing.T) {
	raw := makeBatch(t, testBatch{baseTS: 5000, tsDeltas: []int64{0, 5}, attrs: attrLogAppendTime})
	recs, err := batch(raw).records()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.timestamp != 5005 {
			t.Fatalf("LogAppendTime record timestamp %d, want the batch max 5005", r.timestamp)
		}
	}
}

func TestRecordsMalformed(t *testing.T) {
	raw := makeBatch(t, testBatch{baseTS: 1, tsDeltas: deltas(3, 1), valueSize: 5})
	b := batch(raw[:len(raw)-4])
	if _, err := b.records(); err == nil {
		t.Fatal("truncated records decoded without error")
	}
	for _, c := range codecs[1:] {
		raw := makeBatch(t, testBatch{codec: c, baseTS: 1, tsDeltas: deltas(3, 1), valueSize: 50})
		garbled := append([]byte(nil), raw...)
		for i := batchHeaderLen + 2; i < len(garbled); i++ {
			garbled[i] ^= 0x5a
		}
		if _, err := batch(garbled).records(); err == nil {
			t.Errorf("%s: garbled records decoded without error", c.name)
		}
	}
}

func FuzzRecords(f *testing.F) {
	for _, c := range codecs {
		f.Add(makeBatch(f, testBatch{codec: c, baseTS: 1, tsDeltas: deltas(3, 7), valueSize: 20}))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if bs, err := splitBatches(append([]byte(nil), in...), 1<<20); err == nil {
			for _, b := range bs {
				b.records() // must not panic
			}
		}
		if len(in) >= batchHeaderLen {
			batch(in).records() // stored bytes are decoded without a CRC check here
		}
	})
}
