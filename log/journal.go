package log

// The journal: one write-ahead file shared by every log of a data
// directory, so that a Produce request that appends small batches to many
// partitions waits for one fdatasync, not one per partition (issue 14).
//
// # Files
//
// A folder `journal/` beside the partition folders:
//
//	journal/ring        records, written as a ring of RingBytes
//	journal/checkpoint  where replay starts (durable.WriteFile)
//
// Checkpoint, 28 bytes, big-endian:
//
//	+---------------+-----------+-----------+------------+
//	| ringBytes u64 | pos   u64 | seq   u64 | crc32c u32 |
//	+---------------+-----------+-----------+------------+
//	  0               8           16          24 (of [0,24))
//
// Record, at pos in the ring, journalHeader (52) bytes then the folder
// name and the batch:
//
//	+------------+----------+---------+----------+----------+-----------+
//	| crc32c u32 | len  u32 | seq u64 | kind u16 | dirLen   | key [16]  |
//	| of [4,len) | (all)    |         | 1 batch  |      u16 | topic id  |
//	|            |          |         | 2 wrap   |          |           |
//	+------------+----------+---------+----------+----------+-----------+
//	  0            4          8         16         18         20
//	+-------------+-------------+------------------+---------------------+
//	| segBase i64 | filePos i64 | dir (dirLen)     | batch bytes         |
//	+-------------+-------------+------------------+---------------------+
//	  36            44            52
//
// A batch record is a physical redo record: the bytes the log wrote at
// filePos of the segment `<segBase>.log` in the partition folder dir
// (its base name), whose topic id is key. Sequence numbers go up by one per
// record; a record is valid only with the sequence number expected next and
// a good CRC, so stale records of an earlier pass and a torn tail both end
// the scan. A record that does not fit before the ring's end goes to 0,
// after a wrap record when journalHeader bytes are left (else implicitly).
//
// # Protocol
//
// Under FlushAlways a log writes a small batch into its segment as before
// and then appends it here; the journal's flusher fdatasyncs the ring once
// for every record appended since its last round and tells each log whose
// records that covered, which then counts them durable. Segments are
// fsynced later: the ring is two halves, and when the writer leaves one,
// the checkpointer fsyncs every log that has records in it and moves the
// checkpoint past them (durably). The writer enters a half only once its
// last pass was checkpointed away; until then appends are refused and the
// logs fsync their segments themselves, as they do for large batches.
//
// # Recovery
//
// OpenJournal scans the ring from the checkpoint and indexes its records.
// Opening a log replays its records (same folder and topic id) into its
// active segment, in order, and fsyncs it, unless the log was closed
// cleanly; only records of the active segment (the highest base) are
// replayed, since a roll fsyncs the segment it seals. Then the log's
// ordinary recovery runs over what the replay wrote. Start, once every log
// has opened, moves the checkpoint to the end of the scan.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ztfbroker/ztfbroker/durable"
	"go.uber.org/zap"
)

const (
	journalHeader     = 52
	journalCheckpoint = 28
	journalKindBatch  = 1
	journalKindWrap   = 2
	// DefaultJournalBytes is the ring's default size.
	DefaultJournalBytes = 64 << 20
	// JournalMaxBatch is the largest batch the journal takes: a larger one
	// costs as much to write twice as its own fdatasync saves, so its log
	// fsyncs its segment for it.
	JournalMaxBatch = 256 << 10
	// MinJournalBytes is the smallest ring: it takes batches up to an
	// eighth of the ring, less a record's header and folder name.
	MinJournalBytes = 16 << 10
	// journalRetry is how long the checkpointer waits before fsyncing a
	// log again whose fsync failed (until Reopen or Close).
	journalRetry = time.Second
	// journalWindow is how long a log counts as writing beside others.
	journalWindow = 50 * time.Millisecond
	// journalFill is how far fill writes the ring ahead of the writer.
	journalFill = 4 << 20
)

var (
	// errJournalOff refuses an append: not started, broken, or the next
	// half not yet checkpointed. The log fsyncs its segment instead.
	errJournalOff = errors.New("journal: not taking records")
	// ErrJournalCorrupt is a checkpoint file that fails its CRC.
	ErrJournalCorrupt = errors.New("journal: corrupt checkpoint")
)

// JournalKey names a log in the journal: its topic's id, so that a topic
// deleted and created again under the same name gets none of the old
// topic's records.
type JournalKey [16]byte

// Journal is the write-ahead journal of one data directory (see the top
// of this file). It is safe for concurrent use.
type Journal struct {
	fs   FS
	dir  string
	ring int64 // bytes
	// maxBatch is the largest batch taken: JournalMaxBatch, or less in a
	// small ring, which a half must hold several records of.
	maxBatch int
	lg       *zap.Logger
	m        *Metrics
	f        File

	mu      sync.Mutex
	started bool
	// filled: the ring holds written blocks below this (zeros or
	// records), where a record's fdatasync is an overwrite (fill).
	filled  int64
	fillReq chan struct{}
	// The logs that wrote in this window of journalWindow and the last:
	// with one writer there is no fsync to share, and it is cheaper for
	// the log to fsync its own segment than to write its bytes twice.
	window     time.Time
	writers    map[*Log]struct{}
	wasWriters int
	solo       bool  // take a lone writer's records too (tests of the ring)
	broken     error // a write or fsync of the ring failed: no more records
	pos        int64 // where the next record goes
	seq        uint64
	half       int
	logsIn     [2]map[*Log]struct{} // logs with records in each half, this pass
	free       [2]bool              // the half's last pass is checkpointed away
	dirty      []*Log               // logs with records since the flusher's round
	buf        []byte
	// The checkpoint on disk: replay starts there.
	ckptPos int64
	ckptSeq uint64
	failing int // logs whose checkpoint fsync failed and is retried

	// Found by OpenJournal's scan, replayed by the logs as they open.
	found   map[journalFolder][]journalRecord
	scanEnd int64
	scanSeq uint64

	kick  chan struct{}
	tasks chan journalTask
	stop  chan struct{}
	wg    sync.WaitGroup
}

type journalFolder struct {
	key JournalKey
	dir string
}

type journalRecord struct {
	segBase, filePos int64
	at, n            int64 // the batch bytes in the ring
}

// journalTask is a half the writer left: fsync its logs, then checkpoint
// at (pos, seq), the first record after it.
type journalTask struct {
	half int
	logs []*Log
	pos  int64
	seq  uint64
}

// OpenJournal opens (or creates) the journal in dir and scans it for the
// records logs replay as they open. ringBytes is the ring's size from
// Start on; the scan uses the size the checkpoint recorded.
func OpenJournal(dir string, ringBytes int64, opts Options) (*Journal, error) {
	opts = opts.withDefaults()
	if ringBytes < MinJournalBytes {
		return nil, fmt.Errorf("journal: a ring of %d bytes is below the least, %d", ringBytes, MinJournalBytes)
	}
	j := &Journal{fs: opts.FS, dir: dir, ring: ringBytes, lg: opts.Logger.With(zap.String("journal", dir)), m: opts.Metrics,
		found: map[journalFolder][]journalRecord{}, kick: make(chan struct{}, 1), fillReq: make(chan struct{}, 1), tasks: make(chan journalTask, 2),
		stop: make(chan struct{})}
	j.maxBatch = min(JournalMaxBatch, int(ringBytes/8)-journalHeader-1024)
	if err := makeDirDurable(j.fs, dir); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	f, err := j.fs.OpenFile(filepath.Join(dir, "ring"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j.f = f
	// The ring's name is durable before any record in it is.
	if err := j.fs.SyncDir(dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: sync dir: %w", err)
	}
	ring, pos, seq, err := j.readCheckpoint()
	j.scanEnd, j.scanSeq = pos, seq
	if err == nil && ring > 0 {
		err = j.walk(ring, pos, seq, func(k journalFolder, r journalRecord) {
			j.found[k] = append(j.found[k], r)
		}, func(end int64, next uint64) { j.scanEnd, j.scanSeq = end, next })
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return j, nil
}

func (j *Journal) readCheckpoint() (ring, pos int64, seq uint64, err error) {
	name := filepath.Join(j.dir, "checkpoint")
	f, err := j.fs.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, 1, nil
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	b := make([]byte, journalCheckpoint)
	if n, err := f.ReadAt(b, 0); n < len(b) {
		return 0, 0, 0, fmt.Errorf("%w: %s: %d bytes: %v", ErrJournalCorrupt, name, n, err)
	}
	if crc32.Checksum(b[:24], castagnoli) != binary.BigEndian.Uint32(b[24:]) {
		return 0, 0, 0, fmt.Errorf("%w: %s: CRC mismatch", ErrJournalCorrupt, name)
	}
	ring, pos, seq = int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:])), binary.BigEndian.Uint64(b[16:])
	if ring < 2*journalHeader || pos < 0 || pos > ring {
		return 0, 0, 0, fmt.Errorf("%w: %s: position %d in a ring of %d", ErrJournalCorrupt, name, pos, ring)
	}
	return ring, pos, seq, nil
}

func (j *Journal) writeCheckpoint(ring, pos int64, seq uint64) error {
	b := make([]byte, journalCheckpoint)
	binary.BigEndian.PutUint64(b, uint64(ring))
	binary.BigEndian.PutUint64(b[8:], uint64(pos))
	binary.BigEndian.PutUint64(b[16:], seq)
	binary.BigEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	return durable.WriteFile(j.fs, filepath.Join(j.dir, "checkpoint"), b, 0o644)
}

// walk calls each for every valid batch record from (pos, seq) on, and
// at after each record with where the next one would go, until a record is
// missing, torn or of an earlier pass.
func (j *Journal) walk(ring, pos int64, seq uint64, each func(journalFolder, journalRecord), at func(int64, uint64)) error {
	h := make([]byte, journalHeader)
	var body []byte
	for range ring / journalHeader {
		if ring-pos < journalHeader {
			pos = 0
		}
		n, err := j.f.ReadAt(h, pos)
		if n < journalHeader {
			if err == nil || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("journal: read ring at %d: %w", pos, err)
		}
		size := int64(binary.BigEndian.Uint32(h[4:]))
		dirLen := int64(binary.BigEndian.Uint16(h[18:]))
		if binary.BigEndian.Uint64(h[8:]) != seq || size < journalHeader+dirLen || pos+size > ring {
			return nil
		}
		body = grow(body[:0], int(size-journalHeader))
		if n, err := j.f.ReadAt(body, pos+journalHeader); int64(n) < size-journalHeader {
			if err == nil || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("journal: read ring at %d: %w", pos, err)
		}
		crc := crc32.Update(crc32.Checksum(h[4:], castagnoli), castagnoli, body)
		if crc != binary.BigEndian.Uint32(h) {
			return nil
		}
		seq++
		switch binary.BigEndian.Uint16(h[16:]) {
		case journalKindWrap:
			pos = 0
		case journalKindBatch:
			var k journalFolder
			copy(k.key[:], h[20:36])
			k.dir = string(body[:dirLen])
			each(k, journalRecord{segBase: int64(binary.BigEndian.Uint64(h[36:])), filePos: int64(binary.BigEndian.Uint64(h[44:])),
				at: pos + journalHeader + dirLen, n: size - journalHeader - dirLen})
			pos += size
		default:
			return nil
		}
		at(pos, seq)
	}
	return nil
}

// replay writes the journal's records for the log in dir into its active
// segment and fsyncs it. A folder closed cleanly needs none.
func (j *Journal) replay(fsys FS, dir string, key JournalKey, lg *zap.Logger) error {
	j.mu.Lock()
	recs := j.found[journalFolder{key, filepath.Base(dir)}]
	j.mu.Unlock()
	return j.apply(fsys, dir, recs, lg)
}

// replayLive replays what the live ring holds for the log in dir, from the
// checkpoint on: Reopen's way back after a failed segment fsync.
func (j *Journal) replayLive(fsys FS, dir string, key JournalKey, lg *zap.Logger) error {
	j.mu.Lock()
	ring, pos, seq, started := j.ring, j.ckptPos, j.ckptSeq, j.started
	j.mu.Unlock()
	if !started {
		return j.replay(fsys, dir, key, lg)
	}
	var recs []journalRecord
	want := journalFolder{key, filepath.Base(dir)}
	err := j.walk(ring, pos, seq, func(k journalFolder, r journalRecord) {
		if k == want {
			recs = append(recs, r)
		}
	}, func(int64, uint64) {})
	if err != nil {
		return err
	}
	return j.apply(fsys, dir, recs, lg)
}

func (j *Journal) apply(fsys FS, dir string, recs []journalRecord, lg *zap.Logger) error {
	if len(recs) == 0 {
		return nil
	}
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return nil // no folder: nothing to replay into (a deleted topic)
	}
	active := int64(-1)
	for _, name := range names {
		if name == cleanShutdownFile {
			return nil
		}
		if base, ok := parseSegmentName(name); ok {
			active = max(active, base)
		}
	}
	if active < 0 {
		return nil
	}
	path := filepath.Join(dir, segmentName(active)+logSuffix)
	f, err := fsys.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("journal replay: %w", err)
	}
	defer f.Close()
	var buf []byte
	applied, bytes := 0, int64(0)
	for _, r := range recs {
		if r.segBase != active {
			continue
		}
		buf = grow(buf[:0], int(r.n))
		if n, err := j.f.ReadAt(buf, r.at); int64(n) < r.n {
			return fmt.Errorf("journal replay: read ring at %d: %w", r.at, err)
		}
		if _, err := f.WriteAt(buf, r.filePos); err != nil {
			return fmt.Errorf("journal replay: %s: %w", path, err)
		}
		applied++
		bytes += r.n
	}
	if applied == 0 {
		return nil
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("journal replay: sync %s: %w", path, err)
	}
	lg.Info("replayed the journal into the active segment", zap.String("segment", path),
		zap.Int("batches", applied), zap.Int64("bytes", bytes))
	return nil
}

// Start begins taking records, once every log with records in the ring has
// opened (and so replayed them): the checkpoint moves to the end of the
// scan. A ring of another size than the last one starts over at 0.
func (j *Journal) Start() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.started {
		return nil
	}
	pos, seq := j.scanEnd, j.scanSeq
	if pos > j.ring {
		pos = 0
	}
	if err := j.writeCheckpoint(j.ring, pos, seq); err != nil {
		return fmt.Errorf("journal: checkpoint: %w", err)
	}
	j.found = nil
	j.pos, j.seq, j.ckptPos, j.ckptSeq = pos, seq, pos, seq
	j.half = j.halfOf(pos)
	j.free = [2]bool{true, true}
	j.free[j.half] = false
	j.logsIn = [2]map[*Log]struct{}{{}, {}}
	j.started = true
	j.wg.Add(3)
	go j.flushLoop()
	go j.checkpointLoop()
	go j.fill()
	return nil
}

// fill writes the ring's first pass in fsynced zeros, journalFill bytes
// ahead of the writer, before records go there: the fdatasync of a record
// in blocks written before is an overwrite, while one in new blocks also
// writes their allocation and the file's size (3x slower on this VM's disk
// for 16 KiB records). Meanwhile the logs fsync their segments. An idle
// broker's ring stays one step long; a ring filled once stays so.
func (j *Journal) fill() {
	defer j.wg.Done()
	size, err := j.f.Size()
	if err == nil && size > j.ring {
		err = j.f.Truncate(j.ring) // a smaller ring than the last: give the space back
		size = j.ring
	}
	zero := make([]byte, 1<<20)
	for err == nil {
		j.mu.Lock()
		j.filled = size
		want := size < j.ring && size-j.pos < journalFill
		j.mu.Unlock()
		if !want {
			select {
			case <-j.stop:
				return
			case <-j.fillReq:
				continue
			}
		}
		to := min(size+journalFill, j.ring)
		for at := size; err == nil && at < to; at += int64(len(zero)) {
			_, err = j.f.WriteAt(zero[:min(int64(len(zero)), to-at)], at)
		}
		if err == nil {
			err = j.f.Sync()
		}
		if err == nil {
			size = to
		} else {
			// A full disk: the zeros go, not to hold space the logs need.
			j.f.Truncate(size)
		}
	}
	j.mu.Lock()
	j.breakLocked(fmt.Errorf("journal: fill ring: %w", err))
	j.mu.Unlock()
}

func (j *Journal) halfOf(pos int64) int {
	if pos < j.ring/2 {
		return 0
	}
	return 1
}

// append writes batch, which l wrote at filePos of its segment segBase,
// as a record, and returns its sequence number. errJournalOff means the
// log fsyncs the segment instead.
func (j *Journal) append(l *Log, segBase, filePos int64, batch []byte) (uint64, error) {
	dir := filepath.Base(l.dir)
	n := int64(journalHeader + len(dir) + len(batch))
	if len(batch) > j.maxBatch || len(dir) > 1024 {
		return 0, errJournalOff
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.started || j.broken != nil {
		return 0, errJournalOff
	}
	if now := time.Now(); now.Sub(j.window) >= journalWindow {
		j.wasWriters = len(j.writers)
		if now.Sub(j.window) >= 2*journalWindow {
			j.wasWriters = 0
		}
		j.writers, j.window = map[*Log]struct{}{}, now
	}
	j.writers[l] = struct{}{}
	if max(j.wasWriters, len(j.writers)) < 2 && !j.solo {
		return 0, errJournalOff // alone: no fsync to share
	}
	at, seq := j.pos, j.seq
	if j.filled < j.ring && at+n+journalFill/2 > j.filled {
		select {
		case j.fillReq <- struct{}{}:
		default:
		}
		if at+n > j.filled {
			return 0, errJournalOff
		}
	}
	switch {
	case at+n > j.ring: // to the start: the writer leaves half 1
		if !j.free[0] {
			return 0, errJournalOff
		}
		if j.ring-at >= journalHeader {
			if err := j.writeRecord(at, seq, journalKindWrap, JournalKey{}, "", 0, 0, nil); err != nil {
				return 0, err
			}
			seq++
		}
		at = 0
		j.leave(1, 0, seq)
	case j.halfOf(at+n-1) != j.half: // into half 1: the record counts in half 0
		if !j.free[1] {
			return 0, errJournalOff
		}
		j.logsIn[0][l] = struct{}{}
		defer j.leave(0, at+n, seq+1)
	}
	if err := j.writeRecord(at, seq, journalKindBatch, l.opts.JournalKey, dir, segBase, filePos, batch); err != nil {
		return 0, err
	}
	j.logsIn[j.half][l] = struct{}{}
	j.pos, j.seq = at+n, seq+1
	if j.m != nil && j.m.JournalBytes != nil {
		j.m.JournalBytes.Add(float64(len(batch)))
	}
	if !l.journalDirty {
		l.journalDirty = true
		j.dirty = append(j.dirty, l)
	}
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return seq, nil
}

// leave hands the half the writer leaves to the checkpointer, whose
// checkpoint will be (pos, seq), and enters the other half.
func (j *Journal) leave(half int, pos int64, seq uint64) {
	logs := make([]*Log, 0, len(j.logsIn[half]))
	for l := range j.logsIn[half] {
		logs = append(logs, l)
	}
	j.logsIn[half] = map[*Log]struct{}{}
	other := 1 - half
	j.free[other] = false
	j.half = other
	j.tasks <- journalTask{half: half, logs: logs, pos: pos, seq: seq}
}

func (j *Journal) writeRecord(at int64, seq uint64, kind uint16, key JournalKey, dir string, segBase, filePos int64, batch []byte) error {
	n := journalHeader + len(dir) + len(batch)
	b := grow(j.buf[:0], n)
	j.buf = b
	binary.BigEndian.PutUint32(b[4:], uint32(n))
	binary.BigEndian.PutUint64(b[8:], seq)
	binary.BigEndian.PutUint16(b[16:], kind)
	binary.BigEndian.PutUint16(b[18:], uint16(len(dir)))
	copy(b[20:36], key[:])
	binary.BigEndian.PutUint64(b[36:], uint64(segBase))
	binary.BigEndian.PutUint64(b[44:], uint64(filePos))
	copy(b[journalHeader:], dir)
	copy(b[journalHeader+len(dir):], batch)
	binary.BigEndian.PutUint32(b, crc32.Checksum(b[4:], castagnoli))
	if _, err := j.f.WriteAt(b, at); err != nil {
		j.breakLocked(fmt.Errorf("journal: write ring at %d: %w", at, err))
		return errJournalOff
	}
	return nil
}

// breakLocked stops the journal for good: what it holds stays valid (it was
// either synced or is still waited for), and the logs fsync their own
// segments from now on.
func (j *Journal) breakLocked(err error) {
	if j.broken == nil {
		j.broken = err
		j.lg.Error("journal off: partitions fsync their own segments", zap.Error(err))
	}
}

// flushLoop is the group commit: one fdatasync of the ring for every
// record appended since the last one, then each log hears what it covered.
func (j *Journal) flushLoop() {
	defer j.wg.Done()
	for {
		select {
		case <-j.stop:
			return
		case <-j.kick:
		}
		j.mu.Lock()
		end, logs, broken := j.seq, j.dirty, j.broken
		j.dirty = nil
		for _, l := range logs {
			l.journalDirty = false
		}
		j.mu.Unlock()
		err := broken
		if err == nil {
			start := time.Now()
			err = j.f.Sync()
			if j.m != nil && j.m.JournalFsyncSeconds != nil {
				j.m.JournalFsyncSeconds.Observe(time.Since(start).Seconds())
			}
			if err != nil {
				j.mu.Lock()
				j.breakLocked(fmt.Errorf("journal: sync ring: %w", err))
				j.mu.Unlock()
			}
		}
		for _, l := range logs {
			l.journalSynced(end, err != nil)
		}
	}
}

// checkpointLoop fsyncs the logs of each half the writer left, then moves
// the checkpoint past the half and frees it for the writer's next pass.
func (j *Journal) checkpointLoop() {
	defer j.wg.Done()
	for {
		var t journalTask
		select {
		case <-j.stop:
			return
		case t = <-j.tasks:
		}
		for _, l := range t.logs {
			for {
				err := l.Sync()
				if err == nil || errors.Is(err, ErrClosed) {
					break
				}
				// The log is read-only until Reopen, which replays
				// its records from this half: keep them.
				j.lg.Error("journal checkpoint waits for a log whose fsync failed", zap.String("log", l.dir), zap.Error(err))
				select {
				case <-j.stop:
					return
				case <-time.After(journalRetry):
				}
			}
		}
		if err := j.writeCheckpoint(j.ring, t.pos, t.seq); err != nil {
			j.mu.Lock()
			j.breakLocked(fmt.Errorf("journal: checkpoint: %w", err))
			j.mu.Unlock()
			continue
		}
		j.mu.Lock()
		j.ckptPos, j.ckptSeq = t.pos, t.seq
		j.free[t.half] = true
		j.mu.Unlock()
		if j.m != nil && j.m.JournalCheckpoints != nil {
			j.m.JournalCheckpoints.Inc()
		}
	}
}

// Close stops the journal after the logs closed (each fsynced its segment
// and left a clean-shutdown marker, so none needs a replay), moving the
// checkpoint to the end so that the next start scans nothing.
func (j *Journal) Close() error {
	j.mu.Lock()
	started := j.started
	j.started = false
	ring, pos, seq := j.ring, j.pos, j.seq
	j.mu.Unlock()
	if started {
		close(j.stop)
		j.wg.Wait()
	}
	j.mu.Lock()
	failing := j.failing
	j.mu.Unlock()
	var err error
	if started && failing == 0 {
		err = j.writeCheckpoint(ring, pos, seq)
	}
	return errors.Join(err, j.f.Close())
}

// poke starts a flusher round: a waiter's nudge (append already kicks).
func (j *Journal) poke() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// noteFailed counts a log made read-only: its journaled records may be
// all that holds what it acknowledged, so Close keeps the checkpoint where
// it is and the next start replays them.
func (j *Journal) noteFailed() {
	j.mu.Lock()
	j.failing++
	j.mu.Unlock()
}
