package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/durable"
)

// cleanShutdownFile marks a partition folder whose log was closed cleanly,
// as Kafka's clean-shutdown file does; its bytes are in the package doc.
const cleanShutdownFile = "clean-shutdown"

// cleanShutdownSize is the marker's length: eight int64 fields and a CRC.
const cleanShutdownSize = 8*8 + 4

// cleanShutdown is what Close knew about the active segment after its last
// fsync. Open trusts the segment instead of scanning its tail only when the
// files still have the sizes recorded here: a torn tail comes from a crash,
// so after a clean close damage is the disk's and is reported, not cut.
type cleanShutdown struct {
	Base        int64 // the active segment's base offset
	LogBytes    int64 // sizes of its three files
	IndexBytes  int64
	TimeBytes   int64
	Next        int64 // offset after its last batch
	MaxTs       int64 // its largest batch max timestamp, -1 when empty
	MaxTsOffset int64 // last offset of the first batch carrying MaxTs
	FirstTs     int64 // max timestamp of its first batch, -1 when empty
}

func (m cleanShutdown) encode() []byte {
	b := make([]byte, cleanShutdownSize)
	for i, v := range []int64{m.Base, m.LogBytes, m.IndexBytes, m.TimeBytes, m.Next, m.MaxTs, m.MaxTsOffset, m.FirstTs} {
		binary.BigEndian.PutUint64(b[8*i:], uint64(v))
	}
	binary.BigEndian.PutUint32(b[64:], crc32.Checksum(b[:64], castagnoli))
	return b
}

func decodeCleanShutdown(b []byte) (cleanShutdown, error) {
	if len(b) != cleanShutdownSize {
		return cleanShutdown{}, errShortBatch
	}
	if crc32.Checksum(b[:64], castagnoli) != binary.BigEndian.Uint32(b[64:]) {
		return cleanShutdown{}, errCRC
	}
	var v [8]int64
	for i := range v {
		v[i] = int64(binary.BigEndian.Uint64(b[8*i:]))
	}
	return cleanShutdown{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}, nil
}

// readCleanShutdown returns the marker in dir; ok is false when there is
// none. A marker that does not decode is reported and not trusted.
func readCleanShutdown(fsys FS, dir string) (m cleanShutdown, ok bool, err error) {
	name := filepath.Join(dir, cleanShutdownFile)
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return cleanShutdown{}, false, nil
	}
	if err != nil {
		return cleanShutdown{}, false, fmt.Errorf("read clean-shutdown marker: %w", err)
	}
	defer f.Close()
	b := make([]byte, cleanShutdownSize+1) // one more: a longer file is not ours
	n, _ := f.ReadAt(b, 0)
	m, err = decodeCleanShutdown(b[:n])
	if err != nil {
		return cleanShutdown{}, false, &CorruptionError{Segment: name, Err: err}
	}
	return m, true, nil
}

// writeCleanShutdown records m atomically: temp file, fsync, rename, fsync
// the directory. The caller has fsynced the segment and its indexes.
func writeCleanShutdown(fsys FS, dir string, m cleanShutdown) error {
	return durable.WriteFile(fsys, filepath.Join(dir, cleanShutdownFile), m.encode(), 0o644)
}

// removeCleanShutdown deletes the marker durably. Open calls it before the
// log takes a write, so that a crash from then on is recovered as one.
func removeCleanShutdown(fsys FS, dir string) error {
	err := fsys.Remove(filepath.Join(dir, cleanShutdownFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove clean-shutdown marker: %w", err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}

// cleanShutdownOf describes the active segment s after Close's fsync.
func (l *Log) cleanShutdownOf(s *segment) (cleanShutdown, error) {
	idxBytes, tidxBytes, err := s.indexFileBytes()
	if err != nil {
		return cleanShutdown{}, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return cleanShutdown{
		Base: s.base, LogBytes: s.size, IndexBytes: idxBytes, TimeBytes: tidxBytes,
		Next: l.written, MaxTs: s.maxTs, MaxTsOffset: s.maxTsOffset, FirstTs: s.firstTs,
	}, nil
}

// openActive opens the active segment: from the marker after a clean
// close, else by recovering its tail.
func (l *Log) openActive(s *segment, m cleanShutdown, clean bool) error {
	if clean {
		ok, err := l.loadCleanActive(s, m)
		if err != nil || ok {
			return err
		}
		l.lg.Warn("segment changed since the clean shutdown; recovering its tail as after a crash",
			zap.String("segment", s.path), zap.Int64("size", s.size), zap.Int64("size_at_close", m.LogBytes))
	}
	return l.recoverActive(s)
}

// loadCleanActive opens the active segment of a cleanly closed log from the
// marker, reading no batch: its bytes are as Close left them, so nothing is
// torn, and any damage is the disk's, found by Read and Verify. It returns
// false, touching nothing, when the files are not as the marker says
// (changed since the close): then the tail is recovered as after a crash.
func (l *Log) loadCleanActive(s *segment, m cleanShutdown) (bool, error) {
	idxBytes, tidxBytes, err := s.indexFileBytes()
	if err != nil {
		return false, err
	}
	entries := int(idxBytes / offsetEntrySize)
	switch {
	case m.Base != s.base || m.LogBytes != s.size || m.IndexBytes != idxBytes || m.TimeBytes != tidxBytes,
		idxBytes%offsetEntrySize != 0 || tidxBytes%timeEntrySize != 0 || int64(entries) != tidxBytes/timeEntrySize,
		m.Next < s.base || (s.size == 0) != (m.Next == s.base) || m.Next-s.base > maxSegmentOffsets:
		return false, nil
	}
	s.bytesSinceIndex = l.cfg.IndexIntervalBytes
	if entries > 0 {
		b, err := s.idx.entry(entries - 1)
		if err != nil {
			return false, err
		}
		if pos := int64(decodeOffsetEntry(b).Pos); pos < s.size {
			s.bytesSinceIndex = int(s.size - pos)
		}
	}
	s.maxTs, s.maxTsOffset, s.firstTs = m.MaxTs, m.MaxTsOffset, m.FirstTs
	if s.size > 0 {
		s.created = l.opts.Now()
	}
	l.written = m.Next
	return true, nil
}
