package log

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// indexSyncEvery bounds how much of the active segment recovery must scan
// after a crash under FlushAlways: the indexes are fsynced at most this
// often by the flusher (and on every roll and close).
const indexSyncEvery = time.Second

// Log is one topic-partition's log.
//
// Who owns what: writeMu serialises writers and owns the active segment's
// file tail and indexes' pending entries; mu guards the segment list and
// the offsets below (held briefly, never across I/O except in roll's list
// swap); sealed segments are read without locks, pinned by their refs; the
// flusher goroutine is the only one that fsyncs during normal operation.
type Log struct {
	dir  string
	cfg  Config
	opts Options
	fs   FS
	lg   *zap.Logger

	writeMu sync.Mutex
	flushMu sync.Mutex // one fsync round at a time
	retMu   sync.Mutex // one retention or DeleteRecords at a time

	mu         sync.RWMutex
	segs       []*segment // by base offset; the last one is cur
	cur        *segment   // the active segment; changes under writeMu and mu
	logStart   int64
	written    int64 // next offset to assign
	writtenPos int64 // end of the active segment
	durable    int64 // every offset below is fsynced (in the segment or the journal)
	durablePos int64 // where durable ends in the segment it was reached in
	// Under a journal, durable may run ahead of what the segment files
	// hold fsynced: segDurable (and segDurablePos in the active segment)
	// is that, and jq the batches past it (journaled.go).
	segDurable    int64
	segDurablePos int64
	jq            []journalEntry
	owed          int    // entries of jq the journal did not take: a segment fsync is owed
	jSynced       uint64 // the journal's records below this are durable
	journaling    bool   // the last batch went to the journal (no preallocation)
	journalDirty  bool   // in the journal's dirty list (under the journal's mu)
	hw            int64  // high watermark
	hwSeg         *segment
	hwPos         int64 // end of visible bytes in hwSeg
	changed       chan struct{}
	changedTaken  bool // changed was handed out by Changed
	durableCh     chan struct{}
	werr          error
	closed        bool
	lastIdxSync   time.Time
	producers     *producerTable // idempotent producers' last batches (producers.go)
	cleaner       cleanerState   // compaction (compact.go)
	// What preallocation (prealloc.go) goes by: the bytes written in the
	// current and the previous preallocRateWindow, and the bytes made
	// durable per data fsync, a moving average.
	rateStart         time.Time
	rateCur, ratePrev int64
	syncBytes         int64
	// Warming (warm.go): when the writer last wrote (since born, on the
	// monotonic clock), how many times it wrote again after a pause of
	// warmGap (under writeMu), and the bytes read ahead so far.
	born      time.Time
	lastWrite atomic.Int64
	warmGap   time.Duration
	gaps      int
	warmed    atomic.Int64

	// alwaysCRC makes reads check every batch's CRC, verified or not:
	// the benchmark's before.
	alwaysCRC bool

	kick chan struct{}
	// reflush tells the flusher that Reconfigure changed the flush policy
	// or interval.
	reflush chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
}

// Open opens or creates the log in dir (a `<topic>-<partition>` folder),
// recovering the tail of the active segment.
func Open(dir string, cfg Config, opts Options) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("log config: %w", err)
	}
	l := &Log{
		dir:       dir,
		cfg:       cfg.withDefaults(),
		opts:      opts.withDefaults(),
		changed:   make(chan struct{}),
		durableCh: make(chan struct{}),
		kick:      make(chan struct{}, 1),
		reflush:   make(chan struct{}, 1),
		stop:      make(chan struct{}),
		born:      time.Now(),
		warmGap:   warmBurstGap,
	}
	l.fs, l.lg = l.opts.FS, l.opts.Logger.With(zap.String("log", dir))
	var err error
	if j := l.opts.Journal; j != nil {
		err = j.replay(l.fs, dir, l.opts.JournalKey, l.lg)
	}
	if err == nil {
		err = l.recover()
	}
	if err == nil {
		err = l.loadProducers()
	}
	if err != nil {
		for _, s := range l.segs {
			s.release()
		}
		return nil, err
	}
	active := l.segs[len(l.segs)-1]
	l.cur = active
	l.writtenPos = active.size
	l.durable, l.hw, l.hwSeg, l.hwPos = l.written, l.written, active, active.size
	l.durablePos = active.size
	l.segDurable, l.segDurablePos = l.written, active.size
	l.lastIdxSync = time.Now()
	l.wg.Add(1)
	go l.flushLoop()
	if l.opts.Scrub != nil {
		l.wg.Add(1)
		go l.scrubLoop()
	}
	return l, nil
}

// Append validates one v2 record batch (CRC, magic), assigns its offsets by
// patching baseOffset in place, writes it verbatim and, under FlushAlways,
// waits until it is durable. Equivalent to Write then WaitDurable.
func (l *Log) Append(batch []byte) (AppendInfo, error) {
	info, err := l.Write(batch)
	if err != nil {
		return info, err
	}
	return info, l.WaitDurable(info.LastOffset + 1)
}

// Write is Append without waiting for durability, so that a caller can hold
// its own lock (idempotent producer sequences) only around the write.
// It patches baseOffset and partitionLeaderEpoch of batch in place.
func (l *Log) Write(batch []byte) (AppendInfo, error) {
	c, err := CheckBatch(batch)
	if err != nil {
		return AppendInfo{}, err
	}
	return l.WriteChecked(c)
}

// Checked is a record batch that passed CheckBatch: framing, magic 2 and
// CRC. Only CheckBatch makes one, so WriteChecked never stores an unchecked
// batch.
type Checked struct {
	b []byte
	h batchHeader
}

// CheckBatch validates an incoming batch as Write does. A caller that checks
// a whole request before writing any of it (the broker refuses a produce
// request with one bad batch) writes the results with WriteChecked, so the
// CRC is computed once per batch.
func CheckBatch(batch []byte) (Checked, error) {
	h, err := validateIncoming(batch)
	if err != nil {
		return Checked{}, err
	}
	return Checked{b: batch, h: h}, nil
}

// WriteChecked is Write for a batch already checked. Only baseOffset and
// partitionLeaderEpoch, which the CRC does not cover, may change between
// CheckBatch and WriteChecked.
func (l *Log) WriteChecked(c Checked) (AppendInfo, error) {
	batch, h := c.b, c.h
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.RLock()
	err, closed := l.werr, l.closed
	l.mu.RUnlock()
	if closed {
		return AppendInfo{}, ErrClosed
	}
	if err != nil {
		return AppendInfo{}, err
	}
	s := l.cur
	if s.size > 0 && (s.size+h.Size > l.cfg.SegmentBytes || l.written+int64(h.LastOffsetDelta)-s.base >= maxSegmentOffsets ||
		(s.firstTs >= 0 && h.MaxTimestamp-s.firstTs >= l.cfg.SegmentAge.Milliseconds())) {
		if err := l.rollLocked(); err != nil {
			return AppendInfo{}, err
		}
		s = l.cur
	}
	putInt64(batch[batchBaseOffsetPos:], l.written)
	putInt32(batch[batchLeaderEpochPos:], l.cfg.LeaderEpoch)
	h.BaseOffset = l.written
	pos := s.size
	l.mu.RLock()
	filling := s.fill != nil && pos+h.Size > s.fillFrom
	l.mu.RUnlock()
	if filling {
		l.waitPreallocLocked(s) // zeros are being written there (prealloc.go)
	}
	if n, err := s.log.WriteAt(batch, pos); err != nil {
		return AppendInfo{}, l.undoWrite(s, pos, n, fmt.Errorf("write segment %d: %w", s.base, err))
	}
	// CheckBatch checked the CRC of these very bytes: reads may skip it.
	s.advanceVerified(pos, pos+h.Size)
	l.producers.noteBatch(batch, l.opts.Now)
	jseq := l.journalAppend(s, pos, batch)
	l.mu.Lock()
	if s.size == 0 {
		s.created = l.opts.Now()
	}
	s.noteBatch(h)
	s.size += h.Size
	s.fileEnd = max(s.fileEnd, s.size)
	l.written = h.nextOffset()
	l.writtenPos = s.size
	l.noteJournaledLocked(s, jseq)
	if l.cfg.Flush == FlushInterval {
		l.advanceHWLocked(l.written, s, s.size)
	}
	l.noteWrittenLocked(h.Size)
	l.startPreallocLocked()
	now := time.Since(l.born)
	if last := time.Duration(l.lastWrite.Load()); last > 0 && now-last >= l.warmGap {
		l.gaps++ // written again after a pause: bursts, which warming pays for (warm.go)
	}
	if l.warmWantLocked(s) {
		s.acquire()
		l.wg.Add(1)
		go l.warm(s, s.fill, s.warmAbort)
	}
	l.mu.Unlock()
	l.lastWrite.Store(int64(now))
	if err := s.addIndexEntries(h, pos, l.cfg.IndexIntervalBytes); err != nil {
		if !Transient(err) {
			return AppendInfo{}, l.fail(err)
		}
		// The batch is in the segment and will be fsynced: failing it
		// now would have the producer write it twice. The entries stay
		// buffered and are written at the next index sync.
		l.keepIndexesInStep(s, h)
	}
	if l.cfg.Flush == FlushAlways && jseq == 0 {
		// Start the fsync now: the high watermark must move even for
		// writers that never wait (acks=0). A journaled batch's fsync
		// is the journal's, already started.
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return AppendInfo{BaseOffset: h.BaseOffset, LastOffset: h.lastOffset(), MaxTimestamp: h.MaxTimestamp, Records: h.Records}, nil
}

// segmentAged says whether segment.ms has passed on the clock since the
// first write into s. Write also rolls, as Kafka does, when a batch's
// timestamp is segment.ms past the segment's first batch.
func (l *Log) segmentAged(s *segment) bool {
	return s.size > 0 && l.opts.Now().Sub(s.created) >= l.cfg.SegmentAge
}

// advanceHWLocked moves the high watermark forward and wakes long polls.
func (l *Log) advanceHWLocked(hw int64, s *segment, pos int64) {
	if hw <= l.hw {
		return
	}
	l.hw, l.hwSeg, l.hwPos = hw, s, pos
	if l.changedTaken {
		// Only a channel someone holds needs replacing: saves an
		// allocation per append when nobody long-polls.
		close(l.changed)
		l.changed = make(chan struct{})
		l.changedTaken = false
	}
}

// advanceDurableLocked records that offsets below d are fsynced.
func (l *Log) advanceDurableLocked(d int64, s *segment, pos int64) {
	if d > l.durable {
		l.durable, l.durablePos = d, pos
		if l.cfg.Flush == FlushAlways {
			l.advanceHWLocked(d, s, pos)
		}
	}
	close(l.durableCh)
	l.durableCh = make(chan struct{})
}

// fail makes the log read-only until Reopen: an fsync that failed may have
// dropped dirty pages, so retrying it could report success for lost data.
func (l *Log) fail(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.werr == nil {
		if j := l.opts.Journal; j != nil {
			j.noteFailed()
		}
		l.werr = fmt.Errorf("%w: %w", ErrReadOnly, err)
		l.lg.Error("log is read-only", zap.Error(err))
		close(l.durableCh)
		l.durableCh = make(chan struct{})
	}
	return l.werr
}

// undoWrite answers a failed write of the batch at pos, of which n bytes
// may have reached the file. A full disk or a lack of descriptors refuses
// only this batch: the file is cut back to pos (a partial batch would
// otherwise sit where the next one goes, and be found by recovery) and the
// cut fsynced; the log stays writable. Anything else, or an undo that
// fails, makes the log read-only.
func (l *Log) undoWrite(s *segment, pos int64, n int, err error) error {
	if !Transient(err) {
		return l.fail(err)
	}
	if n > 0 {
		l.waitPreallocLocked(s)
		if terr := s.log.Truncate(pos); terr != nil {
			return l.fail(fmt.Errorf("%w; undo: truncate segment %d: %w", err, s.base, terr))
		}
		l.mu.Lock()
		s.fileEnd, s.holeEnd = pos, pos // the preallocated zeros went with the cut
		l.mu.Unlock()
		// This fsync also covers batches written before and not yet
		// flushed: if it fails, so does their durability.
		if serr := l.syncSegment(s); serr != nil {
			return l.fail(fmt.Errorf("%w; undo: sync segment %d: %w", err, s.base, serr))
		}
	}
	return err
}

// keepIndexesInStep repairs what addIndexEntries leaves when an index
// buffer could not be written: the failed add kept its entry buffered but
// returned before the time index entry and the interval reset. Recovery
// pairs the two indexes entry by entry.
func (l *Log) keepIndexesInStep(s *segment, h batchHeader) {
	if s.idx.len() > s.tidx.len() {
		// Buffered even when the write fails; that error is the one
		// already handled.
		_ = s.tidx.add(encodeTimeEntry(timeEntry{Timestamp: s.maxTs, Rel: uint32(h.lastOffset() - s.base)}))
	}
	s.bytesSinceIndex = int(h.Size)
}

// indexFailed answers an index write or fsync that failed while sealing a
// segment. The indexes are checked against the batches whenever recovery
// uses them, so a full disk there costs a rescan, never a record: the roll
// is refused and retried by the next write. Other failures are sticky.
func (l *Log) indexFailed(err error) error {
	if Transient(err) {
		return err
	}
	return l.fail(err)
}

// Reopen makes a log that a failed fsync turned read-only writable again,
// as a restart would, without closing it: the active segment is cut back
// to its last durable end (after a failed fsync the page cache may hold
// bytes that never reached the disk, and recovery would take them for
// good ones), that cut is fsynced, the journal's records of the log are
// replayed over it (what it acknowledged past the cut comes back), and the
// log is recovered from its files as Open does. Offsets past the durable
// end are gone, as after a crash;
// under flush.ms > 0 the high watermark may move back. Reads keep going
// meanwhile. A log that is not read-only is left alone. When Reopen fails
// (the disk is still full), the log stays read-only and Reopen may be
// called again.
func (l *Log) Reopen() error {
	l.retMu.Lock()
	defer l.retMu.Unlock()
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.RLock()
	werr, closed, cur, keep := l.werr, l.closed, l.cur, l.segDurablePos
	if l.segDurable <= cur.base {
		keep = 0
	}
	l.mu.RUnlock()
	switch {
	case closed:
		return ErrClosed
	case werr == nil:
		return nil
	}
	l.waitPreallocLocked(cur)
	if err := cur.log.Truncate(keep); err != nil {
		return fmt.Errorf("reopen: truncate segment %d: %w", cur.base, err)
	}
	if err := cur.log.Sync(); err != nil {
		return fmt.Errorf("reopen: sync segment %d: %w", cur.base, err)
	}
	// What the journal took past the cut was acknowledged: it goes back.
	if j := l.opts.Journal; j != nil {
		if err := j.replayLive(l.fs, l.dir, l.opts.JournalKey, l.lg); err != nil {
			return fmt.Errorf("reopen: %w", err)
		}
	}
	fresh := &Log{dir: l.dir, cfg: l.cfg, opts: l.opts, fs: l.fs, lg: l.lg}
	err := fresh.recover()
	if err == nil {
		err = fresh.loadProducers()
	}
	if err == nil {
		// Roll and recovery sync the folder only when they changed it;
		// after a failed fsync nothing can be assumed.
		if err = l.fs.SyncDir(l.dir); err != nil {
			err = fmt.Errorf("sync dir: %w", err)
		}
	}
	if err != nil {
		for _, s := range fresh.segs {
			s.release()
		}
		return fmt.Errorf("reopen: %w", err)
	}
	active := fresh.segs[len(fresh.segs)-1]
	l.mu.Lock()
	old := l.segs
	l.segs, l.cur, l.logStart, l.written, l.writtenPos = fresh.segs, active, fresh.logStart, fresh.written, active.size
	l.durable, l.durablePos = fresh.written, active.size
	l.segDurable, l.segDurablePos, l.jq, l.owed = fresh.written, active.size, nil, 0
	l.hw, l.hwSeg, l.hwPos = fresh.written, active, active.size
	l.werr = nil
	l.lastIdxSync = time.Now()
	l.mu.Unlock()
	// Producer and ExpireProducers read the table without mu: keep the
	// table, replace its contents.
	t := l.producers
	t.mu.Lock()
	t.m, t.oldest = fresh.producers.m, fresh.producers.oldest
	t.mu.Unlock()
	for _, s := range old {
		s.release()
	}
	l.lg.Info("log writable again", zap.Int64("log_end_offset", fresh.written))
	return nil
}

// rollLocked seals the active segment and starts a new one. Order matters
// for recovery: the old segment's data, seal entry and indexes are fsynced
// before the new file exists, so a segment with a successor is complete.
func (l *Log) rollLocked() error {
	old := l.cur
	// A sealed segment ends at its last batch: its preallocated zeros go,
	// and the fsync below makes the new size durable with the data.
	if err := l.trimPreallocLocked(old); err != nil {
		return l.fail(err)
	}
	if err := l.syncSegment(old); err != nil {
		return l.fail(fmt.Errorf("sync segment %d: %w", old.base, err))
	}
	if !old.sealAdded {
		seal := timeEntry{Timestamp: old.maxTs, Rel: uint32(old.maxTsOffset - old.base)}
		if err := old.tidx.add(encodeTimeEntry(seal)); err != nil {
			return l.indexFailed(err)
		}
		old.sealAdded = true
	}
	if err := old.idx.sync(); err != nil {
		return l.indexFailed(err)
	}
	if err := old.tidx.sync(); err != nil {
		return l.indexFailed(err)
	}
	// Every batch below l.written is durable now; the directory fsync
	// below makes the snapshot's rename durable too.
	l.snapshotProducersLocked(l.written)
	s, err := createSegment(l.fs, l.opts.FileCache, l.dir, l.written, l.cfg.IndexIntervalBytes)
	if err != nil {
		if Transient(err) {
			// Nothing of the next batch is written and the old
			// segment is complete: the next write tries the roll again.
			return err
		}
		return l.fail(err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		s.release()
		return l.fail(fmt.Errorf("sync dir: %w", err))
	}
	l.mu.Lock()
	l.segs = append(l.segs, s)
	l.cur = s
	l.writtenPos = 0
	l.segSyncedLocked(l.written, 0)
	l.advanceDurableLocked(l.written, old, old.size)
	l.mu.Unlock()
	old.seal()
	l.lg.Debug("rolled segment", zap.Int64("sealed", old.base), zap.Int64("base", s.base))
	return nil
}

// WaitDurable blocks until every offset below end is durable per the flush
// policy (immediately under FlushInterval). An end past what was written
// waits for what was written.
func (l *Log) WaitDurable(end int64) error {
	l.mu.RLock()
	always := l.cfg.Flush == FlushAlways // Reconfigure changes it under mu
	l.mu.RUnlock()
	if !always {
		return l.Err()
	}
	for {
		l.mu.RLock()
		durable, werr, closed, ch := l.durable, l.werr, l.closed, l.durableCh
		end = min(end, l.written) // nothing past the written end can become durable
		segOwed, journaled := l.opts.Journal == nil || l.owed > 0, len(l.jq) > l.owed
		l.mu.RUnlock()
		switch {
		case durable >= end:
			return nil
		case werr != nil:
			return werr
		case closed:
			return ErrClosed
		}
		if segOwed {
			select {
			case l.kick <- struct{}{}:
			default:
			}
		}
		if journaled {
			l.opts.Journal.poke()
		}
		<-ch
	}
}

// flushLoop is the one goroutine that fsyncs: on demand under FlushAlways
// (every waiter that arrives during an fsync shares the next one), on a
// ticker under FlushInterval.
func (l *Log) flushLoop() {
	defer l.wg.Done()
	var ticker *time.Ticker
	var tick <-chan time.Time
	retick := func() {
		if ticker != nil {
			ticker.Stop()
			ticker, tick = nil, nil
		}
		l.mu.RLock()
		policy, every := l.cfg.Flush, l.cfg.FlushInterval
		l.mu.RUnlock()
		if policy == FlushInterval {
			ticker = time.NewTicker(every)
			tick = ticker.C
		}
	}
	retick()
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	for {
		select {
		case <-l.stop:
			return
		case <-l.kick:
			l.flush(false)
		case <-tick:
			l.flush(false)
		case <-l.reflush:
			retick()
		}
	}
}

// flush fsyncs the active segment up to what is written now and, when due
// or forced, its indexes.
func (l *Log) flush(indexes bool) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.RLock()
	s, target, pos, werr := l.cur, l.written, l.writtenPos, l.werr
	pending := target > l.segDurable
	synced := pos - l.segDurablePos // bytes this fsync makes durable
	if synced < 0 || l.segDurable <= s.base {
		synced = pos // the last fsync was in the segment before
	}
	indexes = indexes || time.Since(l.lastIdxSync) >= indexSyncEvery
	s.acquire()
	l.mu.RUnlock()
	defer s.release()
	if werr != nil {
		return werr
	}
	if pending {
		if err := l.syncSegment(s); err != nil {
			return l.fail(fmt.Errorf("sync segment %d: %w", s.base, err))
		}
	}
	if indexes {
		err := s.idx.sync()
		if err == nil {
			err = s.tidx.sync()
		}
		if err != nil && !Transient(err) {
			return l.fail(err)
		}
		if err != nil {
			// The data is durable; the index entries stay buffered
			// and are written at the next index sync, a second on.
			l.lg.Warn("index sync postponed", zap.Error(err))
		}
	}
	l.mu.Lock()
	if indexes {
		l.lastIdxSync = time.Now()
	}
	if pending {
		l.syncBytes += (synced - l.syncBytes) / 8
		l.segSyncedLocked(target, pos)
	}
	l.advanceDurableLocked(target, s, pos)
	l.mu.Unlock()
	return nil
}

// syncSegment fdatasyncs a segment file and times it.
func (l *Log) syncSegment(s *segment) error {
	start := time.Now()
	err := s.log.Sync()
	if m := l.opts.Metrics; m != nil && m.FsyncSeconds != nil {
		m.FsyncSeconds.Observe(time.Since(start).Seconds())
	}
	return err
}

// Sync fsyncs everything written so far, indexes included.
func (l *Log) Sync() error {
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return l.flush(true)
}

// Changed returns a channel closed the next time the high watermark moves
// (or the log closes), for long-polling fetches.
func (l *Log) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.changedTaken = true
	}
	return l.changed
}

// LogStartOffset is the first offset consumers may fetch.
func (l *Log) LogStartOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.logStart
}

// HighWatermark is the next offset visible to consumers: durable data under
// FlushAlways, written data under FlushInterval.
func (l *Log) HighWatermark() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.hw
}

// Err returns the sticky error that made the log read-only, or nil.
func (l *Log) Err() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.werr
}

// Size is the number of bytes of batches in all segments (retention.bytes
// counts these); the zeros preallocated ahead of the writer are not
// counted (Preallocated), though the file system counts them as used.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var n int64
	for _, s := range l.segs {
		n += s.size
	}
	return n
}

// Segments is the number of segments, the active one included.
func (l *Log) Segments() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.segs)
}

// Close fsyncs what was written, leaves the clean-shutdown marker and
// closes the files. It is safe to call twice; the second call returns nil.
func (l *Log) Close() error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop) // also stops a running preallocation
	l.wg.Wait()

	var err error
	l.mu.RLock()
	werr := l.werr
	l.mu.RUnlock()
	if werr == nil {
		// The clean-shutdown marker records the file's size: cut the
		// preallocated zeros first, and let the fsync cover the cut.
		err = l.trimPreallocLocked(l.cur)
		if err == nil {
			err = l.cur.syncAll()
		}
		if err != nil {
			err = l.fail(err)
		}
	}
	clean := err == nil && werr == nil
	l.mu.Lock()
	if clean {
		l.advanceDurableLocked(l.written, l.cur, l.writtenPos)
	} else {
		close(l.durableCh)
		l.durableCh = make(chan struct{})
	}
	close(l.changed)
	segs := l.segs
	l.segs = nil
	l.mu.Unlock()
	if clean {
		// A snapshot at the log end spares the next Open a replay; the
		// marker's directory fsync covers its rename.
		l.snapshotProducersLocked(l.written)
		// Everything is fsynced, indexes included: say so, so that the
		// next Open trusts the active segment instead of cutting it at
		// its first bad frame (after a clean close, that is disk damage).
		m, merr := l.cleanShutdownOf(l.cur)
		if merr == nil {
			merr = writeCleanShutdown(l.fs, l.dir, m)
		}
		if merr != nil {
			err = fmt.Errorf("close: %w", merr)
		}
	}
	for _, s := range segs {
		s.release()
	}
	return err
}

// Remove closes the log and deletes its folder (topic deletion), durably:
// a crash does not bring the folder back.
func (l *Log) Remove() error {
	l.Close()
	if err := l.fs.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("remove log: %w", err)
	}
	if err := l.fs.SyncDir(filepath.Dir(filepath.Clean(l.dir))); err != nil {
		return fmt.Errorf("remove log: sync dir: %w", err)
	}
	return nil
}
