package broker

import (
	"runtime"
	"testing"
)

// raceDetector is set under -race (race_test.go).
var raceDetector bool

// TestDecompressSlotsReused: the decompressSlots keep their decoders and
// buffers from batch to batch, whatever the codec, and a batch that fails
// to decompress leaves nothing behind that spoils the next: every codec in
// turn, each good batch between damaged ones of every codec, several
// rounds so that each slot sees each case. Checking a batch allocates next
// to nothing (it was 1 MB for a snappy batch of 1 MB, 32 KiB and a decoder
// for the others).
func TestDecompressSlotsReused(t *testing.T) {
	type batches struct{ good, bad batch }
	var all []batches
	for _, c := range codecs {
		good := makeBatch(t, testBatch{codec: c, baseTS: 1, tsDeltas: deltas(40, 3), valueSize: 3000})
		body := append([]byte(nil), good[batchHeaderLen:]...)
		if c.attr != 0 {
			// The middle of the compressed stream, under a correct CRC.
			for i := len(body) / 2; i < len(body)/2+8; i++ {
				body[i] ^= 0x5a
			}
		} else {
			body = body[:len(body)-1] // the last record is cut short
		}
		bad := rawBatch{attrs: c.attr, count: 40, baseTS: 1, body: body}.encode()
		all = append(all, batches{batch(good), batch(bad)})
	}
	for round := range 3 {
		for i, g := range all {
			for j, b := range all {
				if err := b.bad.validate(); err == nil {
					t.Fatalf("round %d: damaged %s batch accepted", round, codecs[j].name)
				}
				if err := g.good.validate(); err != nil {
					t.Fatalf("round %d: %s batch after a damaged %s one: %v", round, codecs[i].name, codecs[j].name, err)
				}
			}
		}
	}
	for i, g := range all {
		// Once per slot first: a slot that only saw damaged snappy
		// batches has no block of this size yet.
		for range decompressSlots {
			if err := g.good.validate(); err != nil {
				t.Fatal(err)
			}
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 20 {
			if err := g.good.validate(); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / 20; per > 1024 && !raceDetector {
			t.Errorf("%s: %d bytes allocated per batch checked", codecs[i].name, per)
		}
	}
}
