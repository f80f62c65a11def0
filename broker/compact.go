package broker

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/log"
)

// Compacted topics (cleanup.policy=compact, issue 17). One goroutine per
// broker, Kafka's log cleaner with one thread: every CleanerInterval it
// cleans, dirtiest first, each compacted partition whose dirty ratio
// (bytes not yet cleaned over the bytes it may clean: sealed segments past
// min.compaction.lag.ms) is at least the topic's min.cleanable.dirty.ratio,
// whose dirty records are older than max.compaction.lag.ms, or whose
// tombstones have reached their delete horizon. The work is
// log.Clean's (log/compact.go); the broker bounds it: the key map by
// CleanerMapBytes (a log with more keys is cleaned in passes) and the disk
// by the free space above log.dir.free.min.bytes (a group of segments is
// rewritten only when its size fits, since the old files go after the new
// ones are in place).
const (
	// DefaultCleanerMapBytes is the key map's bound when serve does not
	// derive one: 16 MiB, some 200,000 keys of 16 bytes per pass.
	DefaultCleanerMapBytes   = 16 << 20
	defaultCleanerInterval   = 15 * time.Second
	defaultDeleteRetention   = 24 * time.Hour // Kafka's delete.retention.ms
	defaultMinCleanableRatio = 0.5            // Kafka's min.cleanable.dirty.ratio
)

// cleanerMetrics are the cleaner's, by topic.
type cleanerMetrics struct {
	bytes   *prometheus.CounterVec
	removed *prometheus.CounterVec
	last    *prometheus.GaugeVec
	refused prometheus.Counter
	mu      sync.Mutex // one clean at a time (the loop, or a caller of CleanCompacted)
}

func newCleanerMetrics() *cleanerMetrics {
	return &cleanerMetrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztfbroker_log_cleaner_bytes_total",
			Help: "Bytes of compacted topics' segments the log cleaner read and rewrote.",
		}, []string{"topic"}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztfbroker_log_cleaner_records_removed_total",
			Help: "Records the log cleaner removed: superseded by a later record of their key, without a key, or tombstones past delete.retention.ms.",
		}, []string{"topic"}),
		last: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ztfbroker_log_cleaner_last_clean_timestamp_seconds",
			Help: "When the log cleaner last finished cleaning a partition of the topic (Unix seconds).",
		}, []string{"topic"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztfbroker_log_cleaner_refused_disk_total",
			Help: "Cleans put off because the free space above log.dir.free.min.bytes was less than the segments to rewrite.",
		}),
	}
}

func (m *cleanerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.bytes, m.removed, m.last, m.refused}
}

func (b *Broker) cleanerLoop() {
	t := time.NewTicker(b.cfg.CleanerInterval)
	defer t.Stop()
	for {
		select {
		case <-b.quit:
			return
		case <-t.C:
			b.CleanCompacted()
		}
	}
}

// CleanCompacted runs the log cleaner once over every compacted partition
// due for it, dirtiest first, and returns how many it cleaned.
func (b *Broker) CleanCompacted() int {
	b.cleaner.mu.Lock()
	defer b.cleaner.mu.Unlock()
	type due struct {
		p     *partition
		cfg   topicConfig
		ratio float64
	}
	var todo []due
	for _, p := range b.allPartitions() {
		t, err := b.lookup(p.topic)
		if err != nil || !t.cfg.log.Cleanup.Compacts() {
			continue
		}
		clean, dirty, err := p.log.Cleanable(t.cfg.log.MinCompactionLag)
		if err != nil {
			continue
		}
		ratio := 0.0
		if clean+dirty > 0 {
			ratio = float64(dirty) / float64(clean+dirty)
		}
		lag := t.cfg.log.MaxCompactionLag
		overdue := lag > 0 && dirty > 0 && b.now().Sub(time.UnixMilli(p.log.DirtySince())) >= lag
		if (dirty > 0 && ratio >= t.cfg.log.MinCleanableDirtyRatio) || overdue || p.log.TombstonesDue() {
			todo = append(todo, due{p, t.cfg, ratio})
		}
	}
	slices.SortStableFunc(todo, func(a, b due) int {
		switch {
		case a.ratio > b.ratio:
			return -1
		case a.ratio < b.ratio:
			return 1
		}
		return 0
	})
	mapBytes := b.cfg.CleanerMapBytes
	if mapBytes <= 0 {
		mapBytes = DefaultCleanerMapBytes
	}
	n := 0
	for _, d := range todo {
		select {
		case <-b.quit:
			return n
		default:
		}
		start := time.Now()
		st, err := d.p.log.Clean(log.CleanConfig{MapBytes: mapBytes, DeleteRetention: d.cfg.log.DeleteRetention,
			MinCompactionLag: d.cfg.log.MinCompactionLag, Room: b.cleanRoom, Stop: b.quit})
		b.cleaner.bytes.WithLabelValues(d.p.topic).Add(float64(st.BytesRead))
		b.cleaner.removed.WithLabelValues(d.p.topic).Add(float64(st.RecordsRemoved))
		fields := []zap.Field{zap.String("topic", d.p.topic), zap.Int32("partition", d.p.index),
			zap.Float64("dirty_ratio", d.ratio), zap.Int("passes", st.Passes), zap.Int("segments_read", st.SegmentsRead),
			zap.Int("segments_written", st.SegmentsWritten), zap.Int64("bytes_read", st.BytesRead),
			zap.Int64("bytes_written", st.BytesWritten), zap.Int64("records_removed", st.RecordsRemoved),
			zap.Int64("tombstones_removed", st.Tombstones), zap.Duration("took", time.Since(start))}
		switch {
		case errors.Is(err, log.ErrNoRoomToClean):
			b.cleaner.refused.Inc()
			b.logger.Warn("log cleaner put off: not enough free disk", append(fields, zap.Error(err))...)
			continue
		case errors.Is(err, log.ErrCleanStopped):
			return n // shutting down
		case errors.Is(err, log.ErrClosed):
			continue // its topic was deleted meanwhile
		case err != nil:
			b.logger.Error("log cleaner", append(fields, zap.Error(err))...)
			continue
		}
		b.cleaner.last.WithLabelValues(d.p.topic).Set(float64(b.now().UnixMilli()) / 1000)
		b.logger.Info("log cleaned", fields...)
		n++
	}
	return n
}

// checkKeys refuses, as Kafka does, a record without a key on a compacted
// topic: the cleaner would remove it. The batches were validated, so this
// second walk over their records finds no bad framing.
func checkKeys(batches []checkedBatch, tc *topicConfig) error {
	if !tc.log.Cleanup.Compacts() {
		return nil
	}
	for _, bt := range batches {
		var keyless int64 = -1
		err := bt.scanRecords(func(r record) bool {
			if r.nullKey {
				keyless = r.offset - bt.baseOffset()
				return false
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("%w: %w", err, kerr.CorruptMessage)
		}
		if keyless >= 0 {
			return fmt.Errorf("record %d of a batch has no key: a compacted topic (cleanup.policy=compact) cannot accept it: %w",
				keyless, kerr.InvalidRecord)
		}
	}
	return nil
}

// cleanRoom is what a clean may write: the free space above the
// log.dir.free.min.bytes mark (unbounded when statfs fails: the writes
// themselves will say).
func (b *Broker) cleanRoom() (int64, error) {
	free, mark, _ := b.space().check()
	if free < 0 {
		return math.MaxInt64, nil
	}
	return free - mark, nil
}
