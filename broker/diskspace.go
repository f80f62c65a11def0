package broker

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/log"
)

// Disk space (issue 11). Writes stop before the data directory's file
// system is full, not when it is: below log.dir.free.min.bytes of free
// space the broker refuses produce (KAFKA_STORAGE_ERROR, which clients
// retry), topic creation (KAFKA_STORAGE_ERROR) and offset commits
// (COORDINATOR_LOAD_IN_PROGRESS, retried; Kafka answers NOT_COORDINATOR,
// which sends clients back to FindCoordinator for the same broker), while
// reads, fetches and everything else go on. The mark leaves room for the
// metadata store: pebble treats a failed WAL or MANIFEST write as fatal
// (DB.Apply calls Logger.Fatalf on a commit error and its WAL writer's
// error is sticky), so the only safe pebble write error is the one that
// never happens. Writes resume by themselves once space is back above the
// mark; a partition that a failed fsync made read-only is reopened then.
//
// The free space is read (statfs) at most once a second, by whoever asks
// first (produce, commit, a metrics scrape), and at once after a write
// failed for a full disk: there is no goroutine to own.
const (
	// spaceCheckEvery bounds how stale the free space may be.
	spaceCheckEvery = time.Second
	// defaultFreeMinShare and defaultFreeMinCap make the default mark
	// (log.dir.free.min.bytes 0): 5% of the file system, at most 1 GiB.
	defaultFreeMinShare = 20
	defaultFreeMinCap   = 1 << 30
)

// diskSpace is the free space of one data directory's file system and
// whether writes are allowed there. Its methods are safe on a nil
// *diskSpace (metadata stores not opened by openMeta, as in tests): nil
// allows everything.
type diskSpace struct {
	dir    string
	logger *zap.Logger

	mu        sync.Mutex
	setting   int64 // log.dir.free.min.bytes as configured
	checked   time.Time
	free      int64 // bytes available to the broker's user
	total     int64
	low       bool  // under the mark at the last check
	metaErr   error // a fatal metadata write error: metadata writes need a restart
	reopening map[string]time.Time
}

// newDiskSpace watches the file system of dataDir with the mark setting
// (log.dir.free.min.bytes). The broker makes one and hands it to the group
// coordinator, so both see one state.
func newDiskSpace(dataDir string, setting int64, logger *zap.Logger) *diskSpace {
	return &diskSpace{dir: dataDir, logger: logger, setting: setting, reopening: map[string]time.Time{}}
}

// space is the broker's diskSpace.
func (b *Broker) space() *diskSpace { return b.disk }

// statfs returns the bytes available to this process and the size of the
// file system holding dir.
func statfs(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// markLocked is the free space below which writes are refused.
func (s *diskSpace) markLocked() int64 {
	switch {
	case s.setting > 0:
		return s.setting
	case s.setting < 0:
		return 0 // only a full disk refuses
	}
	return min(s.total/defaultFreeMinShare, defaultFreeMinCap)
}

// check refreshes the state when it is older than spaceCheckEvery and
// returns it; free is -1 when statfs fails (then writes are allowed: the
// writes themselves will say).
func (s *diskSpace) check() (free, mark int64, low bool) {
	if s == nil {
		return -1, 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Sub(s.checked) >= spaceCheckEvery {
		s.checked = now
		f, t, err := statfs(s.dir)
		if err != nil {
			s.free, s.total = -1, 0
			s.logger.Warn("statfs of the data directory failed", zap.String("dir", s.dir), zap.Error(err))
		} else {
			s.free, s.total = f, t
		}
		mark := s.markLocked()
		low := s.free >= 0 && (s.free < mark || s.free == 0)
		switch {
		case low && !s.low:
			s.logger.Warn("data directory free space under log.dir.free.min.bytes: produce, topic creation and offset commits refused until space is freed",
				zap.String("dir", s.dir), zap.Int64("free_bytes", s.free), zap.Int64("log.dir.free.min.bytes", mark))
		case !low && s.low:
			s.logger.Info("data directory free space back above log.dir.free.min.bytes: writes resume",
				zap.String("dir", s.dir), zap.Int64("free_bytes", s.free), zap.Int64("log.dir.free.min.bytes", mark))
		}
		s.low = low
	}
	return s.free, s.markLocked(), s.low
}

// noteFull is told of a write that failed for a full disk: the next check
// reads the free space again rather than trust a second-old figure.
func (s *diskSpace) noteFull() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.checked = time.Time{}
	s.mu.Unlock()
}

// errDiskFull says why a write was refused.
var errDiskFull = errors.New("data directory free space under log.dir.free.min.bytes")

// refuse returns why a write must not start now, or nil. The error wraps
// kerr.KafkaStorageError.
func (s *diskSpace) refuse() error {
	free, mark, low := s.check()
	if !low {
		return nil
	}
	return fmt.Errorf("%w (%s: %d bytes free, mark %d): %w", errDiskFull, s.dir, free, mark, kerr.KafkaStorageError)
}

// refuseMeta is refuse for metadata writes, which also stop for good after
// pebble reported a fatal write error (its WAL writer does not recover).
func (s *diskSpace) refuseMeta() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	merr := s.metaErr
	s.mu.Unlock()
	if merr != nil {
		return fmt.Errorf("metadata store failed a write, restart to recover: %v: %w", merr, kerr.KafkaStorageError)
	}
	return s.refuse()
}

// metaFailed records a fatal metadata write error.
func (s *diskSpace) metaFailed(err error) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.metaErr == nil {
		s.metaErr = err
	}
	s.mu.Unlock()
	s.noteFull()
}

// writable is the ztfbroker_log_dir_writable gauge: 1 while the broker
// takes writes.
func (s *diskSpace) writable() bool {
	return s.refuseMeta() == nil
}

// reopenDue rate-limits attempts to reopen a read-only partition to one
// a second.
func (s *diskSpace) reopenDue(p *partition) bool {
	if s == nil {
		return true
	}
	key := fmt.Sprintf("%s-%d", p.topic, p.index)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Sub(s.reopening[key]) < spaceCheckEvery {
		return false
	}
	s.reopening[key] = now
	return true
}

// reopenIfDue brings back a partition that a failed fsync made read-only,
// once the disk takes writes again (log.Log.Reopen: cut to the durable
// end, recovered). A failure leaves it read-only for the next try.
func (b *Broker) reopenIfDue(sp *diskSpace, p *partition) {
	if p.log.Err() == nil || !sp.reopenDue(p) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return
	}
	fields := []zap.Field{zap.String("topic", p.topic), zap.Int32("partition", p.index)}
	if err := p.log.Reopen(); err != nil {
		if log.Transient(err) {
			sp.noteFull()
		}
		b.logger.Warn("read-only partition not reopened yet", append(fields, zap.Error(err))...)
		return
	}
	p.end = p.log.HighWatermark()
	b.logger.Info("read-only partition reopened: writable again", append(fields, zap.Int64("log_end_offset", p.end))...)
}
