package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Producer state snapshots: `<20-digit offset>.snapshot`, the producer table
// of every batch below offset (layout in doc.go). Part of the on-disk format.
const (
	snapshotSuffix  = ".snapshot"
	snapshotVersion = 1
	// keepSnapshots is how many snapshots are kept: the newest and one to
	// fall back on should the newest be damaged.
	keepSnapshots = 2

	snapshotHeaderSize = 1 + 8 + 4     // version, offset, producer count
	snapshotEntrySize  = 8 + 2 + 8 + 1 // id, epoch, lastWrite, batch count
	snapshotBatchSize  = 4 + 4 + 8 + 8 // firstSeq, lastSeq, baseOffset, lastOffset
	snapshotCRCSize    = 4
)

var errBadSnapshot = errors.New("bad producer snapshot")

func snapshotName(offset int64) string { return segmentName(offset) + snapshotSuffix }

// parseSnapshotName returns the offset of a "<20 digits>.snapshot" name.
func parseSnapshotName(name string) (int64, bool) {
	stem, ok := strings.CutSuffix(name, snapshotSuffix)
	if !ok || len(stem) != 20 {
		return 0, false
	}
	var off int64
	for _, c := range stem {
		if c < '0' || c > '9' || off > (math.MaxInt64-9)/10 {
			return 0, false
		}
		off = off*10 + int64(c-'0')
	}
	return off, true
}

// encodeSnapshot serialises the table as the state below offset, producers
// in id order so that equal tables give equal files.
func (t *producerTable) encodeSnapshot(offset int64) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := make([]int64, 0, len(t.m))
	for id := range t.m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := make([]byte, 0, snapshotHeaderSize+len(ids)*(snapshotEntrySize+ProducerWindow*snapshotBatchSize)+snapshotCRCSize)
	b = append(b, snapshotVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		e := t.m[id]
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.BigEndian.AppendUint16(b, uint16(e.epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.lastWrite))
		b = append(b, byte(len(e.batches)))
		for _, w := range e.batches {
			b = binary.BigEndian.AppendUint32(b, uint32(w.FirstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(w.LastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(w.BaseOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(w.LastOffset))
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeSnapshot parses a snapshot file's bytes. It never trusts a count
// before checking it against the bytes left.
func decodeSnapshot(b []byte) (offset int64, t *producerTable, err error) {
	if len(b) < snapshotHeaderSize+snapshotCRCSize {
		return 0, nil, fmt.Errorf("%w: %d bytes", errBadSnapshot, len(b))
	}
	body := b[:len(b)-snapshotCRCSize]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(body):]) {
		return 0, nil, fmt.Errorf("%w: %w", errBadSnapshot, errCRC)
	}
	if body[0] != snapshotVersion {
		return 0, nil, fmt.Errorf("%w: version %d", errBadSnapshot, body[0])
	}
	offset = int64(binary.BigEndian.Uint64(body[1:]))
	n := int(binary.BigEndian.Uint32(body[9:]))
	rest := body[snapshotHeaderSize:]
	if offset < 0 || n > len(rest)/snapshotEntrySize {
		return 0, nil, fmt.Errorf("%w: offset %d, %d producers in %d bytes", errBadSnapshot, offset, n, len(rest))
	}
	t = newProducerTable()
	prev := int64(-1)
	for range n {
		if len(rest) < snapshotEntrySize {
			return 0, nil, fmt.Errorf("%w: truncated entry", errBadSnapshot)
		}
		id := int64(binary.BigEndian.Uint64(rest))
		e := &producerEntry{
			epoch:     int16(binary.BigEndian.Uint16(rest[8:])),
			lastWrite: int64(binary.BigEndian.Uint64(rest[10:])),
		}
		k := int(rest[18])
		rest = rest[snapshotEntrySize:]
		if id <= prev || k > ProducerWindow || len(rest) < k*snapshotBatchSize {
			return 0, nil, fmt.Errorf("%w: producer %d after %d with %d batches", errBadSnapshot, id, prev, k)
		}
		prev = id
		e.batches = make([]ProducerBatch, k, ProducerWindow)
		for i := range e.batches {
			e.batches[i] = ProducerBatch{
				FirstSeq:   int32(binary.BigEndian.Uint32(rest)),
				LastSeq:    int32(binary.BigEndian.Uint32(rest[4:])),
				BaseOffset: int64(binary.BigEndian.Uint64(rest[8:])),
				LastOffset: int64(binary.BigEndian.Uint64(rest[16:])),
			}
			rest = rest[snapshotBatchSize:]
		}
		t.m[id] = e
		t.oldest = min(t.oldest, e.lastWrite)
	}
	if len(rest) != 0 {
		return 0, nil, fmt.Errorf("%w: %d bytes after the last producer", errBadSnapshot, len(rest))
	}
	return offset, t, nil
}

// snapshotProducersLocked writes the snapshot of the state below offset
// (temp file, fsync, rename) and prunes older ones. The caller holds
// writeMu, has made every batch below offset durable and fsyncs the
// directory afterwards. A snapshot only saves replay work at Open, so a
// failure is logged, not made sticky: the older snapshot and a longer
// replay stand in for it.
func (l *Log) snapshotProducersLocked(offset int64) {
	name := filepath.Join(l.dir, snapshotName(offset))
	err := writeSnapshotFile(l.fs, name+tmpSuffix, l.producers.encodeSnapshot(offset))
	if err == nil {
		err = l.fs.Rename(name+tmpSuffix, name)
	}
	if err != nil {
		l.lg.Warn("producer state snapshot not written", zap.Int64("offset", offset), zap.Error(err))
		l.fs.Remove(name + tmpSuffix)
		return
	}
	offs, err := l.snapshotOffsets()
	if err != nil {
		return
	}
	for _, o := range offs[:max(len(offs)-keepSnapshots, 0)] {
		l.fs.Remove(filepath.Join(l.dir, snapshotName(o)))
	}
}

// pruneSnapshotsBelow removes the snapshots below the log's first segment,
// whose batches retention or DeleteRecords deleted, except the newest
// snapshot: producer state outlives the data (KIP-360), so that a retry is
// still answered as a duplicate.
func (l *Log) pruneSnapshotsBelow(base int64) {
	offs, err := l.snapshotOffsets()
	if err != nil || len(offs) == 0 {
		return
	}
	for _, o := range offs[:len(offs)-1] {
		if o < base {
			l.fs.Remove(filepath.Join(l.dir, snapshotName(o)))
		}
	}
}

// snapshotOffsets lists the snapshots in the folder, oldest first.
func (l *Log) snapshotOffsets() ([]int64, error) {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return nil, err
	}
	var offs []int64
	for _, name := range names {
		if o, ok := parseSnapshotName(name); ok {
			offs = append(offs, o)
		}
	}
	slices.Sort(offs)
	return offs, nil
}

func (l *Log) readSnapshot(offset int64) (*producerTable, error) {
	name := filepath.Join(l.dir, snapshotName(offset))
	f, err := l.fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size > maxBatchSize {
		return nil, fmt.Errorf("%w: %d bytes", errBadSnapshot, size)
	}
	b := make([]byte, size)
	if err := readFull(f, b, 0); err != nil {
		return nil, err
	}
	got, t, err := decodeSnapshot(b)
	if err == nil && got != offset {
		err = fmt.Errorf("%w: holds offset %d", errBadSnapshot, got)
	}
	return t, err
}

// loadProducers rebuilds the producer table after recovery, as Kafka's
// loadProducerState does: the newest good snapshot at or below the
// recovered log end, then the batch headers from its offset to the end.
// Recovery has cut the log to its durable tail, so the table describes
// exactly the batches stored: a retry of any of them is a duplicate, and
// one the crash lost is written again.
func (l *Log) loadProducers() error {
	l.producers = newProducerTable()
	offs, err := l.snapshotOffsets()
	if err != nil {
		return fmt.Errorf("list producer snapshots: %w", err)
	}
	from := l.segs[0].base
	for i := len(offs) - 1; i >= 0; i-- {
		name := filepath.Join(l.dir, snapshotName(offs[i]))
		if offs[i] > l.written {
			l.lg.Warn("removing producer snapshot past the log end", zap.String("snapshot", name), zap.Int64("log_end", l.written))
			l.fs.Remove(name)
			continue
		}
		t, err := l.readSnapshot(offs[i])
		if err != nil && !errors.Is(err, errBadSnapshot) && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if err != nil {
			l.lg.Warn("removing damaged producer snapshot", zap.String("snapshot", name), zap.Error(err))
			l.fs.Remove(name)
			continue
		}
		l.producers, from = t, max(from, offs[i])
		break
	}
	return l.replayProducers(from)
}

// replayProducers notes every batch from offset from to the log end,
// reading only batch headers. Damage in a sealed segment ends the replay
// with a warning (Read reports it when the batches are fetched).
func (l *Log) replayProducers(from int64) error {
	now := l.opts.Now() // replayed batches count as written at Open
	for i, s := range l.segs {
		next := l.written
		if i+1 < len(l.segs) {
			next = l.segs[i+1].base
		}
		if next <= from || s.size == 0 {
			continue
		}
		r := newHeaderReader(s.log)
		pos := int64(0)
		if from > s.base {
			p, _, err := s.findBatch(r, from, s.size)
			if err != nil {
				return l.replayStopped(s, p, err)
			}
			pos = p
		}
		for pos < s.size {
			h, err := r.header(pos, s.size)
			if err == nil && pos+h.Size > s.size {
				err = errBatchLength
			}
			if err != nil {
				return l.replayStopped(s, pos, err)
			}
			if h.BaseOffset >= from {
				off := pos - r.bufPos
				l.producers.noteBatch(r.buf[off:off+batchHeaderSize], func() time.Time { return now })
			}
			pos += h.Size
		}
	}
	return nil
}

func (l *Log) replayStopped(s *segment, pos int64, err error) error {
	l.lg.Warn("producer state replay stopped", zap.String("segment", s.path), zap.Int64("position", pos), zap.Error(err))
	return nil
}

// writeSnapshotFile writes a new file and fsyncs it; the caller renames it into
// place and fsyncs the directory.
func writeSnapshotFile(fsys FS, name string, b []byte) error {
	f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err = f.WriteAt(b, 0); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
