package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// kcat against the real binary: a topic created with cleanup.policy=compact
// (as MirrorMaker 2 and Kafka Connect create theirs) and written by kcat
// with keys, tombstones and every codec is compacted by serve's cleaner in
// the background; kcat then reads every key's last value at the offset it
// was written at, offsets rising, to the end of the partition. The
// cleaner's metrics say what it did.
func TestCompactedTopicKcat(t *testing.T) {
	b := startBroker(t, "", "--set", "log.cleaner.backoff.ms=100")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic = "mm2-offsets.source.internal"
	adm := kadm.NewClient(newClient(t, b.Kafka))
	str := func(v string) *string { return &v }
	res, err := adm.CreateTopics(ctx, 1, 1, map[string]*string{
		"cleanup.policy": str("compact"), "segment.ms": str("100"), "min.cleanable.dirty.ratio": str("0.01"),
	}, topic)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	type written struct {
		value  string
		offset int64
	}
	last := map[string]written{}
	offset := int64(0)
	for round, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		var msgs [][]byte
		for i := 0; i < 40; i++ {
			k := fmt.Sprintf("partition-%02d", rng.Intn(12))
			v := fmt.Sprintf("offset=%d,round=%d", rng.Intn(1e6), round)
			if rng.Intn(8) == 0 {
				v = "" // a tombstone (kcat -Z)
			}
			msgs = append(msgs, []byte(k+"|"+v))
			last[k] = written{v, offset}
			offset++
		}
		kcatProduce(t, ctx, b.Kafka, topic, msgs, "-K", "|", "-Z", "-z", codec)
		time.Sleep(120 * time.Millisecond) // past segment.ms: the next round rolls a segment
	}
	removed := `ztfbroker_log_cleaner_records_removed_total{topic="` + topic + `"}`
	for metricValue(t, b, removed) == 0 {
		if ctx.Err() != nil {
			t.Fatalf("the cleaner removed nothing:\n%s", b.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := runTool(t, ctx, nil, "kcat", "-b", b.Kafka, "-t", topic, "-p", "0", "-C", "-o", "beginning", "-e", "-q",
		"-f", "%o|%k|%S|%s\n")
	got := map[string]written{}
	prev, n := int64(-1), 0
	for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		f := strings.SplitN(string(line), "|", 4)
		if len(f) != 4 {
			t.Fatalf("kcat line %q", line)
		}
		o, _ := strconv.ParseInt(f[0], 10, 64)
		if o <= prev {
			t.Fatalf("offset %d after %d", o, prev)
		}
		prev, n = o, n+1
		if f[2] == "-1" { // %S: -1 for a NULL value
			f[3] = ""
		}
		got[f[1]] = written{f[3], o}
	}
	if prev != offset-1 {
		t.Fatalf("kcat read to offset %d, the last written is %d", prev, offset-1)
	}
	if n >= int(offset) {
		t.Fatalf("kcat read %d of %d records: nothing compacted", n, offset)
	}
	for k, w := range last {
		if got[k] != w {
			t.Fatalf("key %s: kcat read %+v, last written %+v", k, got[k], w)
		}
	}
	if v := metricValue(t, b, `ztfbroker_log_cleaner_last_clean_timestamp_seconds{topic="`+topic+`"}`); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("last clean at %v", v)
	}
	t.Logf("kcat read %d of %d records, %d keys", n, offset, len(last))
}

// metricValue is a /metrics sample's value, 0 while it is not exported.
func metricValue(t *testing.T, b *serveProc, sample string) float64 {
	t.Helper()
	v, _ := metricSample(t, b, sample)
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

// Kafka's Java clients, as Kafka Connect and MirrorMaker 2 use theirs: the
// AdminClient creates a compacted topic, the producer writes keyed records
// and tombstones with zstd, snappy and no codec, serve's cleaner compacts it, and the
// consumer reads each key's last value at its offset and ends at the log
// end, stepping over what compaction removed.
func TestCompactedTopicJava(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The codecs kafka-clients 4.1.1 compresses with (kcat and franz-go
	// cover gzip and lz4).
	jars := javaAdminJars(t, ctx, "com.github.luben:zstd-jni:1.5.6-10", "org.xerial.snappy:snappy-java:1.1.10.7")
	classes := t.TempDir()
	runTool(t, ctx, nil, "javac", "-cp", filepath.Join(jars, "*"), "-d", classes, filepath.Join("testdata", "java", "Compacted.java"))
	b := startBroker(t, "", "--set", "log.cleaner.backoff.ms=100")
	java := func(mode string) []string {
		out := runTool(t, ctx, nil, "java", "-cp", classes+string(os.PathListSeparator)+filepath.Join(jars, "*"), "Compacted", mode, b.Kafka, "connect-configs")
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	type written struct {
		value  string
		offset int64
	}
	last, produced := map[string]written{}, int64(0)
	for _, line := range java("produce") {
		var off int64
		var k, v string
		if n, _ := fmt.Sscanf(line, "rec %d %s %s", &off, &k, &v); n == 3 {
			if w, ok := last[k]; !ok || off > w.offset {
				last[k] = written{v, off}
			}
			produced = max(produced, off+1)
		}
	}
	removed := `ztfbroker_log_cleaner_records_removed_total{topic="connect-configs"}`
	for metricValue(t, b, removed) == 0 {
		if ctx.Err() != nil {
			t.Fatalf("the cleaner removed nothing:\n%s", b.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	got, prev, end, n := map[string]written{}, int64(-1), int64(-1), 0
	for _, line := range java("consume") {
		var off int64
		var k, v string
		if c, _ := fmt.Sscanf(line, "got %d %s %s", &off, &k, &v); c == 3 {
			if off <= prev {
				t.Fatalf("offset %d after %d", off, prev)
			}
			prev, n = off, n+1
			got[k] = written{v, off}
		}
		fmt.Sscanf(line, "end %d", &end)
	}
	if end != produced || n >= int(produced) {
		t.Fatalf("Java consumer read %d records and ended at %d; %d produced", n, end, produced)
	}
	for k, w := range last {
		if got[k] != w {
			t.Fatalf("key %s: Java consumer read %+v, last produced %+v", k, got[k], w)
		}
	}
	t.Logf("Java consumer read %d of %d records, %d keys", n, produced, len(last))
}
