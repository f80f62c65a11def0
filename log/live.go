package log

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Reconfigure applies cfg to the open log: segment.bytes and segment.ms from
// the next append (and retention's roll check), retention.ms,
// retention.bytes and cleanup.policy from the next retention pass,
// index.interval.bytes and the preallocation allowance from the next append,
// and the flush policy and interval at once (the flusher starts over; from
// FlushAlways to FlushInterval, what is written becomes visible without
// waiting for its fsync, as it would have under FlushInterval). LeaderEpoch
// must be unchanged.
//
// Each field is written under every lock its readers hold (retMu, writeMu,
// mu), one field at a time, so lock-free readers of the others (the
// scrubber's LeaderEpoch) never race.
func (l *Log) Reconfigure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("log config: %w", err)
	}
	cfg = cfg.withDefaults()
	if cfg.LeaderEpoch != l.cfg.LeaderEpoch {
		return errors.New("log: the leader epoch is fixed while the log is open")
	}
	l.retMu.Lock()
	defer l.retMu.Unlock()
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	reflush := cfg.Flush != l.cfg.Flush || cfg.FlushInterval != l.cfg.FlushInterval
	l.cfg.Flush, l.cfg.FlushInterval = cfg.Flush, cfg.FlushInterval
	if cfg.Flush == FlushInterval {
		l.advanceHWLocked(l.written, l.cur, l.writtenPos)
	}
	l.cfg.SegmentBytes = cfg.SegmentBytes
	l.cfg.SegmentAge = cfg.SegmentAge
	l.cfg.RetentionAge = cfg.RetentionAge
	l.cfg.RetentionBytes = cfg.RetentionBytes
	l.cfg.IndexIntervalBytes = cfg.IndexIntervalBytes
	l.cfg.PreallocateBytes = cfg.PreallocateBytes
	l.cfg.Cleanup = cfg.Cleanup
	l.mu.Unlock()
	if reflush {
		select {
		case l.reflush <- struct{}{}:
		default:
		}
	}
	return nil
}

// ProducerStates returns what the log knows of every idempotent producer it
// remembers, by producer id (DescribeProducers).
func (l *Log) ProducerStates() map[int64]ProducerState {
	t := l.producers
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[int64]ProducerState, len(t.m))
	for id, e := range t.m {
		out[id] = ProducerState{Epoch: e.epoch, Batches: slices.Clone(e.batches), LastWrite: time.UnixMilli(e.lastWrite)}
	}
	return out
}
