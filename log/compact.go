package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// CleanupPolicy is Kafka's cleanup.policy: delete (retention removes old
// segments), compact (the cleaner keeps the last record of every key), or
// both. The zero value is delete.
type CleanupPolicy uint8

const (
	CleanupDelete CleanupPolicy = 1 << iota
	CleanupCompact
)

// Deletes says whether retention deletes segments by age and size.
func (p CleanupPolicy) Deletes() bool { return p == 0 || p&CleanupDelete != 0 }

// Compacts says whether the cleaner compacts the log.
func (p CleanupPolicy) Compacts() bool { return p&CleanupCompact != 0 }

func (p CleanupPolicy) String() string {
	switch {
	case p.Compacts() && p.Deletes() && p != CleanupCompact:
		return "compact,delete"
	case p.Compacts():
		return "compact"
	}
	return "delete"
}

// ParseCleanupPolicy reads a cleanup.policy value: a comma-separated list
// of delete and compact.
func ParseCleanupPolicy(v string) (CleanupPolicy, error) {
	var p CleanupPolicy
	for _, w := range strings.Split(v, ",") {
		switch strings.TrimSpace(w) {
		case "delete":
			p |= CleanupDelete
		case "compact":
			p |= CleanupCompact
		default:
			return 0, fmt.Errorf("%q: want delete, compact or compact,delete", v)
		}
	}
	return p, nil
}

// cleanOffsetFile holds the first dirty offset (every record below it has
// been through a clean: Kafka's cleaner-offset-checkpoint, per partition)
// and the earliest delete horizon of the tombstones the last clean kept.
const cleanOffsetFile = "clean-offset"

// Suffixes of a cleaned segment on its way in (part of the format): the
// cleaner writes `.cleaned` files, renames them to `.swap` (the `.log.swap`
// rename is the commit) and then over the segments they replace.
const (
	cleanedSuffix = ".cleaned"
	swapSuffix    = ".swap"
)

// mapEntryBytes is what one key of the cleaner's key->offset map costs
// beside the key's bytes (Go map slot, string header, offset).
const mapEntryBytes = 64

// ErrNoRoomToClean: the free disk space is below what rewriting the next
// group of segments needs; nothing was changed.
var ErrNoRoomToClean = errors.New("log: not enough free disk space to clean")

// ErrCleanStopped: CleanConfig.Stop was closed; what was cleaned stays.
var ErrCleanStopped = errors.New("log: clean stopped")

// cleanerState is the log's compaction bookkeeping, under mu: one clean
// at a time per log.
type cleanerState struct {
	mu        sync.Mutex
	loaded    bool
	cleanedTo int64 // first dirty offset
	// horizon is the earliest delete horizon (unix ms) of the tombstones
	// the last clean kept, 0 when none: once it passes, a clean is due even
	// with nothing dirty.
	horizon int64
}

// CleanConfig is what one clean may use and keep.
type CleanConfig struct {
	// MapBytes bounds the key->offset map of one pass; a dirty section
	// with more keys is cleaned in several passes. At least one batch is
	// mapped per pass whatever its size.
	MapBytes int64
	// DeleteRetention is delete.retention.ms: how long a tombstone stays
	// after the clean that first kept it (KIP-534's delete horizon).
	DeleteRetention time.Duration
	// MinCompactionLag is min.compaction.lag.ms: segments holding a batch
	// newer than this are not cleaned yet.
	MinCompactionLag time.Duration
	// Room returns the bytes the cleaner may write on the log's disk; nil
	// means no bound. A group of segments is rewritten only when its size
	// fits, since the old files go only after the new ones are in place.
	Room func() (int64, error)
	// Stop, when closed, ends the clean at the next batch with
	// ErrCleanStopped, the group being written dropped (a shutdown).
	Stop <-chan struct{}
}

// CleanStats says what a clean did.
type CleanStats struct {
	Passes          int
	SegmentsRead    int
	SegmentsWritten int
	BytesRead       int64 // bytes of the segments rewritten
	BytesWritten    int64 // bytes of the segments that replaced them
	RecordsRemoved  int64 // superseded, keyless, and tombstones past their horizon
	Tombstones      int64 // of which tombstones past their horizon
}

// Cleanable says how many bytes of sealed segments a clean would read:
// clean are below the first dirty offset, dirty from there to the first
// segment that may not be cleaned (the active one, or one holding a batch
// newer than minLag). Kafka's dirty ratio is dirty/(clean+dirty).
func (l *Log) Cleanable(minLag time.Duration) (clean, dirty int64, err error) {
	first, err := l.firstDirty()
	if err != nil {
		return 0, 0, err
	}
	now := l.opts.Now()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, 0, ErrClosed
	}
	first = max(first, l.logStart)
	for i, s := range l.segs[:len(l.segs)-1] {
		if minLag > 0 && now.Sub(time.UnixMilli(s.maxTs)) < minLag {
			break
		}
		if l.segs[i+1].base <= first {
			clean += s.size
		} else {
			dirty += s.size
		}
	}
	return clean, dirty, nil
}

// DirtySince is the newest batch timestamp (unix ms) of the first sealed
// segment holding records not yet cleaned, -1 when there is none: the
// broker cleans a log whose dirty records are older than
// max.compaction.lag.ms whatever its dirty ratio. (Kafka takes the
// segment's first timestamp; a sealed segment here keeps only its largest,
// so the lag may run over by up to segment.ms.)
func (l *Log) DirtySince() int64 {
	first, err := l.firstDirty()
	if err != nil {
		return -1
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return -1
	}
	first = max(first, l.logStart)
	for i, s := range l.segs[:len(l.segs)-1] {
		if l.segs[i+1].base > first {
			return s.maxTs
		}
	}
	return -1
}

// firstDirty reads the clean-offset file once.
func (l *Log) firstDirty() (int64, error) {
	c := &l.cleaner
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := l.loadCleanedLocked(); err != nil {
		return 0, err
	}
	return c.cleanedTo, nil
}

func (l *Log) loadCleanedLocked() error {
	c := &l.cleaner
	if c.loaded {
		return nil
	}
	v, err := readInt64sFile(l.fs, filepath.Join(l.dir, cleanOffsetFile), 2)
	var ce *CorruptionError
	if errors.As(err, &ce) {
		// Only work is lost: the next clean maps the whole log again.
		l.lg.Warn("ignoring damaged clean-offset file", zap.Error(err))
		v, err = []int64{0, 0}, nil
	}
	if err != nil {
		return err
	}
	c.cleanedTo, c.horizon, c.loaded = v[0], v[1], true
	return nil
}

// Clean compacts the sealed segments of the log, never the active one
// (retention, DeleteRecords and Reopen wait only while a cleaned segment is
// swapped in; a clean that finds its segments gone since it read them drops
// its work and ends):
// for every key only its last record stays, records without a key go, and
// a tombstone stays until DeleteRetention after the clean that first kept
// it. Offsets do not change; removed records leave gaps inside batches
// (whose last offset is kept) and whole removed batches become one empty
// batch per run (compact.go's package doc has the format). It runs passes
// until the dirty section is all cleaned, each bounded by MapBytes.
func (l *Log) Clean(cfg CleanConfig) (CleanStats, error) {
	l.cleaner.mu.Lock()
	defer l.cleaner.mu.Unlock()
	var st CleanStats
	if err := l.loadCleanedLocked(); err != nil {
		return st, err
	}
	for {
		done, err := l.cleanPass(cfg, &st)
		if err != nil || done {
			return st, err
		}
	}
}

// pass is one clean's view of the log.
type pass struct {
	l        *Log
	cfg      CleanConfig
	now      int64 // unix ms
	segs     []*segment
	ends     []int64 // offset after each segment: the next one's base
	keys     map[string]int64
	mapEnd   int64 // records at and past it are not in keys: kept
	producer func(id int64) (last int64, ok bool)
	st       *CleanStats
	zstd     zstdCoders
	// minHorizon is the earliest delete horizon of the tombstones kept.
	minHorizon int64
}

func (l *Log) cleanPass(cfg CleanConfig, st *CleanStats) (done bool, err error) {
	now := l.opts.Now()
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return true, ErrClosed
	}
	if l.werr != nil {
		l.mu.RUnlock()
		return true, l.werr
	}
	p := &pass{l: l, cfg: cfg, now: now.UnixMilli(), keys: map[string]int64{}, st: st}
	first := max(l.cleaner.cleanedTo, l.logStart)
	for i, s := range l.segs[:len(l.segs)-1] {
		if cfg.MinCompactionLag > 0 && now.Sub(time.UnixMilli(s.maxTs)) < cfg.MinCompactionLag {
			break
		}
		s.acquire()
		p.segs = append(p.segs, s)
		p.ends = append(p.ends, l.segs[i+1].base)
	}
	l.mu.RUnlock()
	defer func() {
		for _, s := range p.segs {
			s.release()
		}
		p.zstd.close()
	}()
	dirty := len(p.segs) > 0 && first < p.ends[len(p.ends)-1]
	h := l.cleaner.horizon
	if !dirty && (len(p.segs) == 0 || h == 0 || h > p.now) {
		return true, nil
	}
	p.producer = l.lastProducerBatch
	p.mapEnd = first // nothing dirty: a pass for the tombstones only
	if dirty {
		if err := p.buildMap(first); err != nil {
			return true, err
		}
	}
	st.Passes++
	if err := p.rewrite(); errors.Is(err, errGroupGone) {
		return true, nil // retention or a reopen changed the segments: next time
	} else if err != nil {
		return true, err
	}
	if err := writeInt64sFile(l.fs, filepath.Join(l.dir, cleanOffsetFile), p.mapEnd, p.minHorizon); err != nil {
		return true, fmt.Errorf("clean: %w", err)
	}
	l.cleaner.cleanedTo, l.cleaner.horizon = p.mapEnd, p.minHorizon
	return p.mapEnd >= p.ends[len(p.ends)-1], nil
}

// lastProducerBatch is the last offset of producer id's newest batch.
func (l *Log) lastProducerBatch(id int64) (int64, bool) {
	t := l.producers
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[id]
	if e == nil || len(e.batches) == 0 {
		return 0, false
	}
	return e.batches[len(e.batches)-1].LastOffset, true
}

// buildMap notes the last offset of every key from offset first on, until
// the map is full or the cleanable segments end.
func (p *pass) buildMap(first int64) error {
	used := int64(0)
	p.mapEnd = first
	full := errors.New("full")
	for i, s := range p.segs {
		if p.ends[i] <= first {
			continue
		}
		err := p.l.eachBatch(s, max(first, s.base), p.ends[i], func(b []byte, h batchHeader) error {
			if err := p.stopped(); err != nil {
				return err
			}
			if used >= p.cfg.MapBytes && p.mapEnd > first {
				return full
			}
			if b[batchAttributesPos+1]&attrControl == 0 && h.Records > 0 {
				recs, err := p.zstd.batchRecords(b)
				if err != nil {
					return s.corruption(0, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err))
				}
				err = parseRecords(recs, h.Records, func(r record) error {
					off := h.BaseOffset + int64(r.offsetDelta)
					if off < first || r.key == nil {
						return nil
					}
					if _, ok := p.keys[string(r.key)]; !ok {
						used += int64(len(r.key)) + mapEntryBytes
					}
					p.keys[string(r.key)] = off
					return nil
				})
				if err != nil {
					return s.corruption(0, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err))
				}
			}
			p.mapEnd = h.nextOffset()
			return nil
		})
		if err == full {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// eachBatch calls fn with every batch of sealed segment s from the one
// holding offset from to end, whole and CRC-checked. b is reused.
func (l *Log) eachBatch(s *segment, from, end int64, fn func(b []byte, h batchHeader) error) error {
	if err := l.checkIndexes(s); err != nil {
		return err
	}
	r := newHeaderReader(s.log)
	pos, expect := int64(0), s.base
	if from > s.base {
		p, h, err := s.findBatch(r, from, s.size)
		if err != nil {
			return err
		}
		pos, expect = p, h.BaseOffset
	}
	var buf []byte
	for pos < s.size && expect < end {
		h, err := r.header(pos, s.size)
		if err != nil {
			return s.corruption(pos, err)
		}
		if pos+h.Size > s.size {
			return s.corruption(pos, errBatchLength)
		}
		if int64(cap(buf)) < h.Size {
			buf = make([]byte, h.Size)
		}
		buf = buf[:h.Size]
		if err := readFull(s.log, buf, pos); err != nil {
			return s.corruption(pos, err)
		}
		if _, err := checkStoredBatch(buf, expect, l.cfg.LeaderEpoch); err != nil {
			return s.corruption(pos, err)
		}
		if err := fn(buf, h); err != nil {
			return err
		}
		pos += h.Size
		expect = h.nextOffset()
	}
	return nil
}

// rewrite cleans every segment holding offsets below mapEnd, in groups
// that each become one segment of at most segment.bytes.
func (p *pass) rewrite() error {
	n := 0
	for n < len(p.segs) && p.segs[n].base < p.mapEnd {
		n++
	}
	for i := 0; i < n; {
		j, size := i+1, p.segs[i].size
		for j < n && size+p.segs[j].size <= p.l.cfg.SegmentBytes && p.ends[j]-p.segs[i].base < maxSegmentOffsets {
			size += p.segs[j].size
			j++
		}
		if p.cfg.Room != nil {
			room, err := p.cfg.Room()
			if err != nil {
				return fmt.Errorf("clean: %w", err)
			}
			if room < size {
				return fmt.Errorf("%w: %d bytes to rewrite segment %d, %d free", ErrNoRoomToClean, size, p.segs[i].base, room)
			}
		}
		if err := p.cleanGroup(p.segs[i:j], p.ends[j-1]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// groupWriter writes a cleaned segment's .log.cleaned file.
type groupWriter struct {
	f       File
	buf     []byte
	pos     int64
	changed bool
	// A run of batches whose records all went, written as one empty batch.
	runBase, runLast int64
	runEpoch         int32
	inRun            bool
}

func (w *groupWriter) write(b []byte) error {
	if err := w.flushRun(); err != nil {
		return err
	}
	return w.put(b)
}

func (w *groupWriter) put(b []byte) error {
	w.buf = append(w.buf, b...)
	if len(w.buf) >= 1<<20 {
		return w.flush()
	}
	return nil
}

func (w *groupWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.f.WriteAt(w.buf, w.pos); err != nil {
		return err
	}
	w.pos += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

func (w *groupWriter) emptied(h batchHeader) {
	w.changed = true
	if !w.inRun {
		w.inRun, w.runBase = true, h.BaseOffset
	}
	w.runLast, w.runEpoch = h.lastOffset(), h.LeaderEpoch
}

func (w *groupWriter) flushRun() error {
	if !w.inRun {
		return nil
	}
	w.inRun = false
	return w.put(emptyBatch(w.runBase, w.runLast, w.runEpoch))
}

// cleanGroup rewrites the segments of group (ending at offset end) into
// one, and swaps it in when anything changed.
func (p *pass) cleanGroup(group []*segment, end int64) error {
	l := p.l
	base := group[0].base
	logPath, idxPath, tidxPath := segmentPaths(l.dir, base)
	f, err := l.fs.OpenFile(logPath+cleanedSuffix, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("clean segment %d: %w", base, err)
	}
	w := &groupWriter{f: f, changed: len(group) > 1}
	discard := func(err error) error {
		f.Close()
		for _, q := range []string{logPath, idxPath, tidxPath} {
			l.fs.Remove(q + cleanedSuffix)
		}
		return err
	}
	var read int64
	for k, s := range group {
		read += s.size
		next := end
		if k+1 < len(group) {
			next = group[k+1].base
		}
		if err := l.eachBatch(s, s.base, next, func(b []byte, h batchHeader) error { return p.filter(w, b, h) }); err != nil {
			return discard(err)
		}
	}
	if err := w.flushRun(); err != nil {
		return discard(fmt.Errorf("clean segment %d: %w", base, err))
	}
	if !w.changed {
		return discard(nil)
	}
	if err := w.flush(); err != nil {
		return discard(fmt.Errorf("clean segment %d: %w", base, err))
	}
	if err := f.Sync(); err != nil {
		return discard(fmt.Errorf("clean segment %d: %w", base, err))
	}
	tmp := &segment{base: base, path: logPath + cleanedSuffix, log: f, size: w.pos}
	sc, err := l.scanIndexes(tmp)
	if err == nil && sc.res.err != nil {
		err = &CorruptionError{Segment: tmp.path, Offset: sc.res.end, Err: sc.res.err}
	}
	if err == nil && sc.res.next != end {
		err = fmt.Errorf("cleaned segment %d ends at offset %d, want %d", base, sc.res.next, end)
	}
	if err != nil {
		return discard(err)
	}
	f.Close()
	for _, x := range []struct {
		path    string
		entries []byte
	}{{idxPath, sc.idx}, {tidxPath, sc.tidx}} {
		if err := writeNewFile(l.fs, x.path+cleanedSuffix, x.entries); err != nil {
			return discard(fmt.Errorf("clean segment %d: %w", base, err))
		}
	}
	if err := l.swapIn(group, base, end, sc, w.pos); err != nil {
		return err
	}
	p.st.SegmentsRead += len(group)
	p.st.SegmentsWritten++
	p.st.BytesRead += read
	p.st.BytesWritten += w.pos
	l.lg.Info("cleaned segments", zap.Int64("base", base), zap.Int("segments", len(group)),
		zap.Int64("bytes_before", read), zap.Int64("bytes_after", w.pos))
	return nil
}

// writeNewFile writes a new file and fsyncs it.
func writeNewFile(fsys FS, name string, b []byte) error {
	f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// filter writes what batch b keeps: itself when every record stays, a
// rebuilt batch of the records that stay, or nothing (its offsets join a
// run of emptied batches) when none does.
func (p *pass) filter(w *groupWriter, b []byte, h batchHeader) error {
	if err := p.stopped(); err != nil {
		return err
	}
	attrs := int16(binary.BigEndian.Uint16(b[batchAttributesPos:]))
	if attrs&attrControl != 0 || h.BaseOffset >= p.mapEnd {
		return w.write(b)
	}
	if h.Records == 0 {
		if _, ok := p.lastOfProducer(b, h); ok {
			return w.write(b)
		}
		w.emptied(h)
		return nil
	}
	recs, err := p.zstd.batchRecords(b)
	if err != nil {
		return fmt.Errorf("clean batch at offset %d: %w", h.BaseOffset, err)
	}
	firstTs := int64(binary.BigEndian.Uint64(b[batchFirstTimestampPos:]))
	horizon := attrs&attrDeleteHorizon != 0
	var kept []record
	needHorizon := false
	removed := int64(0)
	err = parseRecords(recs, h.Records, func(r record) error {
		off := h.BaseOffset + int64(r.offsetDelta)
		switch latest, ok := p.keys[string(r.key)]; {
		case off >= p.mapEnd:
		case r.key == nil, ok && latest > off:
			removed++
			return nil
		case r.tombstone && horizon && firstTs <= p.now:
			removed++
			p.st.Tombstones++
			return nil
		case r.tombstone && !horizon:
			needHorizon = true
		case r.tombstone:
			p.noteHorizon(firstTs)
		}
		kept = append(kept, r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("clean batch at offset %d: %w", h.BaseOffset, err)
	}
	p.st.RecordsRemoved += removed
	if removed == 0 && !needHorizon {
		return w.write(b)
	}
	w.changed = true
	if len(kept) == 0 {
		if _, ok := p.lastOfProducer(b, h); ok {
			// Kept as an empty batch for the producer's sequence
			// (Kafka's RETAIN_EMPTY).
			return w.write(buildBatch(b, attrs&^attrCodecMask, firstTs, h.MaxTimestamp, 0, nil))
		}
		w.emptied(h)
		return nil
	}
	newFirst := firstTs
	if needHorizon {
		newFirst = p.now + p.cfg.DeleteRetention.Milliseconds()
		attrs |= attrDeleteHorizon
		p.noteHorizon(newFirst)
	}
	const logAppendTime = 0x08
	maxTs := int64(-1)
	var out []byte
	for _, r := range kept {
		ts := firstTs + r.tsDelta
		maxTs = max(maxTs, ts)
		out = appendRecord(out, r, ts-newFirst)
	}
	if attrs&logAppendTime != 0 {
		maxTs = h.MaxTimestamp
	}
	codec := byte(attrs & attrCodecMask)
	packed, err := p.zstd.compressRecords(codec, out)
	if err != nil {
		return fmt.Errorf("clean batch at offset %d: compress: %w", h.BaseOffset, err)
	}
	return w.write(buildBatch(b, attrs, newFirst, maxTs, int32(len(kept)), packed))
}

func (p *pass) stopped() error {
	select {
	case <-p.cfg.Stop:
		return ErrCleanStopped
	default:
		return nil
	}
}

func (p *pass) noteHorizon(h int64) {
	if p.minHorizon == 0 || h < p.minHorizon {
		p.minHorizon = max(h, 1)
	}
}

// TombstonesDue says whether tombstones kept by the last clean have
// reached their delete horizon, so that a clean would remove them even
// though nothing is dirty.
func (l *Log) TombstonesDue() bool {
	c := &l.cleaner
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := l.loadCleanedLocked(); err != nil {
		return false
	}
	return c.horizon > 0 && c.horizon <= l.opts.Now().UnixMilli()
}

// lastOfProducer says whether b is its idempotent producer's newest batch
// in the log, which a clean keeps (empty if need be) so that the
// producer's sequence survives a replay from the segments.
func (p *pass) lastOfProducer(b []byte, h batchHeader) (int64, bool) {
	id := int64(binary.BigEndian.Uint64(b[batchProducerIDPos:]))
	if id < 0 {
		return 0, false
	}
	last, ok := p.producer(id)
	return id, ok && last == h.lastOffset()
}
