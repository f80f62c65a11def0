package broker

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble"
	"go.uber.org/zap"
)

// Metadata keys in pebble (DataDir/meta), part of the on-disk format. doc.go
// ("Metadata keys") lists every family with its layout; the group, offset
// and producer prefixes are declared beside their writers in group.go.
const (
	keyClusterID   = "cluster/id"
	topicKeyPrefix = "topic/" // then the topic name's bytes
)

// topicRecord is the value under topic/<name>, laid out in doc.go. Part of
// the on-disk format; add fields, never rename them.
type topicRecord struct {
	Version    int               `json:"v"`
	ID         string            `json:"id"` // 32 hex digits
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"` // overrides only
	Created    time.Time         `json:"created"`
}

const topicRecordVersion = 1

func topicMetaKey(name string) []byte { return []byte(topicKeyPrefix + name) }

func (r topicRecord) id() ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(r.ID)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("bad topic id %q", r.ID)
	}
	copy(id[:], b)
	return id, nil
}

func putTopic(disk *diskSpace, db *pebble.DB, name string, r topicRecord) error {
	// Refused on a full disk (KAFKA_STORAGE_ERROR): a new topic's folders
	// and metadata need room the mark keeps for the metadata store.
	// Deletion stays allowed: it is how space is freed.
	if err := disk.refuseMeta(); err != nil {
		return err
	}
	r.Version = topicRecordVersion
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	// Synced: a topic is acknowledged only once it survives a SIGKILL,
	// or its acknowledged data would be orphaned (KAFKA-NOTES trap 9).
	return db.Set(topicMetaKey(name), v, pebble.Sync)
}

func deleteTopicRecord(db *pebble.DB, name string) error {
	return db.Delete(topicMetaKey(name), pebble.Sync)
}

func loadTopics(db *pebble.DB) (map[string]topicRecord, error) {
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(topicKeyPrefix),
		UpperBound: keyPrefixEnd([]byte(topicKeyPrefix)),
	})
	if err != nil {
		return nil, err
	}
	out := map[string]topicRecord{}
	var errs []error
	for it.First(); it.Valid(); it.Next() {
		name := string(it.Key()[len(topicKeyPrefix):])
		var r topicRecord
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			errs = append(errs, fmt.Errorf("topic %q: %w", name, err))
			continue
		}
		if r.Version != topicRecordVersion {
			errs = append(errs, fmt.Errorf("topic %q: record version %d", name, r.Version))
			continue
		}
		out[name] = r
	}
	errs = append(errs, it.Close())
	return out, errors.Join(errs...)
}

// clusterID returns the configured id, else the stored one, else a new one
// (22 characters of base64url like Kafka's), stored before it is used.
func clusterID(db *pebble.DB, configured string, logger *zap.Logger) (string, error) {
	stored, closer, err := db.Get([]byte(keyClusterID))
	switch {
	case err == nil:
		s := string(stored)
		closer.Close()
		if configured != "" && configured != s {
			logger.Warn("cluster.id differs from the stored one; using the configured id",
				zap.String("configured", configured), zap.String("stored", s))
		}
		if configured != "" {
			return configured, nil
		}
		return s, nil
	case !errors.Is(err, pebble.ErrNotFound):
		return "", err
	}
	id := configured
	if id == "" {
		u := newUUID()
		id = base64.RawURLEncoding.EncodeToString(u[:])
	}
	return id, db.Set([]byte(keyClusterID), []byte(id), pebble.Sync)
}

// newUUID returns a random (version 4) UUID.
func newUUID() [16]byte {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// pebbleLogger sends pebble's own messages to zap.
type pebbleLogger struct{ s *zap.SugaredLogger }

func (l pebbleLogger) Infof(format string, args ...any)  { l.s.Debugf(format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.s.Errorf(format, args...) }

// Fatalf must not return: pebble v1.1.5 goes on after it as if the failed
// step had worked (DB.Apply returns nil after "fatal commit error", which
// would acknowledge an offset commit that is not stored). It panics
// instead of exiting: a panic on a request's goroutine (a metadata commit)
// is caught, by commitMeta or by the listener, and the broker goes on
// serving reads and the partition logs; one in pebble's own goroutines
// (flush, compaction) still ends the process, as exit did. The disk-space
// mark is what keeps pebble away from a full disk; this is the backstop.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	err := fmt.Errorf("pebble: "+format, args...)
	l.s.Errorw("metadata store fatal error (a full disk?): metadata writes stop until restart", "error", err)
	panic(err)
}

// commitMeta commits b synced. A fatal pebble error (see
// pebbleLogger.Fatalf) comes back as an error, and every later metadata
// write through refuseMeta is refused: pebble's WAL writer keeps its error,
// and its next commit would panic holding the store's lock.
func commitMeta(disk *diskSpace, b *pebble.Batch) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("metadata store: %v", p)
			disk.metaFailed(err)
		}
	}()
	return b.Commit(pebble.Sync)
}

// setMeta is one synced Set through commitMeta's guard, refused under the
// disk's mark.
func setMeta(disk *diskSpace, db *pebble.DB, key, value []byte) error {
	if err := disk.refuseMeta(); err != nil {
		return err
	}
	b := db.NewBatch()
	defer b.Close()
	if err := b.Set(key, value, nil); err != nil {
		return err
	}
	return commitMeta(disk, b)
}

// openMeta opens the metadata store with a block cache of cacheBytes and
// memtables of half that (pebble holds up to two).
//
// Pebble writes on open (a new WAL, a MANIFEST edit), so a disk with no
// room at all refuses the start: the error says the disk is full. Under
// the mark with some room left it opens, and the broker starts read-only
// for produce and commits until space is freed (see diskspace.go).
func openMeta(dir string, cacheBytes int64, logger *zap.Logger) (db *pebble.DB, err error) {
	if cacheBytes <= 0 {
		cacheBytes = DefaultMetaCacheBytes
	}
	opts := &pebble.Options{
		Logger:       pebbleLogger{logger.Named("pebble").Sugar()},
		MemTableSize: uint64(cacheBytes / 2),
		Cache:        pebble.NewCache(cacheBytes),
	}
	defer opts.Cache.Unref()
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("%v", p)
		}
		if err != nil {
			err = diskFullOpenError(filepath.Dir(dir), err)
			return
		}
	}()
	return pebble.Open(dir, opts)
}

// diskFullOpenError names a full disk as the reason pebble could not open.
func diskFullOpenError(dataDir string, err error) error {
	free, _, serr := statfs(dataDir)
	if errors.Is(err, syscall.ENOSPC) || (serr == nil && free < 1<<20) {
		return fmt.Errorf("the disk of %s is full (%d bytes free): the metadata store needs room to open; free some space and start again: %w",
			dataDir, free, err)
	}
	return err
}
