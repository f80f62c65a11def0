package protocol

import (
	"context"
	"encoding/binary"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Record batch v2 header offsets used here (the layout is Kafka's):
//
//	0 baseOffset int64 | 8 batchLength int32 | 12 partitionLeaderEpoch int32 |
//	16 magic int8 | 17 crc uint32 | 21 attributes int16 | 23 lastOffsetDelta int32 |
//	27 baseTimestamp | 35 maxTimestamp | 43 producerId | 51 producerEpoch |
//	53 baseSequence | 57 recordCount int32 | 61 records...
//
// Magic 0 and 1 message sets also keep their magic byte at offset 16
// (offset, size, crc, magic), which is how old formats are told apart.
const (
	batchLengthAt  = 8
	batchMagicAt   = 16
	batchCountAt   = 57
	batchHeaderLen = 61
)

// checkBatches walks produced bytes batch by batch without decoding the
// records and returns their record count, or the code to answer with.
func checkBatches(b []byte) (records int64, code int16) {
	if len(b) == 0 {
		return 0, kerr.CorruptMessage.Code
	}
	for len(b) > 0 {
		if len(b) <= batchMagicAt {
			return 0, kerr.CorruptMessage.Code
		}
		switch magic := b[batchMagicAt]; {
		case magic < 2:
			return 0, kerr.UnsupportedForMessageFormat.Code
		case magic > 2:
			return 0, kerr.CorruptMessage.Code
		}
		n := int64(int32(binary.BigEndian.Uint32(b[batchLengthAt:])))
		if n < batchHeaderLen-12 || 12+n > int64(len(b)) {
			return 0, kerr.CorruptMessage.Code
		}
		count := int32(binary.BigEndian.Uint32(b[batchCountAt:]))
		if count < 0 {
			return 0, kerr.CorruptMessage.Code
		}
		records += int64(count)
		b = b[12+n:]
	}
	return records, 0
}

// countRecords sums the record counts of well-formed fetched batches; a
// trailing partial batch (allowed in fetch answers) is not counted.
func countRecords(b []byte) (records int64) {
	for len(b) >= batchHeaderLen {
		n := int64(int32(binary.BigEndian.Uint32(b[batchLengthAt:])))
		if n < batchHeaderLen-12 || 12+n > int64(len(b)) {
			break
		}
		records += int64(int32(binary.BigEndian.Uint32(b[batchCountAt:])))
		b = b[12+n:]
	}
	return records
}

// topicIDs maps topic ids back to names for Fetch >= 13, Metadata >= 12 and
// DeleteTopics >= 6. Backend speaks names; the map is refilled from
// Backend.Topic on a miss and every hit is checked against the Backend, so
// a deleted or recreated topic is never served under a stale id.
type topicIDs struct {
	b  Backend
	mu sync.Mutex
	m  map[[16]byte]string
}

func (t *topicIDs) remember(id [16]byte, name string) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[[16]byte]string)
	}
	t.m[id] = name
	t.mu.Unlock()
}

// name returns the topic with id and its partition count.
func (t *topicIDs) name(ctx context.Context, id [16]byte) (string, int32, bool) {
	if id == ([16]byte{}) {
		return "", 0, false
	}
	t.mu.Lock()
	name, ok := t.m[id]
	t.mu.Unlock()
	if ok {
		if got, n, err := t.b.Topic(ctx, name, false); err == nil && got == id {
			return name, n, true
		}
	}
	var found string
	var parts int32
	for _, n := range t.b.TopicNames(ctx) {
		got, p, err := t.b.Topic(ctx, n, false)
		if err != nil {
			continue
		}
		t.remember(got, n)
		if got == id {
			found, parts = n, p
		}
	}
	return found, parts, found != ""
}
