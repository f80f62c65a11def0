package log

import (
	"bytes"
	"math/rand"
	"testing"
)

func seedSegment() []byte {
	rng := rand.New(rand.NewSource(11))
	var seg []byte
	var off int64
	for i := 0; i < 4; i++ {
		b := testBatch(rng, i, int64(i))
		putInt64(b, off)
		h, _ := parseBatchHeader(b)
		off = h.nextOffset()
		seg = append(seg, b...)
	}
	return seg
}

// FuzzParseBatchHeader: outside bytes never panic the header parser or the
// incoming-batch check, and what they accept is self-consistent.
func FuzzParseBatchHeader(f *testing.F) {
	f.Add(makeBatch(nil, 2, 5, 10))
	f.Add(seedSegment()[:batchHeaderSize])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseBatchHeader(b)
		if err == nil && (h.Size < batchHeaderSize || h.Size > maxBatchSize || h.LastOffsetDelta < 0 || h.Magic != 2) {
			t.Fatalf("accepted header %+v", h)
		}
		if h, err := validateIncoming(b); err == nil {
			if h.Size != int64(len(b)) {
				t.Fatalf("accepted batch of %d bytes with length %d", len(b), h.Size)
			}
			if _, err := checkStoredBatch(b, h.BaseOffset, max(h.LeaderEpoch, 0)); err != nil && h.LeaderEpoch >= 0 {
				t.Fatalf("incoming batch accepted, stored check refuses: %v", err)
			}
		}
	})
}

// FuzzScanSegment: arbitrary bytes as the active segment. The scanner and
// the read checker agree on the good prefix, and Open recovers exactly it.
func FuzzScanSegment(f *testing.F) {
	seg := seedSegment()
	f.Add(seg)
	f.Add(seg[:len(seg)-7])
	f.Add(append(bytes.Clone(seg), make([]byte, 100)...))
	flipped := bytes.Clone(seg)
	flipped[len(seg)/2] ^= 4
	f.Add(flipped)
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := NewCrashFS()
		fsys.MkdirAll("/d/t-0", 0o755)
		name := "/d/t-0/" + segmentName(0) + logSuffix
		file, _ := fsys.OpenFile(name, 0x42, 0o644) // O_RDWR|O_CREATE
		file.WriteAt(data, 0)
		file.Sync()
		res := scanBatches(file, 0, int64(len(data)), 0, 0, true, func(h batchHeader, pos int64) error {
			if pos+h.Size > int64(len(data)) {
				t.Fatalf("batch at %d of %d bytes beyond %d", pos, h.Size, len(data))
			}
			return nil
		})
		file.Close()
		if res.end > int64(len(data)) || (res.err == nil) != (res.end == int64(len(data))) {
			t.Fatalf("scan ended at %d of %d with %v", res.end, len(data), res.err)
		}
		good, _, err := checkChunk(data, 0, 0, true, 0)
		if int64(good) != res.end || (err == nil) != (res.err == nil) {
			t.Fatalf("checkChunk %d (%v), scan %d (%v)", good, err, res.end, res.err)
		}
		fsys.SyncDir("/d/t-0")
		l, err := Open("/d/t-0", Config{}, Options{FS: fsys})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer l.Close()
		if l.HighWatermark() != res.next || l.Size() != res.end {
			t.Fatalf("recovered hw %d size %d, scan says %d %d", l.HighWatermark(), l.Size(), res.next, res.end)
		}
	})
}
