package broker

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// producerWindow is how many batches per producer and partition are kept
// for duplicate detection: the Java client and librdkafka keep at most 5
// requests in flight per connection with idempotence.
const producerWindow = 5

// ProducerBatch is the idempotence header of one record batch.
type ProducerBatch struct {
	ProducerID      int64
	Epoch           int16
	BaseSequence    int32
	LastOffsetDelta int32
}

// producerBatchOf reads a batch's idempotence header.
func producerBatchOf(b batch) ProducerBatch {
	return ProducerBatch{
		ProducerID:      b.producerID(),
		Epoch:           b.producerEpoch(),
		BaseSequence:    b.baseSequence(),
		LastOffsetDelta: b.lastOffsetDelta(),
	}
}

func (b ProducerBatch) lastSequence() int32 {
	if b.BaseSequence > math.MaxInt32-b.LastOffsetDelta {
		return b.BaseSequence - math.MaxInt32 - 1 + b.LastOffsetDelta // wraps to 0 as Kafka does
	}
	return b.BaseSequence + b.LastOffsetDelta
}

// producerRecord is the value under producer/seq/<topic><partition><id>.
// Part of the on-disk format.
type producerRecord struct {
	Epoch     int16                 `json:"epoch"`
	Batches   []producerBatchRecord `json:"batches"` // oldest first, at most producerWindow
	LastWrite time.Time             `json:"last_write"`
}

type producerBatchRecord struct {
	FirstSeq   int32 `json:"first_seq"`
	LastSeq    int32 `json:"last_seq"`
	BaseOffset int64 `json:"base_offset"`
}

type producerKey struct {
	topic     string
	partition int32
	id        int64
}

func (k producerKey) bytes() []byte {
	b := appendKeyString([]byte(producerSeqPrefix), k.topic)
	b = binary32(b, k.partition)
	return binary.BigEndian.AppendUint64(b, uint64(k.id))
}

func parseProducerKey(b []byte) (producerKey, bool) {
	topic, rest, ok := readKeyString(b[len(producerSeqPrefix):])
	if !ok || len(rest) != 12 {
		return producerKey{}, false
	}
	return producerKey{topic, int32(binary.BigEndian.Uint32(rest)), int64(binary.BigEndian.Uint64(rest[4:]))}, true
}

// ProducerSequences holds, per idempotent producer and partition, the epoch
// and the last batches appended, and hands out producer ids.
type ProducerSequences struct {
	db         *pebble.DB
	logger     *zap.Logger
	now        func() time.Time
	expiration time.Duration

	// onDropTopic also forgets the committed offsets of a deleted topic
	// (the coordinator's), since the broker tells only this type.
	onDropTopic func(topic string)

	mu      sync.Mutex
	next    int64 // next producer id; persisted before it is handed out
	entries map[producerKey]*producerRecord
}

func newProducerSequences(db *pebble.DB, expiration time.Duration, logger *zap.Logger, now func() time.Time) (*ProducerSequences, error) {
	s := &ProducerSequences{db: db, logger: logger, now: now, expiration: expiration, next: 1, entries: map[producerKey]*producerRecord{}}
	v, closer, err := db.Get([]byte(producerNextKey))
	switch {
	case err == nil:
		if len(v) != 8 {
			closer.Close()
			return nil, fmt.Errorf("%s: %d bytes, want 8", producerNextKey, len(v))
		}
		s.next = int64(binary.BigEndian.Uint64(v))
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return nil, fmt.Errorf("read %s: %w", producerNextKey, err)
	}
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(producerSeqPrefix),
		UpperBound: keyPrefixEnd([]byte(producerSeqPrefix)),
	})
	if err != nil {
		return nil, err
	}
	for it.First(); it.Valid(); it.Next() {
		k, ok := parseProducerKey(it.Key())
		var r producerRecord
		if !ok || json.Unmarshal(it.Value(), &r) != nil {
			it.Close()
			return nil, fmt.Errorf("bad producer record %q", it.Key())
		}
		s.entries[k] = &r
	}
	return s, errors.Join(it.Error(), it.Close())
}

// allocate hands out a new producer id, persisting the counter first so
// that no id is ever handed out twice, even across a crash.
func (s *ProducerSequences) allocate() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.next
	if err := s.db.Set([]byte(producerNextKey), binary.BigEndian.AppendUint64(nil, uint64(id+1)), pebble.Sync); err != nil {
		return 0, err
	}
	s.next = id + 1
	return id, nil
}

// Check decides whether an idempotent batch may be appended to a partition.
// The caller holds the partition's append lock from Check through Appended,
// and passes the partition's log end offset (high watermark).
//
// It returns dup with the batch's original base offset when the batch is one
// of the last five appended for this producer (a retry: acknowledge it with
// that offset, write nothing); kerr.OutOfOrderSequenceNumber when its
// sequence does not follow the last; kerr.InvalidProducerEpoch when its
// epoch is older than the producer's (Produce always answers
// INVALID_PRODUCER_EPOCH: PRODUCER_FENCED is for transactional APIs, and
// produce clients before KIP-588 do not know it). A batch without a producer
// id (-1) always passes.
func (s *ProducerSequences) Check(topic string, partition int32, b ProducerBatch, logEnd int64) (dupBaseOffset int64, dup bool, err error) {
	if b.ProducerID < 0 {
		return 0, false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := producerKey{topic, partition, b.ProducerID}
	e := s.entries[k]
	switch {
	case e == nil:
		// KIP-360: an unknown producer (new, or expired) may start
		// at any sequence.
		return 0, false, nil
	case b.Epoch < e.Epoch:
		return 0, false, kerr.InvalidProducerEpoch
	case b.Epoch > e.Epoch:
		if b.BaseSequence != 0 {
			return 0, false, kerr.OutOfOrderSequenceNumber
		}
		return 0, false, nil
	}
	last := b.lastSequence()
	for _, w := range e.Batches {
		if w.FirstSeq == b.BaseSequence && w.LastSeq == last {
			if w.BaseOffset >= logEnd {
				// The log lost the batch (a crash truncated its
				// unsynced tail): accept the retry as new.
				delete(s.entries, k)
				return 0, false, nil
			}
			return w.BaseOffset, true, nil
		}
	}
	if len(e.Batches) > 0 {
		prev := e.Batches[len(e.Batches)-1].LastSeq
		if !(b.BaseSequence == prev+1 || (prev == math.MaxInt32 && b.BaseSequence == 0)) {
			return 0, false, kerr.OutOfOrderSequenceNumber
		}
	}
	return 0, false, nil
}

// Appended records a batch that Check passed, once the log gave it
// baseOffset. The record goes to pebble unsynced; Durable, which Produce
// calls before acknowledging, syncs it together with every other partition's
// and request's (one WAL fsync covers all earlier records). So an
// acknowledged batch's sequence is always on disk, and a crash can lose a
// sequence only with a batch that was never acknowledged (a retry whose
// first write the log lost is seen as past the log end by Check; one whose
// first write survived in the page cache is written again: the window is the
// time between the log write and the next WAL sync, about a millisecond).
func (s *ProducerSequences) Appended(topic string, partition int32, b ProducerBatch, baseOffset int64) {
	if b.ProducerID < 0 {
		return
	}
	k := producerKey{topic, partition, b.ProducerID}
	v := s.record(k, b, baseOffset)
	// Outside s.mu: other partitions' producers do not wait for this write.
	// Writes of one key are ordered by the partition's write lock.
	if err := s.db.Set(k.bytes(), v, pebble.NoSync); err != nil {
		s.logger.Error("persist producer sequence", zap.String("topic", topic), zap.Int32("partition", partition), zap.Error(err))
	}
}

// Durable syncs pebble's write-ahead log, and with it every sequence
// Appended recorded before the call.
func (s *ProducerSequences) Durable() error {
	return s.db.LogData(nil, pebble.Sync)
}

// record notes the batch in the producer's window and returns the encoded
// record to persist.
func (s *ProducerSequences) record(k producerKey, b ProducerBatch, baseOffset int64) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[k]
	if e == nil || e.Epoch != b.Epoch {
		e = &producerRecord{Epoch: b.Epoch}
		s.entries[k] = e
	}
	e.Batches = append(e.Batches, producerBatchRecord{FirstSeq: b.BaseSequence, LastSeq: b.lastSequence(), BaseOffset: baseOffset})
	if n := len(e.Batches); n > producerWindow {
		e.Batches = append(e.Batches[:0], e.Batches[n-producerWindow:]...)
	}
	e.LastWrite = s.now()
	v, _ := json.Marshal(e)
	return v
}

// DropTopic forgets every producer's sequences on topic (deleted), and the
// groups' committed offsets of it, so that a topic created again under the
// name starts clean.
func (s *ProducerSequences) DropTopic(topic string) {
	s.mu.Lock()
	s.dropLocked(func(k producerKey, _ *producerRecord) bool { return k.topic == topic })
	s.mu.Unlock()
	if s.onDropTopic != nil {
		s.onDropTopic(topic)
	}
}

// expire forgets producers idle on a partition for longer than
// producer.id.expiration.ms.
func (s *ProducerSequences) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked(func(_ producerKey, e *producerRecord) bool { return now.Sub(e.LastWrite) >= s.expiration })
}

// dropLocked forgets the entries drop selects, in one synced batch.
func (s *ProducerSequences) dropLocked(drop func(producerKey, *producerRecord) bool) {
	b := s.db.NewBatch()
	defer b.Close()
	for k, e := range s.entries {
		if drop(k, e) {
			delete(s.entries, k)
			_ = b.Delete(k.bytes(), nil)
		}
	}
	if b.Empty() {
		return
	}
	if err := b.Commit(pebble.Sync); err != nil {
		s.logger.Error("forget producer sequences", zap.Error(err))
	}
}

// InitProducerID serves InitProducerId v0-4 for idempotent producers: every
// call gets a new producer id at epoch 0, as Kafka answers a request without
// a transactional id. Transactions are not supported.
func (c *GroupCoordinator) InitProducerID(_ context.Context, req *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp
	}
	id, err := c.producers.allocate()
	if err != nil {
		c.logger.Error("allocate producer id", zap.Error(err))
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}

// dropTopicOffsets forgets every group's committed offsets of a deleted topic.
func (c *GroupCoordinator) dropTopicOffsets(topic string) {
	for _, g := range c.allGroups() {
		g.mu.Lock()
		var drop []groupTP
		for tp := range g.offsets {
			if tp.topic == topic {
				drop = append(drop, tp)
			}
		}
		if len(drop) > 0 {
			b := c.db.NewBatch()
			for _, tp := range drop {
				_ = b.Delete(offsetKey(g.name, tp.topic, tp.partition), nil)
				delete(g.offsets, tp)
			}
			if err := b.Commit(pebble.Sync); err != nil {
				c.logger.Error("drop offsets of deleted topic", zap.String("group", g.name), zap.Error(err))
			}
			_ = b.Close()
		}
		g.mu.Unlock()
	}
}
