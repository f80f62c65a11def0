package broker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Issue 11: damaged files at Open.

// closeBroker closes b and fails the test on an error.
func closeBroker(t *testing.T, b *Broker) {
	t.Helper()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func gauge(t *testing.T, e *env, name string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.Metric[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A partition whose log does not open goes offline alone: Open succeeds,
// the partition answers KAFKA_STORAGE_ERROR, is logged and counted, and the
// other partitions of its topic and the other topics are served.
func TestDamagedPartitionOffline(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	for _, c := range []struct {
		name string
		n    int32
	}{{"alerts", 2}, {"other", 1}} {
		if err := b.CreateTopic(context.Background(), c.name, c.n, nil, false); err != nil {
			t.Fatal(err)
		}
	}
	for p := int32(0); p < 2; p++ {
		produce(t, b, "alerts", p, e.batch(5, 1, 100))
	}
	produce(t, b, "other", 0, e.batch(5, 1, 100))
	// log-start-offset exists once DeleteRecords moved the start inside a
	// segment; a damaged one fails log.Open.
	if _, err := b.DeleteRecords(context.Background(), "alerts", 1, 2); err != nil {
		t.Fatal(err)
	}
	closeBroker(t, b)
	damaged := filepath.Join(e.dir, "alerts-1")
	if err := os.WriteFile(filepath.Join(damaged, "log-start-offset"), []byte("not an offset"), 0o644); err != nil {
		t.Fatal(err)
	}

	b = e.open()
	if got := b.OfflinePartitions("alerts"); len(got) != 1 || got[0] != 1 {
		t.Fatalf("offline partitions of alerts: %v", got)
	}
	if got := b.OfflinePartitions("other"); len(got) != 0 {
		t.Fatalf("offline partitions of other: %v", got)
	}
	ctx := context.Background()
	if _, _, err := b.Produce(ctx, "alerts", 1, e.batch(1, 1, 10)); !isKerr(err, kerr.KafkaStorageError) {
		t.Fatalf("produce to the offline partition: %v", err)
	}
	if _, _, _, err := b.Fetch(context.Background(), "alerts", 1, 2, 1<<20, nil); !isKerr(err, kerr.KafkaStorageError) {
		t.Fatalf("fetch of the offline partition: %v", err)
	}
	if _, _, err := b.ListOffset(context.Background(), "alerts", 1, -1); !isKerr(err, kerr.KafkaStorageError) {
		t.Fatalf("list offsets of the offline partition: %v", err)
	}
	if _, _, err := b.Offsets(context.Background(), "alerts", 1); !isKerr(err, kerr.KafkaStorageError) {
		t.Fatalf("offsets of the offline partition: %v", err)
	}
	if _, err := b.Changed(context.Background(), "alerts", 1); !isKerr(err, kerr.KafkaStorageError) {
		t.Fatalf("changed of the offline partition: %v", err)
	}
	if base := produce(t, b, "alerts", 0, e.batch(1, 1, 10)); base != 5 {
		t.Fatalf("alerts-0 produce at %d, want 5", base)
	}
	if base := produce(t, b, "other", 0, e.batch(1, 1, 10)); base != 5 {
		t.Fatalf("other-0 produce at %d, want 5", base)
	}
	lines := e.logs.FilterMessage("partition offline: its log did not open; the other partitions are served").All()
	if len(lines) != 1 || lines[0].ContextMap()["dir"] != damaged || !strings.Contains(lines[0].ContextMap()["error"].(string), "log-start-offset") {
		t.Fatalf("offline line does not name the folder and the damage: %v", lines)
	}
	if n := gauge(t, e, "ztfbroker_partitions_offline"); n != 1 {
		t.Fatalf("ztfbroker_partitions_offline %v, want 1", n)
	}
	if b.EnforceRetention(); len(b.Orphans()) != 0 {
		t.Fatalf("orphans %v", b.Orphans())
	}

	// Deleting the topic removes the damaged folder too.
	if err := b.DeleteTopic(context.Background(), "alerts"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{damaged, damaged + deletedSuffix, filepath.Join(e.dir, "alerts-0")} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left after DeleteTopic: %v", d, err)
		}
	}
	if n := gauge(t, e, "ztfbroker_partitions_offline"); n != 0 {
		t.Fatalf("ztfbroker_partitions_offline %v after delete, want 0", n)
	}
}

// fillTopic makes a topic of n records on a new broker and closes it.
func fillTopic(t *testing.T, e *env, topic string, n int) {
	t.Helper()
	b := e.open()
	if err := b.CreateTopic(context.Background(), topic, 1, nil, false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 100 {
		produce(t, b, topic, 0, e.batch(100, 1, 50))
	}
	closeBroker(t, b)
}

func wantMetadataError(t *testing.T, err error, folders ...string) {
	t.Helper()
	var me *MetadataError
	if !errors.Is(err, ErrMetadataDamaged) || !errors.As(err, &me) {
		t.Fatalf("Open: %v, want a *MetadataError", err)
	}
	for _, f := range folders {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("error does not name folder %s: %v", f, err)
		}
	}
	if !strings.Contains(err.Error(), "--recover-metadata") {
		t.Fatalf("error does not offer recovery: %v", err)
	}
}

// A metadata store that does not open, or that lost topics whose folders
// hold records, stops Open; RecoverMetadata rebuilds the topics, keeping
// every record at its offset.
func TestMetadataDamageRefusedThenRecovered(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, meta string)
	}{
		{"CURRENT deleted", func(t *testing.T, meta string) {
			if err := os.Remove(filepath.Join(meta, "CURRENT")); err != nil {
				t.Fatal(err)
			}
		}},
		{"topic record lost", func(t *testing.T, meta string) {
			// What a bit flip in pebble's WAL does: pebble opens and
			// drops every record after it.
			db, err := pebble.Open(meta, &pebble.Options{Logger: quietPebble{}})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Delete(topicMetaKey("night"), pebble.Sync); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}},
		{"store removed", func(t *testing.T, meta string) {
			if err := os.RemoveAll(meta); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			fillTopic(t, e, "night", 600)
			c.damage(t, filepath.Join(e.dir, "meta"))

			for range 2 { // refused every time, with nothing written
				_, err := Open(e.cfg, nil, nil, e.clock.Now)
				wantMetadataError(t, err, "night-0")
			}
			recovered, err := RecoverMetadata(e.cfg, nil, e.clock.Now)
			if err != nil || !recovered {
				t.Fatalf("RecoverMetadata: %v, %v", recovered, err)
			}
			b := e.open()
			if _, hw, err := b.Offsets(context.Background(), "night", 0); err != nil || hw != 600 {
				t.Fatalf("after recovery: high watermark %d, %v; want 600", hw, err)
			}
			if got := len(fetchAll(t, b, "night", 0, 0)); got != 6 {
				t.Fatalf("%d batches after recovery, want 6", got)
			}
			if base := produce(t, b, "night", 0, e.batch(1, 1, 10)); base != 600 {
				t.Fatalf("produce after recovery at %d, want 600", base)
			}
			closeBroker(t, b)
			if recovered, err := RecoverMetadata(e.cfg, nil, e.clock.Now); err != nil || recovered {
				t.Fatalf("RecoverMetadata on a sound store: %v, %v", recovered, err)
			}
		})
	}
}

// A deletion cut short by a crash is finished at Open, whether the crash
// came before or after the metadata went; the next topic of the name starts
// at offset 0.
func TestDeletionCutShort(t *testing.T) {
	for _, metaDeleted := range []bool{false, true} {
		e := newEnv(t, nil)
		fillTopic(t, e, "gone", 200)
		if err := os.Rename(filepath.Join(e.dir, "gone-0"), filepath.Join(e.dir, "gone-0"+deletedSuffix)); err != nil {
			t.Fatal(err)
		}
		if metaDeleted {
			db, err := pebble.Open(filepath.Join(e.dir, "meta"), &pebble.Options{Logger: quietPebble{}})
			if err != nil {
				t.Fatal(err)
			}
			if err := deleteTopicRecord(db, "gone"); err != nil {
				t.Fatal(err)
			}
			db.Close()
		}
		b := e.open()
		if _, err := b.TopicID("gone"); !isKerr(err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("metadata deleted %v: topic after a cut deletion: %v", metaDeleted, err)
		}
		if _, err := os.Stat(filepath.Join(e.dir, "gone-0"+deletedSuffix)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("metadata deleted %v: .deleted folder left: %v", metaDeleted, err)
		}
		if _, _, err := b.Topic(context.Background(), "gone", true); err != nil {
			t.Fatal(err)
		}
		if _, hw, _ := b.Offsets(context.Background(), "gone", 0); hw != 0 {
			t.Fatalf("metadata deleted %v: new topic at %d", metaDeleted, hw)
		}
		closeBroker(t, b)
	}
}

// A folder holding records that appears while the broker runs is adopted by
// the topic that auto-create makes for it, never moved aside with its
// offsets restarted at 0.
func TestAutoCreateAdoptsRecords(t *testing.T) {
	e := newEnv(t, nil)
	fillTopic(t, e, "src", 300)
	held := filepath.Join(t.TempDir(), "held")
	if err := os.Rename(filepath.Join(e.dir, "src-0"), held); err != nil {
		t.Fatal(err)
	}
	b := e.open()
	if err := os.Rename(held, filepath.Join(e.dir, "late-0")); err != nil {
		t.Fatal(err)
	}
	if _, n, err := b.Topic(context.Background(), "late", true); err != nil || n != 1 {
		t.Fatalf("auto-create: %d partitions, %v", n, err)
	}
	if _, hw, _ := b.Offsets(context.Background(), "late", 0); hw != 300 {
		t.Fatalf("adopted log at %d, want 300", hw)
	}
	if e.logs.FilterMessage("adopting a partition folder that holds records but no topic owned").Len() != 1 {
		t.Fatal("adoption not warned about")
	}
}

// One broker per data dir.
func TestDataDirLocked(t *testing.T) {
	e := newEnv(t, nil)
	e.open()
	_, err := Open(e.cfg, nil, nil, e.clock.Now)
	var le *LockedError
	if !errors.Is(err, ErrDataDirLocked) || !errors.As(err, &le) || le.PID != os.Getpid() {
		t.Fatalf("second Open: %v", err)
	}
	if _, err := LockDataDir(e.dir, false); !errors.Is(err, ErrDataDirLocked) {
		t.Fatalf("shared lock beside an open broker: %v", err)
	}
}
