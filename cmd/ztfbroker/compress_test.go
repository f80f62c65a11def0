package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// consumeTopic reads every partition of topic from its start to the end
// offsets taken first.
func consumeTopic(t testing.TB, addr, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	parts := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		want += o.Offset
		parts[o.Partition] = kgo.NewOffset().At(0)
	})
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})
	var recs []*kgo.Record
	for int64(len(recs)) < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records of %s: %v", len(recs), want, topic, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// sameAlerts fails unless got holds the values of want, in any order, each a
// container file of one alert.
func sameAlerts(t *testing.T, who string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s read %d alerts, want %d", who, len(got), len(want))
	}
	sorted := func(vs [][]byte) [][]byte {
		vs = slices.Clone(vs)
		slices.SortFunc(vs, bytes.Compare)
		return vs
	}
	g, w := sorted(got), sorted(want)
	for i := range w {
		if !bytes.Equal(g[i], w[i]) {
			t.Fatalf("%s: alert %d of %d differs from every alert produced (%d bytes)", who, i, len(g), len(g[i]))
		}
	}
	for _, v := range got {
		r, err := avrofile.NewReader(bytes.NewReader(v))
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		if blk, err := r.Next(); err != nil || blk.Count != 1 {
			t.Fatalf("%s: first block of %d records: %v", who, blk.Count, err)
		}
	}
}

// readFramed splits "<len>:<bytes>" items, as kcat prints with -f '%S:%s'
// and the Python script below writes.
func readFramed(t *testing.T, who string, out []byte) [][]byte {
	t.Helper()
	var vs [][]byte
	for len(out) > 0 {
		n, rest, ok := bytes.Cut(out, []byte(":"))
		size, err := strconv.Atoi(string(n))
		if !ok || err != nil || size > len(rest) {
			t.Fatalf("%s: unframed output at %.40q", who, out)
		}
		vs = append(vs, rest[:size])
		out = rest[size:]
	}
	return vs
}

// confluentReadAll reads every partition of a topic from its start with
// python3-confluent-kafka (librdkafka) and writes each value framed as
// "<len>:<bytes>".
const confluentReadAll = `
import sys
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
addr, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = Consumer({"bootstrap.servers": addr, "group.id": "unused", "enable.auto.commit": False})
md = c.list_topics(topic, timeout=30)
c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.topics[topic].partitions])
out = sys.stdout.buffer
got = 0
while got < n:
    m = c.poll(30)
    assert m is not None, "timed out after %d messages" % got
    assert m.error() is None, m.error()
    out.write(b"%d:" % len(m.value()) + m.value())
    got += 1
c.close()
`

func partitionBytes(t *testing.T, dataDir, topic string) (n int64) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(dataDir, topic+"-*"))
	for _, d := range dirs {
		n += logBytes(t, dataDir, filepath.Base(d))
	}
	return n
}

// TestCompressedNightEndToEnd: the packager's default zstd batches are stored
// as sent and every client reads the same alerts back: a simulated night goes
// to its nightly topic of 4 partitions with the defaults, and franz-go, kcat
// (librdkafka), python3-confluent-kafka, `ztfbroker cat` and `ztfbroker
// archive` each read the same container files from it. The same night made
// uncompressed takes over 1/0.6 times the log bytes.
func TestCompressedNightEndToEnd(t *testing.T) {
	b := startBroker(t, "")
	dir := t.TempDir()
	const alerts = 3 * 100
	pkg := func(state string, args ...string) {
		t.Helper()
		out, err := runBinary(t, append([]string{"package", "--bootstrap", b.Kafka, "--simulate", "100", "--exposures", "3",
			"--interval", "0", "--history", filepath.Join(dir, state, "h"), "--rejects", filepath.Join(dir, state, "r")}, args...)...)
		if err != nil {
			t.Fatalf("package %q: %v\n%s", args, err, out)
		}
	}
	pkg("zstd")
	pkg("plain", "--topic", "plain", "--compression", "none", "--partitions", "1")

	adm := kadm.NewClient(newClient(t, b.Kafka))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tds, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var nights []string
	for _, name := range tds.Names() {
		if strings.HasPrefix(name, "ztf_") {
			nights = append(nights, name)
		}
	}
	if len(nights) != 1 || len(tds[nights[0]].Partitions) != 4 {
		t.Fatalf("nightly topics %q among %q, want one of 4 partitions", nights, tds.Names())
	}
	night := nights[0]

	var want [][]byte
	for _, r := range consumeTopic(t, b.Kafka, night) {
		want = append(want, r.Value)
	}
	if len(want) != alerts {
		t.Fatalf("franz-go read %d alerts, want %d", len(want), alerts)
	}
	sameAlerts(t, "franz-go", want, want)

	// A clean stop cuts the active segments' preallocated zeros off.
	b.Stop()
	plain, packed := partitionBytes(t, b.DataDir, "plain"), partitionBytes(t, b.DataDir, night)
	b.Restart()
	t.Logf("on disk: %d B/alert uncompressed, %d B/alert zstd (%.0f%%)", plain/alerts, packed/alerts, 100*float64(packed)/float64(plain))
	if packed*10 > plain*6 {
		t.Errorf("zstd topic holds %d bytes, the uncompressed one %d: want under 60%%", packed, plain)
	}

	out := runTool(t, ctx, nil, "kcat", "-b", b.Kafka, "-t", night, "-C", "-o", "beginning", "-e", "-q", "-f", "%S:%s")
	sameAlerts(t, "kcat", readFramed(t, "kcat", out), want)

	out = runTool(t, ctx, nil, "/usr/bin/python3", "-c", confluentReadAll, b.Kafka, night, strconv.Itoa(alerts))
	sameAlerts(t, "python3-confluent-kafka", readFramed(t, "python3-confluent-kafka", out), want)

	catDir := filepath.Join(dir, "cat") + "/"
	if out, err := runBinary(t, "cat", "--eof", "kafka://"+b.Kafka+"/"+night, catDir); err != nil {
		t.Fatalf("cat: %v\n%s", err, out)
	}
	sameAlerts(t, "ztfbroker cat", readDir(t, catDir, ".avro"), want)

	archDir := filepath.Join(dir, "archive")
	date := strings.TrimSuffix(strings.TrimPrefix(night, "ztf_"), "_programid1")
	if out, err := runBinary(t, "archive", "--bootstrap", b.Kafka, "--night", date, "--program", "1", "--out", archDir, "--level", "1"); err != nil {
		t.Fatalf("archive: %v\n%s", err, out)
	}
	tarballs, _ := filepath.Glob(filepath.Join(archDir, "*.tar.gz"))
	if len(tarballs) != 1 {
		t.Fatalf("archive made %q", tarballs)
	}
	members := filepath.Join(dir, "members")
	if err := os.MkdirAll(members, 0o755); err != nil {
		t.Fatal(err)
	}
	runTool(t, ctx, nil, "tar", "-xzf", tarballs[0], "-C", members)
	sameAlerts(t, "ztfbroker archive", readDir(t, members, ".avro"), want)
}

// readDir returns the contents of the files in dir ending in ext.
func readDir(t *testing.T, dir, ext string) [][]byte {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
	var vs [][]byte
	for _, p := range paths {
		v, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

// batchCodecs counts the record batches a consumer fetched by codec.
type batchCodecs struct {
	mu sync.Mutex
	n  map[uint8]int
}

func (c *batchCodecs) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	c.mu.Lock()
	c.n[m.CompressionType]++
	c.mu.Unlock()
}

// TestServePackagerSettings: serve hands packager.compression and
// packager.partitions to its in-process packager: tonight's topic has the
// partitions asked for and holds batches of the codec asked for.
func TestServePackagerSettings(t *testing.T) {
	for _, tc := range []struct {
		set        []string
		codec      uint8 // kgo's CompressionType
		partitions int
	}{
		{nil, 4, 4}, // the defaults: zstd, 4
		{[]string{"--set", "packager.compression=snappy", "--set", "packager.partitions=2"}, 2, 2},
	} {
		t.Run(fmt.Sprint(tc.set), func(t *testing.T) {
			b := startBroker(t, "", append([]string{"--packager=true"}, tc.set...)...)
			topic := "ztf_" + time.Now().UTC().Format("20060102") + "_programid1"
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// The test's clients may auto-create a topic they ask about
			// (with num.partitions): wait for the packager to create it.
			if !b.waitLog(`"topic created","topic":"` + topic + `","ztf.alert.format"`) {
				t.Fatalf("the packager did not create %s\n%s", topic, b.Logs())
			}
			waitFilled(ctx, t, b, topic, 1)
			codecs := &batchCodecs{n: map[uint8]int{}}
			if recs := consumeTopic(t, b.Kafka, topic, kgo.WithHooks(codecs)); len(recs) == 0 {
				t.Fatal("nothing read")
			}
			if len(codecs.n) != 1 || codecs.n[tc.codec] == 0 {
				t.Errorf("batches by codec %v, want all %d", codecs.n, tc.codec)
			}
			tds, err := kadm.NewClient(newClient(t, b.Kafka)).ListTopics(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(tds[topic].Partitions); n != tc.partitions {
				t.Errorf("%d partitions, want %d\n%s", n, tc.partitions, b.Logs())
			}
		})
	}
}
