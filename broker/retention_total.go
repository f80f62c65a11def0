package broker

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/log"
)

// Retention over the whole data directory (issue 13). retention.ms and
// retention.bytes bound one partition; a survey writes two topics a night,
// each with its partitions, so neither keeps the disk from filling. The
// broker-wide bound log.retention.total.bytes does: when the partition logs
// together (log and index files) exceed it, the sealed segment whose newest
// batch is oldest, over every topic and partition, is deleted first, and so
// on until they fit. Oldest first keeps tonight's data to the last. A
// partition's active segment whose newest batch is over a day old (a past
// night's topic, idle until segment.ms would seal it) takes its place in
// that order: it is sealed, then deleted. A newer active segment is never
// deleted.
//
// Its default, 0, derives the bound at every check from the file system:
// the logs may take nine tenths of the space open to them (what they hold
// plus what is free to this process), less the log.dir.free.min.bytes
// mark, whatever else (the archive, the packager's history, other
// programs) takes the rest. The base is that space rather than the file
// system's size, which counts blocks reserved for root and others' files:
// a tenth of the size could exceed all that is free and empty the logs.
// Retention thus deletes the oldest night before produce is refused for
// space, and out of the box the broker never fills its disk by itself.
// Because the archive may write a night's tarball in minutes, a derived
// bound is checked every totalCheckEvery as well as at every retention
// check; the check reads sizes held in memory and one statfs.
const (
	// DefaultRetentionTotalBytes (0) derives the bound from the file system.
	DefaultRetentionTotalBytes = 0
	// totalHeadroomShare: the derived bound keeps 1/totalHeadroomShare of
	// the space open to the logs free above the mark.
	totalHeadroomShare = 10
	// totalCheckEvery is how often a derived bound is checked between
	// retention checks.
	totalCheckEvery = 10 * time.Second
	// recentData is how new a deleted segment's newest batch may be before
	// the deletion is logged as a warning (the disk holds less than a
	// night), and how old an active segment's must be for it to be sealed
	// and deleted: tonight's topics are written, a day-old one is done.
	recentData = 24 * time.Hour
)

// Reasons of ztfbroker_log_retention_deleted_*_total.
const (
	reasonTime       = "time"        // retention.ms
	reasonSize       = "size"        // retention.bytes
	reasonTotalBytes = "total_bytes" // log.retention.total.bytes
)

// retentionState is what retention counts and remembers between passes.
type retentionState struct {
	deletedBytes    *prometheus.CounterVec
	deletedSegments *prometheus.CounterVec
	// pass serializes the total-bytes passes (the retention loop's two
	// tickers, a caller of EnforceRetention): two at once would each
	// delete the whole overage.
	pass sync.Mutex

	mu sync.Mutex
	// stuck: the last pass could not get under the bound (only active
	// segments left), so the warning is logged once per episode.
	stuck bool
}

func newRetentionState() *retentionState {
	r := &retentionState{
		deletedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztfbroker_log_retention_deleted_bytes_total",
			Help: "Bytes of segments (log and index files) deleted by retention, by reason: time (retention.ms), " +
				"size (retention.bytes), total_bytes (log.retention.total.bytes, over every partition).",
		}, []string{"reason"}),
		deletedSegments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztfbroker_log_retention_deleted_segments_total",
			Help: "Segments deleted by retention, by reason (as ztfbroker_log_retention_deleted_bytes_total).",
		}, []string{"reason"}),
	}
	for _, reason := range []string{reasonTime, reasonSize, reasonTotalBytes} {
		r.deletedBytes.WithLabelValues(reason)
		r.deletedSegments.WithLabelValues(reason)
	}
	return r
}

func (r *retentionState) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.deletedBytes, r.deletedSegments}
}

func (r *retentionState) count(reason string, infos []log.SegmentInfo) {
	var n int64
	for _, s := range infos {
		n += s.Bytes
	}
	r.deletedBytes.WithLabelValues(reason).Add(float64(n))
	r.deletedSegments.WithLabelValues(reason).Add(float64(len(infos)))
}

// derivedTotalBytes is the bound of log.retention.total.bytes 0: of the
// space open to the logs (used, what they hold, plus free), all but a tenth
// and the free-space mark.
func derivedTotalBytes(used, free, mark int64) int64 {
	open := used + max(free, 0)
	return max(0, open-open/totalHeadroomShare-max(mark, 0))
}

// totalBound is the bound in effect now, or -1 for none.
func (b *Broker) totalBound(used int64) int64 {
	switch n := b.cfg.RetentionTotalBytes; {
	case n > 0:
		return n
	case n < 0:
		return -1
	}
	_, mark, _ := b.disk.check()
	free, _, err := statfs(b.cfg.DataDir)
	if err != nil {
		b.logger.Warn("log.retention.total.bytes: statfs of the data directory failed; no total bound this pass",
			zap.String("dir", b.cfg.DataDir), zap.Error(err))
		return -1
	}
	return derivedTotalBytes(used, free, mark)
}

// partitionSegments is one partition's segments as a retention pass saw
// them, and how many of its oldest the pass deletes.
type partitionSegments struct {
	p      *partition
	segs   []log.SegmentInfo
	doomed int
}

// next is the partition's oldest segment not yet doomed that may go: a
// sealed one, or the active one when it holds batches all older than
// idleBefore (Unix ms).
func (ps *partitionSegments) next(idleBefore int64) (log.SegmentInfo, bool) {
	if ps.doomed >= len(ps.segs) {
		return log.SegmentInfo{}, false
	}
	s := ps.segs[ps.doomed]
	if s.Active && (s.Bytes == 0 || s.MaxTimestamp >= idleBefore) {
		return log.SegmentInfo{}, false
	}
	return s, true
}

// enforceTotalBytes deletes the oldest segments over every partition (a
// sealed one, or an active one idle for a day) until the logs fit
// log.retention.total.bytes; it returns the number deleted.
func (b *Broker) enforceTotalBytes() int {
	b.retention.pass.Lock()
	defer b.retention.pass.Unlock()
	var all []*partitionSegments
	var used int64
	for _, p := range b.allPartitions() {
		segs := p.log.SegmentInfos()
		for _, s := range segs {
			used += s.Bytes
		}
		all = append(all, &partitionSegments{p: p, segs: segs})
	}
	bound := b.totalBound(used)
	r := b.retention
	if bound < 0 || used <= bound {
		r.setStuck(false)
		return 0
	}

	// Oldest first by newest batch timestamp, over the heads of every
	// partition's segments (a log can lose only a prefix).
	now := b.now()
	idleBefore := now.Add(-recentData).UnixMilli()
	over := used - bound
	for over > 0 {
		var pick *partitionSegments
		var oldest log.SegmentInfo
		for _, ps := range all {
			if s, ok := ps.next(idleBefore); ok && (pick == nil || s.MaxTimestamp < oldest.MaxTimestamp) {
				pick, oldest = ps, s
			}
		}
		if pick == nil {
			break
		}
		pick.doomed++
		over -= oldest.Bytes
	}

	deleted := 0
	for _, ps := range all {
		if ps.doomed == 0 {
			continue
		}
		var end int64
		if ps.doomed < len(ps.segs) {
			end = ps.segs[ps.doomed].Base
		} else {
			// The idle active segment goes too: seal it first. If a
			// write came meanwhile, it stays and the rest goes.
			end = ps.segs[len(ps.segs)-1].Base
			next, err := ps.p.log.SealIdle(idleBefore)
			if err != nil && !errors.Is(err, log.ErrClosed) {
				b.logger.Error("retention: seal an idle segment", zap.String("topic", ps.p.topic), zap.Int32("partition", ps.p.index), zap.Error(err))
			}
			if next >= 0 {
				end = next
			}
		}
		infos, err := ps.p.log.DeleteSegmentsBefore(end)
		if errors.Is(err, log.ErrClosed) {
			continue // its topic was deleted meanwhile
		}
		r.count(reasonTotalBytes, infos)
		deleted += len(infos)
		if err != nil {
			b.logger.Error("retention", zap.String("topic", ps.p.topic), zap.Int32("partition", ps.p.index), zap.Error(err))
		}
		if len(infos) == 0 {
			continue
		}
		var n int64
		for _, s := range infos {
			n += s.Bytes
		}
		newest := infos[len(infos)-1].MaxTimestamp
		fields := []zap.Field{zap.String("topic", ps.p.topic), zap.Int32("partition", ps.p.index),
			zap.String("reason", "log.retention.total.bytes"), zap.Int("segments", len(infos)), zap.Int64("bytes", n),
			zap.Time("newest_timestamp", time.UnixMilli(newest)), zap.Int64("log_start_offset", ps.p.log.LogStartOffset()),
			zap.Int64("logs_bytes", used), zap.Int64("log.retention.total.bytes", bound)}
		if now.Sub(time.UnixMilli(newest)) < recentData {
			b.logger.Warn("retention deleted segments less than a day old to keep the logs under log.retention.total.bytes: "+
				"the disk holds less than a night; see Disk sizing in the README", fields...)
		} else {
			b.logger.Info("retention deleted segments", fields...)
		}
	}
	if over > 0 && r.setStuck(true) {
		b.logger.Warn("partition logs over log.retention.total.bytes with only active segments of the last day left; "+
			"lower segment.bytes, or give the data directory more space",
			zap.Int64("logs_bytes", used), zap.Int64("over_bytes", over), zap.Int64("log.retention.total.bytes", bound))
	} else if over <= 0 {
		r.setStuck(false)
	}
	return deleted
}

// setStuck records whether the bound could not be met and says whether
// that is new.
func (r *retentionState) setStuck(stuck bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := r.stuck != stuck
	r.stuck = stuck
	return changed
}
