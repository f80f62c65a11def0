package broker

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.uber.org/zap"

	"github.com/ztfbroker/ztfbroker/log"
)

// What the broker does with damage found at Open (issue 11): a partition
// whose log does not open goes offline alone; a metadata store that does
// not open, or that lacks topics whose folders hold records, stops Open
// with a *MetadataError until RecoverMetadata rebuilds the topics from the
// folders. The data directory's lock lives here too, since it is what
// keeps a second broker, and a verify that is not live, off a running one.

// ErrMetadataDamaged is wrapped by every *MetadataError.
var ErrMetadataDamaged = errors.New("broker: metadata damaged")

// MetadataError is Open refusing a data directory whose metadata store does
// not open, or does not own every partition folder that holds records:
// adopting an empty catalogue would hide those records and restart their
// offsets at 0 at the next auto-create.
type MetadataError struct {
	Dir string // the metadata store
	// Err is why the store did not open or read; nil when it opened but
	// lacks topics.
	Err error
	// Unowned are the partition folders holding records that no topic in
	// the store owns, sorted.
	Unowned []string
}

func (e *MetadataError) Error() string {
	var s strings.Builder
	s.WriteString("broker: metadata damaged: ")
	if e.Err != nil {
		fmt.Fprintf(&s, "%s: %v", e.Dir, e.Err)
	} else {
		fmt.Fprintf(&s, "%s opened but lacks topics", e.Dir)
	}
	if len(e.Unowned) > 0 {
		fmt.Fprintf(&s, "; partition folders holding records that it does not own: %s", strings.Join(e.Unowned, ", "))
	}
	s.WriteString("; start with --recover-metadata to rebuild the topics from the partition folders " +
		"(the store is moved aside; consumer groups and committed offsets are lost)")
	return s.String()
}

func (e *MetadataError) Unwrap() []error { return []error{ErrMetadataDamaged, e.Err} }

// partitionFolders lists the folders of dataDir that are partition logs:
// named `<topic>-<partition>` with a valid topic name and holding at least
// one segment file, by topic then partition.
func partitionFolders(dataDir string) (map[string][]int32, error) {
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return nil, err
	}
	out := map[string][]int32{}
	for _, e := range entries {
		topic, i, ok := ParsePartitionDir(e.Name())
		if !e.IsDir() || !ok || validTopicName(topic) != nil {
			continue
		}
		if has, _ := hasSegments(filepath.Join(dataDir, e.Name())); has {
			out[topic] = append(out[topic], i)
		}
	}
	for _, ps := range out {
		sort.Slice(ps, func(a, b int) bool { return ps[a] < ps[b] })
	}
	return out, nil
}

// hasSegments reports whether dir holds a segment file, and whether one of
// them shows the log ever held a record: a segment not at base 0 (offsets
// were assigned), or a non-empty one (segments are never preallocated; see
// package log's doc for the names).
func hasSegments(dir string) (segments, records bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, false
	}
	for _, e := range entries {
		stem, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok || len(stem) != 20 {
			continue
		}
		base, err := strconv.ParseInt(stem, 10, 64)
		if err != nil || base < 0 {
			continue
		}
		segments = true
		if base > 0 {
			return true, true
		}
		if info, err := e.Info(); err == nil && info.Size() > 0 {
			return true, true
		}
	}
	return segments, false
}

func holdsRecords(dir string) bool {
	_, records := hasSegments(dir)
	return records
}

// unownedRecords lists the partition folders holding records that no topic
// of records owns (its topic is missing, or the index is past its count).
func unownedRecords(dataDir string, records map[string]topicRecord) ([]string, error) {
	folders, err := partitionFolders(dataDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for topic, ps := range folders {
		r, known := records[topic]
		for _, i := range ps {
			if known && i < r.Partitions {
				continue
			}
			name := topic + "-" + strconv.Itoa(int(i))
			if holdsRecords(filepath.Join(dataDir, name)) {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// deletedSuffix marks a partition folder whose topic is being deleted:
// DeleteTopic renames every folder so before it deletes the topic's record,
// so a folder holding records and no record is never a deletion cut short.
const deletedSuffix = ".deleted"

// finishDeletions completes deletions a crash cut short: a `.deleted`
// folder means its topic's deletion was decided, so the topic's record, if
// still there, is deleted with its remaining folders, then the `.deleted`
// folders are removed. It runs at Open before the topics are loaded.
func (b *Broker) finishDeletions() error {
	entries, err := os.ReadDir(b.cfg.DataDir)
	if err != nil {
		return err
	}
	topics := map[string]bool{}
	var dirs []string
	for _, e := range entries {
		stem, ok := strings.CutSuffix(e.Name(), deletedSuffix)
		if topic, _, pok := ParsePartitionDir(stem); ok && pok && e.IsDir() {
			topics[topic] = true
			dirs = append(dirs, filepath.Join(b.cfg.DataDir, e.Name()))
		}
	}
	for _, topic := range sortedKeys(topics) {
		_, closer, err := b.db.Get(topicMetaKey(topic))
		switch {
		case err == nil:
			closer.Close()
			r, err := loadTopic(b.db, topic)
			if err != nil {
				return fmt.Errorf("finish deleting %q: %w", topic, err)
			}
			if err := deleteTopicRecord(b.db, topic); err != nil {
				return fmt.Errorf("finish deleting %q: %w", topic, err)
			}
			for i := int32(0); i < r.Partitions; i++ {
				dirs = append(dirs, b.partitionDir(topic, i))
			}
		case !errors.Is(err, pebble.ErrNotFound):
			return fmt.Errorf("finish deleting %q: %w", topic, err)
		}
		b.logger.Warn("finishing a topic deletion cut short", zap.String("topic", topic))
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("finish deletion: %w", err)
		}
	}
	if len(dirs) > 0 {
		return (log.OSFS{}).SyncDir(b.cfg.DataDir)
	}
	return nil
}

func jsonRecord(r topicRecord) ([]byte, error) {
	r.Version = topicRecordVersion
	return json.Marshal(r)
}

func loadTopic(db *pebble.DB, name string) (topicRecord, error) {
	rs, err := loadTopics(db)
	if err != nil {
		return topicRecord{}, err
	}
	return rs[name], nil
}

// openMetaChecked is openMeta refusing a store folder whose CURRENT is
// gone: pebble would start a new, empty store over its files (or panic
// replaying their WAL), and the broker would then adopt an empty catalogue.
func openMetaChecked(dir string, cacheBytes int64, logger *zap.Logger) (*pebble.DB, error) {
	entries, _ := os.ReadDir(dir)
	store := false
	for _, e := range entries {
		n := e.Name()
		store = store || strings.HasPrefix(n, "MANIFEST-") || strings.HasSuffix(n, ".sst") || strings.HasSuffix(n, ".log")
	}
	if _, err := os.Stat(filepath.Join(dir, "CURRENT")); store && errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("CURRENT is missing beside the store's %d files", len(entries))
	}
	return openMeta(dir, cacheBytes, logger)
}

// checkMeta refuses a store that does not own every partition folder
// holding records.
func checkMeta(dataDir string, db *pebble.DB) (map[string]topicRecord, error) {
	dir := filepath.Join(dataDir, "meta")
	records, err := loadTopics(db)
	if err != nil {
		unowned, _ := unownedRecords(dataDir, nil)
		return nil, &MetadataError{Dir: dir, Err: fmt.Errorf("load topics: %w", err), Unowned: unowned}
	}
	unowned, err := unownedRecords(dataDir, records)
	if err != nil {
		return nil, fmt.Errorf("broker: list data dir: %w", err)
	}
	if len(unowned) > 0 {
		return nil, &MetadataError{Dir: dir, Unowned: unowned}
	}
	return records, nil
}

// RecoverMetadata rebuilds the metadata store of cfg.DataDir when Open
// would refuse it (a *MetadataError), and does nothing otherwise, so that
// it is safe to leave on. The damaged store is moved aside as
// meta.damaged-<UTC time>/ and a new one gets a record for every topic
// with partition folders: count the highest index + 1, and the id, configs
// and creation time the damaged store still held for it, else a new id and
// no overrides. The cluster id is kept when the damaged store still reads.
// Consumer groups and committed offsets are lost; producer ids restart
// above any handed out before (at the clock's unix milliseconds), since the
// logs remember their producers. It reports whether it rebuilt anything.
func RecoverMetadata(cfg Config, logger *zap.Logger, now func() time.Time) (bool, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	unlock, err := LockDataDir(cfg.DataDir, true)
	if err != nil {
		return false, err
	}
	defer unlock()
	metaDir := filepath.Join(cfg.DataDir, "meta")
	db, openErr := openMetaChecked(metaDir, cfg.MetaCacheBytes, logger)
	var old map[string]topicRecord
	var cluster []byte
	if openErr == nil {
		var checkErr error
		old, checkErr = checkMeta(cfg.DataDir, db)
		if checkErr == nil {
			logger.Info("metadata store owns every partition folder; nothing to recover", zap.String("dir", metaDir))
			return false, db.Close()
		}
		if v, closer, err := db.Get([]byte(keyClusterID)); err == nil {
			cluster = append(cluster, v...)
			closer.Close()
		}
		if old == nil {
			old, _ = loadTopics(db) // what still reads
		}
		if err := db.Close(); err != nil {
			logger.Warn("close damaged metadata store", zap.Error(err))
		}
	}
	folders, err := partitionFolders(cfg.DataDir)
	if err != nil {
		return false, fmt.Errorf("broker: recover metadata: %w", err)
	}
	aside := ""
	if _, err := os.Stat(metaDir); err == nil {
		aside = filepath.Join(cfg.DataDir, "meta.damaged-"+now().UTC().Format("20060102T150405.000000000Z"))
		if err := os.Rename(metaDir, aside); err != nil {
			return false, fmt.Errorf("broker: recover metadata: %w", err)
		}
		if err := (log.OSFS{}).SyncDir(cfg.DataDir); err != nil {
			return false, fmt.Errorf("broker: recover metadata: sync dir: %w", err)
		}
	}
	db, err = openMeta(metaDir, cfg.MetaCacheBytes, logger)
	if err != nil {
		return false, fmt.Errorf("broker: recover metadata: new store: %w", err)
	}
	batch := db.NewBatch()
	if len(cluster) > 0 {
		_ = batch.Set([]byte(keyClusterID), cluster, nil)
	}
	var next [8]byte
	binary.BigEndian.PutUint64(next[:], uint64(max(now().UnixMilli(), 1)))
	_ = batch.Set([]byte(producerNextKey), next[:], nil)
	var names []string
	for _, topic := range sortedKeys(folders) {
		ps := folders[topic]
		r, ok := old[topic]
		if _, err := r.id(); !ok || err != nil {
			id := newUUID()
			r = topicRecord{ID: hex.EncodeToString(id[:]), Created: now().UTC()}
		}
		r.Version = topicRecordVersion
		r.Partitions = max(r.Partitions, ps[len(ps)-1]+1)
		v, err := jsonRecord(r)
		if err != nil {
			batch.Close()
			db.Close()
			return false, err
		}
		_ = batch.Set(topicMetaKey(topic), v, nil)
		names = append(names, fmt.Sprintf("%s:%d", topic, r.Partitions))
	}
	err = batch.Commit(pebble.Sync)
	batch.Close()
	if err = errors.Join(err, db.Close()); err != nil {
		return false, fmt.Errorf("broker: recover metadata: %w", err)
	}
	logger.Warn("metadata rebuilt from the partition folders: consumer groups and committed offsets are lost, "+
		"topics without a readable record have default configs and a new topic id",
		zap.NamedError("damage", openErr), zap.String("damaged_store", aside), zap.Strings("topics", names),
		zap.Bool("cluster_id_kept", len(cluster) > 0))
	return true, nil
}

// offlineError is what an offline partition answers.
func (p *partition) offlineError() error {
	return fmt.Errorf("%s-%d offline: its log did not open: %v: %w", p.topic, p.index, p.offline, kerr.KafkaStorageError)
}

// OfflinePartitions lists the partitions of topic whose log failed to open
// at Open; they answer KAFKA_STORAGE_ERROR until the broker restarts with
// the folder repaired. Metadata reports them as Kafka reports a partition
// on a failed log dir.
func (b *Broker) OfflinePartitions(topic string) []int32 {
	t, err := b.lookup(topic)
	if err != nil {
		return nil
	}
	var out []int32
	for _, p := range t.partitions {
		if p.offline != nil {
			out = append(out, p.index)
		}
	}
	return out
}

// offlineCount counts offline partitions, for ztfbroker_partitions_offline.
func (b *Broker) offlineCount() float64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	n := 0
	for _, t := range b.topics {
		for _, p := range t.partitions {
			if p.offline != nil {
				n++
			}
		}
	}
	return float64(n)
}

// ErrDataDirLocked is wrapped by the error of LockDataDir when another
// process holds the lock.
var ErrDataDirLocked = errors.New("broker: data dir in use")

// LockedError names the process holding a data directory's lock.
type LockedError struct {
	Dir string
	PID int // the last broker to lock it (0: unknown); a verify may hold it too
}

func (e *LockedError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("a running broker (pid %d) or a verify", e.PID)
	}
	return fmt.Sprintf("broker: data dir %s is in use by %s (lock %s)", e.Dir, who, filepath.Join(e.Dir, lockFile))
}

func (e *LockedError) Unwrap() error { return ErrDataDirLocked }

// lockFile is the data directory's lock: an flock held exclusively by an
// open broker (the file holds its pid) and shared by verify.
const lockFile = ".lock"

// LockDataDir locks dir's lock file: exclusively (a broker; the file is
// created and given this process's pid) or shared (a reader such as
// verify, which creates nothing: no lock file means no broker of this
// version ever ran there). Held by another, it fails with a *LockedError at
// once. unlock releases it.
func LockDataDir(dir string, exclusive bool) (unlock func() error, err error) {
	path := filepath.Join(dir, lockFile)
	flag, how := os.O_RDONLY, syscall.LOCK_SH
	if exclusive {
		flag, how = os.O_RDWR|os.O_CREATE, syscall.LOCK_EX
	}
	f, err := os.OpenFile(path, flag, 0o644)
	if !exclusive && errors.Is(err, os.ErrNotExist) {
		return func() error { return nil }, nil
	}
	if err != nil {
		return nil, fmt.Errorf("broker: lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		buf := make([]byte, 32)
		n, _ := f.ReadAt(buf, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
			return nil, &LockedError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("broker: lock data dir: %w", err)
	}
	if exclusive {
		// The pid is for the message of whoever finds the lock held.
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
	}
	return f.Close, nil // closing the file releases the flock
}
