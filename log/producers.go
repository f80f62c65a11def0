package log

import (
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"time"
)

// ProducerWindow is how many batches per idempotent producer the log
// remembers for duplicate detection: the Java client and librdkafka keep at
// most 5 requests in flight per connection with idempotence.
const ProducerWindow = 5

// Byte positions of the idempotence fields of a v2 batch header, beside
// those of batch.go. Part of the on-disk format (segments hold batches
// verbatim).
const (
	batchProducerIDPos    = 43 // int64, -1 without idempotence
	batchProducerEpochPos = 51 // int16
	batchBaseSequencePos  = 53 // int32
)

// ProducerBatch is one batch an idempotent producer appended: its sequence
// range and where the log put it.
type ProducerBatch struct {
	FirstSeq, LastSeq      int32
	BaseOffset, LastOffset int64
}

// ProducerState is what the log knows of one idempotent producer: its epoch
// and its last batches of that epoch, oldest first (at most ProducerWindow).
type ProducerState struct {
	Epoch     int16
	Batches   []ProducerBatch
	LastWrite time.Time // the clock at its last append, or when Open replayed it
}

// producerEntry is a ProducerState in the table.
type producerEntry struct {
	epoch     int16
	batches   []ProducerBatch // cap ProducerWindow
	lastWrite int64           // unix ms
}

// producerTable is the log's producer state: for every producer id seen in
// a batch, the entry that batch and its predecessors make. It is a function
// of the log's contents (and the clock), so Open rebuilds it from the last
// snapshot and the batches after it, and it always matches what is stored.
//
// Who owns what: writers change it under the log's writeMu and mu here;
// Producer and ExpireProducers take only mu.
type producerTable struct {
	mu     sync.Mutex
	m      map[int64]*producerEntry
	oldest int64 // unix ms, no entry's lastWrite is older
}

func newProducerTable() *producerTable {
	return &producerTable{m: map[int64]*producerEntry{}, oldest: math.MaxInt64}
}

// lastSequence is the sequence of a batch's last record; sequences wrap
// from MaxInt32 to 0 as Kafka's do.
func lastSequence(base, lastOffsetDelta int32) int32 {
	if base > math.MaxInt32-lastOffsetDelta {
		return base - math.MaxInt32 - 1 + lastOffsetDelta
	}
	return base + lastOffsetDelta
}

// noteBatch records the batch whose header is hdr (at least batchHeaderSize
// bytes, baseOffset already assigned). Batches without a producer id are
// ignored.
func (t *producerTable) noteBatch(hdr []byte, now func() time.Time) {
	id := int64(binary.BigEndian.Uint64(hdr[batchProducerIDPos:]))
	if id < 0 {
		return
	}
	nowMs := now().UnixMilli()
	epoch := int16(binary.BigEndian.Uint16(hdr[batchProducerEpochPos:]))
	seq := int32(binary.BigEndian.Uint32(hdr[batchBaseSequencePos:]))
	delta := int32(binary.BigEndian.Uint32(hdr[batchLastOffsetDeltaPos:]))
	base := int64(binary.BigEndian.Uint64(hdr[batchBaseOffsetPos:]))
	b := ProducerBatch{FirstSeq: seq, LastSeq: lastSequence(seq, delta), BaseOffset: base, LastOffset: base + int64(delta)}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[id]
	if e == nil {
		e = &producerEntry{batches: make([]ProducerBatch, 0, ProducerWindow)}
		t.m[id] = e
	}
	if e.epoch != epoch {
		// A new epoch starts the producer's sequences afresh (Kafka's
		// ProducerAppendInfo).
		e.epoch, e.batches = epoch, e.batches[:0]
	}
	if len(e.batches) == ProducerWindow {
		copy(e.batches, e.batches[1:])
		e.batches = e.batches[:ProducerWindow-1]
	}
	e.batches = append(e.batches, b)
	e.lastWrite = nowMs
	t.oldest = min(t.oldest, nowMs)
}

// Producer returns what the log knows of producer id: its epoch and last
// batches (ok false: nothing, because it never wrote here or expired). The
// broker checks an idempotent batch against it before writing the batch.
func (l *Log) Producer(id int64) (ProducerState, bool) {
	t := l.producers
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[id]
	if e == nil {
		return ProducerState{}, false
	}
	return ProducerState{Epoch: e.epoch, Batches: slices.Clone(e.batches), LastWrite: time.UnixMilli(e.lastWrite)}, true
}

// ExpireProducers forgets producers whose last write is before idleBefore
// (producer.id.expiration.ms) and returns how many. It costs O(1) unless one
// may have expired, so a writer can call it before every append.
func (l *Log) ExpireProducers(idleBefore time.Time) int {
	t := l.producers
	cut := idleBefore.UnixMilli()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.oldest >= cut {
		return 0
	}
	n := 0
	t.oldest = math.MaxInt64
	for id, e := range t.m {
		if e.lastWrite < cut {
			delete(t.m, id)
			n++
			continue
		}
		t.oldest = min(t.oldest, e.lastWrite)
	}
	return n
}

// Producers is the number of producers the log remembers.
func (l *Log) Producers() int {
	l.producers.mu.Lock()
	defer l.producers.mu.Unlock()
	return len(l.producers.m)
}
