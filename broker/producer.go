package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/log"
)

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

// ProducerSequences is the idempotent producer check: it hands out
// producer ids (the counter in pebble) and judges each idempotent batch
// against the producer's last batches, which the partition's log keeps
// (log.Log.Producer). The log rebuilds them at open from its own batches,
// so they are exactly what is stored: a retry after any crash is answered
// as a duplicate, and no separate write or fsync per batch is needed.
type ProducerSequences struct {
	db         *pebble.DB
	disk       *diskSpace // nil allows every write
	logger     *zap.Logger
	now        func() time.Time
	expiration time.Duration

	// onDropTopic also forgets the committed offsets of a deleted topic
	// (the coordinator's), since the broker tells only this type.
	onDropTopic func(topic string)

	mu   sync.Mutex
	next int64 // next producer id; persisted before it is handed out
}

func newProducerSequences(db *pebble.DB, expiration time.Duration, logger *zap.Logger, now func() time.Time) (*ProducerSequences, error) {
	s := &ProducerSequences{db: db, logger: logger, now: now, expiration: expiration, next: 1}
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
	return s, s.dropSequenceRecords()
}

// dropSequenceRecords deletes the per-partition sequence records earlier
// versions kept under producer/seq/: the logs hold that state now.
func (s *ProducerSequences) dropSequenceRecords() error {
	lo, hi := []byte(producerSeqPrefix), keyPrefixEnd([]byte(producerSeqPrefix))
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	any := it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil || !any {
		return err
	}
	return s.db.DeleteRange(lo, hi, pebble.Sync)
}

// allocate hands out a new producer id, persisting the counter first so
// that no id is ever handed out twice, even across a crash.
func (s *ProducerSequences) allocate() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.next
	if err := setMeta(s.disk, s.db, []byte(producerNextKey), binary.BigEndian.AppendUint64(nil, uint64(id+1))); err != nil {
		return 0, err
	}
	s.next = id + 1
	return id, nil
}

// Check decides whether an idempotent batch b may be appended to a
// partition whose log knows st of the producer (known false: nothing).
// The caller holds the partition's write lock from Check through the write.
//
// It returns dup, the batch's original place, when b is one of the last
// five batches the producer appended (a retry: acknowledge it with dup's
// offsets, write nothing); kerr.OutOfOrderSequenceNumber when b's sequence
// does not follow the last; kerr.InvalidProducerEpoch when b's epoch is
// older than the producer's (Produce always answers INVALID_PRODUCER_EPOCH:
// PRODUCER_FENCED is for transactional APIs, and produce clients before
// KIP-588 do not know it). A batch without a producer id (-1) always passes.
func (s *ProducerSequences) Check(b ProducerBatch, st log.ProducerState, known bool) (dup log.ProducerBatch, isDup bool, err error) {
	switch {
	case b.ProducerID < 0 || !known:
		// KIP-360: an unknown producer (new, or expired) may start
		// at any sequence.
		return dup, false, nil
	case b.Epoch < st.Epoch:
		return dup, false, kerr.InvalidProducerEpoch
	case b.Epoch > st.Epoch:
		if b.BaseSequence != 0 {
			return dup, false, kerr.OutOfOrderSequenceNumber
		}
		return dup, false, nil
	}
	last := b.lastSequence()
	for _, w := range st.Batches {
		if w.FirstSeq == b.BaseSequence && w.LastSeq == last {
			return w, true, nil
		}
	}
	if n := len(st.Batches); n > 0 {
		prev := st.Batches[n-1].LastSeq
		if !(b.BaseSequence == prev+1 || (prev == math.MaxInt32 && b.BaseSequence == 0)) {
			return dup, false, kerr.OutOfOrderSequenceNumber
		}
	}
	return dup, false, nil
}

// IdleBefore is the expiry horizon: a producer with no write on a partition
// since is forgotten there (producer.id.expiration.ms).
func (s *ProducerSequences) IdleBefore() time.Time { return s.now().Add(-s.expiration) }

// DropTopic forgets the groups' committed offsets of a deleted topic, so
// that a topic created again under the name starts clean. Its producers'
// state went with its logs.
func (s *ProducerSequences) DropTopic(topic string) {
	if s.onDropTopic != nil {
		s.onDropTopic(topic)
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
