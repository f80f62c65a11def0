package log

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrFlushFixed refuses a Reconfigure that changes the flush policy or
// interval: the flusher goroutine and WaitDurable read them without a lock
// for the log's lifetime, so they change only when the log is opened again.
var ErrFlushFixed = errors.New("log: the flush policy is fixed while the log is open")

// Reconfigure applies cfg to the open log: segment.bytes and segment.ms from
// the next append (and retention's roll check), retention.ms and
// retention.bytes and cleanup.policy from the next retention pass, index.interval.bytes and the
// preallocation allowance from the next append. Flush and FlushInterval
// must be unchanged (ErrFlushFixed), and so must LeaderEpoch.
//
// Each field is written under every lock its readers hold (retMu, writeMu,
// mu), one field at a time, so lock-free readers of the others (the
// scrubber's LeaderEpoch, WaitDurable's Flush) never race.
func (l *Log) Reconfigure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("log config: %w", err)
	}
	cfg = cfg.withDefaults()
	if cfg.Flush != l.cfg.Flush || (cfg.Flush == FlushInterval && cfg.FlushInterval != l.cfg.FlushInterval) {
		return ErrFlushFixed
	}
	if cfg.LeaderEpoch != l.cfg.LeaderEpoch {
		return errors.New("log: the leader epoch is fixed while the log is open")
	}
	l.retMu.Lock()
	defer l.retMu.Unlock()
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.cfg.SegmentBytes = cfg.SegmentBytes
	l.cfg.SegmentAge = cfg.SegmentAge
	l.cfg.RetentionAge = cfg.RetentionAge
	l.cfg.RetentionBytes = cfg.RetentionBytes
	l.cfg.IndexIntervalBytes = cfg.IndexIntervalBytes
	l.cfg.PreallocateBytes = cfg.PreallocateBytes
	l.cfg.Cleanup = cfg.Cleanup
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
