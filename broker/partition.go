package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/log"
)

// listOffsetsReadBytes is how much of the log a timestamp lookup reads at a
// time while looking for the first record at or after the timestamp.
const listOffsetsReadBytes = 1 << 20

// Produce appends the record batches of one partition, as sent, and returns
// once they are durable per the topic's flush.ms. The batches are checked
// (v2 only, framing, CRC, max.message.bytes, no transactions) before any is
// written, and their partitionLeaderEpoch is set to 0 in place in records.
func (b *Broker) Produce(ctx context.Context, topic string, partition int32, records []byte) (baseOffset, logStartOffset int64, err error) {
	base, start, wait, err := b.ProduceDeferred(ctx, topic, partition, records)
	if err != nil {
		return -1, -1, err
	}
	if err := wait(); err != nil {
		return -1, -1, err
	}
	return base, start, nil
}

// ProduceDeferred is Produce split in two (protocol.DeferredProducer): the
// batches are checked and written now, and wait returns once they are
// durable per the flush policy, so that the listener can read the next
// pipelined request meanwhile.
func (b *Broker) ProduceDeferred(ctx context.Context, topic string, partition int32, records []byte) (baseOffset, logStartOffset int64, wait func() error, err error) {
	if topic == consumerOffsetsTopic {
		return -1, -1, nil, errInternalTopic(topic)
	}
	t, err := b.lookup(topic)
	if err != nil {
		return -1, -1, nil, err
	}
	if partition < 0 || int(partition) >= len(t.partitions) {
		return -1, -1, nil, kerr.UnknownTopicOrPartition
	}
	p := t.partitions[partition]
	if p.offline != nil {
		return -1, -1, nil, p.offlineError()
	}
	capture := b.tapCaptureFor(topic) // nil unless a Tap wants the topic
	batches, err := splitBatchesTap(records, t.cfg.maxMessageBytes, capture)
	if err != nil {
		return -1, -1, nil, err
	}
	capture.noteBatches(batches)
	if err := checkTimestamps(batches, &t.cfg, b.now().UnixMilli()); err != nil {
		b.logger.Warn("produce refused", zap.String("topic", topic), zap.Int32("partition", partition), zap.Error(err))
		return -1, -1, nil, err
	}
	if err := checkKeys(batches, &t.cfg); err != nil {
		b.logger.Debug("produce refused", zap.String("topic", topic), zap.Int32("partition", partition), zap.Error(err))
		return -1, -1, nil, err
	}
	if err := ctx.Err(); err != nil {
		return -1, -1, nil, err
	}
	// Refused before anything is written while the disk is under the
	// mark (diskspace.go); once it is not, a partition a failed fsync made
	// read-only is reopened first.
	sp := b.space()
	if err := sp.refuse(); err != nil {
		return -1, -1, nil, fmt.Errorf("%s-%d: %w", p.topic, p.index, err)
	}
	b.reopenIfDue(sp, p)
	var check ProducerCheck
	if c := b.producers.Load(); c != nil {
		check = *c
	}
	first, end, err := p.write(batches, check)
	if err != nil {
		capture.missed(topic, partition)
		if log.Transient(err) {
			sp.noteFull()
		}
		return -1, -1, nil, err
	}
	wait = func() error {
		// Producer sequences need no fsync of their own: the log
		// rebuilds them from its batches at open, so the batches'
		// fsync covers them.
		if err := p.log.WaitDurable(end); err != nil {
			// Closed (deleted, shutting down) while waiting, the
			// batches may never be durable: storageError says so
			// without blaming the disk.
			capture.missed(topic, partition)
			return b.storageError(p, "wait durable", err)
		}
		capture.appended(topic, partition, first, end)
		return nil
	}
	return first, p.log.LogStartOffset(), wait, nil
}

// ProducerCheck is the idempotent producer check (issues 4 and 11), which
// *ProducerSequences implements. The producers' last batches are the
// partition log's (log.Log.Producer), noted as each batch is written and
// rebuilt from the batches at open; Check runs under the partition's write
// lock, so that checking a batch's sequence and writing it are one step per
// partition. Only batches with a producer id (>= 0) are passed.
type ProducerCheck interface {
	// Check runs for each batch after the request is split and checked,
	// before the batch is written, with what the log knows of its
	// producer. isDup reports a retry of a batch already written: it is
	// not written again and dup is its original place. An error
	// (kerr.OutOfOrderSequenceNumber, kerr.InvalidProducerEpoch) refuses
	// the request's remaining batches.
	Check(b ProducerBatch, st log.ProducerState, known bool) (dup log.ProducerBatch, isDup bool, err error)
	// IdleBefore is the expiry horizon: the log forgets producers whose
	// last write is older (producer.id.expiration.ms).
	IdleBefore() time.Time
	// DropTopic is told of a deleted topic (its logs, and with them its
	// producers' state, are removed by the broker).
	DropTopic(topic string)
}

// SetProducerCheck installs the idempotent producer check; nil removes it.
// Batches are written unchecked when none is installed.
func (b *Broker) SetProducerCheck(c ProducerCheck) {
	// The coordinator, opened with the broker, checks offset commits
	// against the broker's disk-space mark: set it before serving.
	b.space()
	if c == nil {
		b.producers.Store(nil)
		return
	}
	b.producers.Store(&c)
}

// write appends batches under the partition's write lock and returns the
// first batch's base offset and the offset after the last batch (a
// duplicate's original offsets count: its first write may still await fsync).
func (p *partition) write(batches []checkedBatch, check ProducerCheck) (first, end int64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return -1, -1, kerr.UnknownTopicOrPartition
	}
	first, end = -1, -1
	if check != nil {
		p.log.ExpireProducers(check.IdleBefore()) // O(1) unless one expired
	}
	for i, bt := range batches {
		if check != nil && bt.producerID() >= 0 {
			pb := producerBatchOf(bt.batch)
			st, known := p.log.Producer(pb.ProducerID)
			dup, isDup, err := check.Check(pb, st, known)
			if err != nil {
				return -1, -1, err
			}
			if isDup {
				if i == 0 {
					first = dup.BaseOffset
				}
				end = max(end, dup.LastOffset+1)
				continue
			}
		}
		info, err := p.log.WriteChecked(bt.checked)
		if err != nil {
			if i > 0 {
				err = fmt.Errorf("after %d of %d batches: %w", i, len(batches), err)
			}
			return -1, -1, p.writeError(err)
		}
		if i == 0 {
			first = info.BaseOffset
		}
		end = info.LastOffset + 1
		p.end = end
	}
	return first, end, nil
}

// writeError maps a log.Write failure. Batches were checked before the
// write, so what is left is mostly the store itself: read-only after a failed
// write or fsync, or closed by a deletion or shutdown.
func (p *partition) writeError(err error) error {
	var magic *log.MagicError
	switch {
	case p.removed:
		return kerr.UnknownTopicOrPartition
	case errors.As(err, &magic):
		return fmt.Errorf("%v: %w", err, kerr.UnsupportedForMessageFormat)
	case errors.Is(err, log.ErrInvalidBatch):
		return fmt.Errorf("%v: %w", err, kerr.CorruptMessage)
	case errors.Is(err, log.ErrClosed):
		return fmt.Errorf("%s-%d: %v: %w", p.topic, p.index, err, kerr.NotLeaderForPartition)
	}
	return fmt.Errorf("%s-%d: %v: %w", p.topic, p.index, err, kerr.KafkaStorageError)
}

// closedError answers a call that met a closed log: its topic was deleted
// (UNKNOWN_TOPIC_OR_PARTITION) or the broker is shutting down
// (NOT_LEADER_FOR_PARTITION, which clients retry elsewhere or later).
func (p *partition) closedError(err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.writeError(err)
}

// storageError logs err against the partition and returns it as
// KAFKA_STORAGE_ERROR, naming the segment file and offset of corruption.
func (b *Broker) storageError(p *partition, op string, err error, extra ...zap.Field) error {
	if errors.Is(err, log.ErrClosed) {
		return p.closedError(err)
	}
	fields := []zap.Field{zap.String("topic", p.topic), zap.Int32("partition", p.index), zap.Error(err)}
	fields = append(fields, corruptionFields(err)...)
	fields = append(fields, extra...)
	// A consumer stuck on damage fetches it again every poll: one error
	// line per damaged spot, debug lines after.
	var ce *log.CorruptionError
	if errors.As(err, &ce) {
		if _, seen := b.corruptSeen.LoadOrStore(fmt.Sprintf("%s@%d", ce.Segment, ce.Offset), true); seen {
			b.logger.Debug(op, fields...)
			return fmt.Errorf("%s-%d: %s: %v: %w", p.topic, p.index, op, err, kerr.KafkaStorageError)
		}
	}
	b.logger.Error(op, fields...)
	return fmt.Errorf("%s-%d: %s: %v: %w", p.topic, p.index, op, err, kerr.KafkaStorageError)
}

// Fetch appends to dst whole batches starting with the one that contains
// offset, up to maxBytes (at least one batch when any is available). A batch
// whose CRC fails is never returned: the partition answers
// KAFKA_STORAGE_ERROR and the file and offset are logged. The CRC is
// checked once per batch in this process, or again once the scrub found
// damage there (log/scrub.go).
func (b *Broker) Fetch(ctx context.Context, topic string, partition int32, offset int64, maxBytes int, dst []byte) (records []byte, highWatermark, logStartOffset int64, err error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return dst, -1, -1, err
	}
	ls, hw := p.log.LogStartOffset(), p.log.HighWatermark()
	if offset < ls || offset > hw {
		return dst, hw, ls, fmt.Errorf("offset %d outside [%d, %d]: %w", offset, ls, hw, kerr.OffsetOutOfRange)
	}
	if offset == hw {
		return dst, hw, ls, nil
	}
	out, err := p.log.Read(offset, maxBytes, dst)
	if err != nil {
		if ls2 := p.log.LogStartOffset(); offset < ls2 || errors.Is(err, log.ErrOffsetOutOfRange) {
			// DeleteRecords or retention moved the start meanwhile.
			return dst, p.log.HighWatermark(), ls2, fmt.Errorf("offset %d below log start %d: %w", offset, ls2, kerr.OffsetOutOfRange)
		}
		return dst, hw, ls, b.storageError(p, "fetch", err, zap.Int64("fetch_offset", offset))
	}
	// The high watermark only grows: read after the data, it covers it.
	return out, p.log.HighWatermark(), p.log.LogStartOffset(), nil
}

// Changed is closed when the partition's high watermark next moves.
func (b *Broker) Changed(ctx context.Context, topic string, partition int32) (<-chan struct{}, error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return nil, err
	}
	return p.log.Changed(), nil
}

// Offsets returns the log start offset and the high watermark.
func (b *Broker) Offsets(ctx context.Context, topic string, partition int32) (logStartOffset, highWatermark int64, err error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return -1, -1, err
	}
	return p.log.LogStartOffset(), p.log.HighWatermark(), nil
}

// ListOffsets timestamp specs.
const (
	listLatest       = -1
	listEarliest     = -2
	listMaxTimestamp = -3
	listEarliestTier = -4 // KIP-405 earliest local: every offset is local here
)

// ListOffset resolves a ListOffsets timestamp: -1 the high watermark, -2 the
// log start offset, -3 the record with the largest timestamp, else the first
// record whose timestamp is >= ts (-1, -1 when there is none).
func (b *Broker) ListOffset(ctx context.Context, topic string, partition int32, ts int64) (offset, timestamp int64, err error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return -1, -1, err
	}
	switch {
	case ts == listLatest:
		return p.log.HighWatermark(), -1, nil
	case ts == listEarliest || ts == listEarliestTier:
		return p.log.LogStartOffset(), -1, nil
	case ts == listMaxTimestamp:
		return b.maxTimestamp(p)
	case ts < 0:
		return -1, -1, fmt.Errorf("timestamp %d: %w", ts, kerr.InvalidRequest)
	}
	base, _, ok, err := p.log.OffsetForTime(ts)
	if err != nil {
		return -1, -1, b.storageError(p, "list offsets", err)
	}
	if !ok {
		return -1, -1, nil
	}
	return b.firstAtOrAfter(p, base, ts)
}

// firstAtOrAfter reads batches from the one containing from onward and
// returns the first record at or after the log start whose timestamp >= ts.
// A batch is read record by record, decompressed as a stream, and left at
// the first record that answers: a batch that decompresses to hundreds of
// MiB costs a decoder's window, not its size.
func (b *Broker) firstAtOrAfter(p *partition, from, ts int64) (int64, int64, error) {
	for {
		ls, hw := p.log.LogStartOffset(), p.log.HighWatermark()
		from = max(from, ls)
		if from >= hw {
			return -1, -1, nil
		}
		data, err := p.log.Read(from, listOffsetsReadBytes, nil)
		if err != nil {
			return -1, -1, b.storageError(p, "list offsets", err)
		}
		if len(data) == 0 {
			return -1, -1, nil
		}
		for {
			bt, rest, ok := nextBatch(data)
			if !ok {
				break
			}
			data = rest
			if bt.maxTimestamp() < ts || bt.lastOffset() < from {
				from = max(from, bt.lastOffset()+1)
				continue
			}
			found := record{offset: -1}
			err := bt.scanRecords(func(r record) bool {
				if r.offset >= from && r.timestamp >= ts {
					found = r
					return false
				}
				return true
			})
			if err != nil {
				return -1, -1, b.storageError(p, "list offsets: decode batch", err, zap.Int64("batch_offset", bt.baseOffset()))
			}
			if found.offset >= 0 {
				return found.offset, found.timestamp, nil
			}
			from = max(from, bt.lastOffset()+1)
		}
	}
}

// maxTimestamp answers ListOffsets -3: the offset of the (first) record with
// the largest timestamp, as Kafka has since KAFKA-16310, not the last offset
// of its batch.
func (b *Broker) maxTimestamp(p *partition) (int64, int64, error) {
	ts, last := p.log.MaxTimestamp()
	if last < 0 {
		return -1, -1, nil
	}
	data, err := p.log.Read(max(last, p.log.LogStartOffset()), 1, nil)
	if err != nil {
		return -1, -1, b.storageError(p, "list offsets", err)
	}
	if bt, _, ok := nextBatch(data); ok {
		found := int64(-1)
		err := bt.scanRecords(func(r record) bool {
			if r.timestamp == ts {
				found = r.offset
				return false
			}
			return true
		})
		if err != nil {
			return -1, -1, b.storageError(p, "list offsets: decode batch", err, zap.Int64("batch_offset", bt.baseOffset()))
		}
		if found >= 0 {
			return found, ts, nil
		}
	}
	return last, ts, nil
}

// DeleteRecords moves the log start offset up to before (-1: the high
// watermark) and deletes the segments wholly below it.
func (b *Broker) DeleteRecords(ctx context.Context, topic string, partition int32, before int64) (lowWatermark int64, err error) {
	p, err := b.partition(topic, partition)
	if err != nil {
		return -1, err
	}
	hw := p.log.HighWatermark()
	if before == -1 {
		before = hw
	}
	if before < 0 || before > hw {
		return -1, fmt.Errorf("offset %d outside [0, %d]: %w", before, hw, kerr.OffsetOutOfRange)
	}
	ls, err := p.log.DeleteRecords(before)
	if err != nil {
		return -1, b.storageError(p, "delete records", err)
	}
	b.logger.Info("records deleted", zap.String("topic", p.topic), zap.Int32("partition", p.index),
		zap.Int64("before", before), zap.Int64("log_start_offset", ls))
	return ls, nil
}

// corruptionFields names the segment file and byte position of damage.
func corruptionFields(err error) []zap.Field {
	var ce *log.CorruptionError
	if !errors.As(err, &ce) {
		return nil
	}
	return []zap.Field{zap.String("segment", ce.Segment), zap.Int64("position", ce.Offset)}
}
