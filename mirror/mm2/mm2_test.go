// Package mm2_test runs Apache Kafka's own MirrorMaker 2 (4.1.1, dedicated
// mode, from its Maven jars) between two real `ztfbroker serve` processes:
// the tools of the Kafka ecosystem unchanged (issue 17). MM2 keeps its
// state in compacted topics on the destination (Kafka Connect's offsets,
// configs and status, its heartbeats and checkpoints) and refuses to run
// when they are not compacted. The folder holds no Go besides this test,
// which has a package of its own so that it runs beside cmd/ztfbroker's.
package mm2_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/internal/binarytest"
)

// kafkaVersion is the Apache Kafka whose MirrorMaker 2 the test runs, the
// version cmd/ztfbroker's tests and scripts/mirror-vs-mm2.sh run.
const kafkaVersion = "4.1.1"

// binary is ztfbroker built once for this test.
var binary string

func TestMain(m *testing.M) { binarytest.Main(m, "../../cmd/ztfbroker", &binary) }

// MirrorMaker 2 copies a topic from one ztfbroker to another as up.<topic>
// (its default replication policy), partition for partition, keys, values,
// timestamps and headers equal. Its internal topics are on ztfbroker,
// created compacted, and serve's cleaner compacts Connect's offsets topic
// while MM2 runs; read back from the start, that topic still holds, for
// each upstream partition, the offset of the last record MM2 copied.
// Killed and started again, MM2 reads its state back from those topics and
// copies what was sent since, nothing twice.
func TestMirrorMaker2BetweenZtfbrokers(t *testing.T) {
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed by this test and is not installed (.ci/run installs it): %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	jars := mm2Jars(t, ctx)
	// The cleaner looks every 100 ms, so that it runs within the test.
	up := startServe(t, "--set", "log.cleaner.backoff.ms=100")
	down := startServe(t, "--set", "log.cleaner.backoff.ms=100")

	const topic, partitions, perRound = "ztf_mm2", 2, 50
	upCl, downCl := client(t, up.kafka), client(t, down.kafka)
	if _, err := kadm.NewClient(upCl).CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	mm2 := startMM2(t, jars, up.kafka, down.kafka, topic)

	// Each round sends perRound records and waits until all sent so far
	// are copied, in order, nothing twice.
	var sent []*kgo.Record
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	round := func(r int) {
		t.Helper()
		var batch []*kgo.Record
		for i := 0; i < perRound; i++ {
			n := r*perRound + i
			batch = append(batch, &kgo.Record{Topic: topic, Partition: int32(n % partitions),
				Key:       []byte(fmt.Sprintf("ZTF26aa%05d", n)),
				Value:     []byte(fmt.Sprintf(`{"candid":%d,"round":%d}`, 3000000000000+n, r)),
				Timestamp: base.Add(time.Duration(n) * 1500 * time.Microsecond).Truncate(time.Millisecond),
				Headers:   []kgo.RecordHeader{{Key: "ztf.field", Value: []byte(strconv.Itoa(600 + n%7))}}})
		}
		if err := upCl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, batch...)
		copied := consumeAll(t, ctx, down.kafka, "up."+topic, len(sent), mm2)
		for p := int32(0); p < partitions; p++ {
			want, got := inPartition(sent, p), inPartition(copied, p)
			if len(got) != len(want) {
				t.Fatalf("round %d partition %d: %d records copied, want %d", r, p, len(got), len(want))
			}
			for i := range want {
				w, g := want[i], got[i]
				if string(g.Key) != string(w.Key) || string(g.Value) != string(w.Value) || !g.Timestamp.Equal(w.Timestamp) ||
					len(g.Headers) != 1 || g.Headers[0].Key != w.Headers[0].Key || string(g.Headers[0].Value) != string(w.Headers[0].Value) {
					t.Fatalf("partition %d record %d: copied %s=%s at %v %v, sent %s=%s at %v %v", p, i,
						g.Key, g.Value, g.Timestamp, g.Headers, w.Key, w.Value, w.Timestamp, w.Headers)
				}
			}
		}
	}
	// Two rounds, so that MM2 stores a position for each partition more
	// than once: the second round's records make the first's dirty.
	round(0)
	round(1)

	// MM2's internal topics, each created by MM2 with cleanup.policy=compact:
	// Kafka Connect's three, the heartbeats and the checkpoints on the
	// destination, the offset syncs on the source.
	offsets := "mm2-offsets.up.internal"
	for _, c := range []struct {
		cl     *kgo.Client
		topics []string
	}{
		{downCl, []string{offsets, "mm2-configs.up.internal", "mm2-status.up.internal", "heartbeats", "up.checkpoints.internal"}},
		{upCl, []string{"mm2-offset-syncs.down.internal"}},
	} {
		// MM2's connectors create theirs as they start, the last ones
		// possibly just after the first records are copied.
		var rcs kadm.ResourceConfigs
		for {
			var err error
			rcs, err = kadm.NewClient(c.cl).DescribeTopicConfigs(ctx, c.topics...)
			if err == nil {
				for _, rc := range rcs {
					if err = rc.Err; err != nil {
						err = fmt.Errorf("%s: %w", rc.Name, err)
						break
					}
				}
			}
			if err == nil {
				break
			}
			if !errors.Is(err, kerr.UnknownTopicOrPartition) || ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, rc := range rcs {
			policy := ""
			for _, cfg := range rc.Configs {
				if cfg.Key == "cleanup.policy" && cfg.Value != nil {
					policy = *cfg.Value
				}
			}
			if policy != "compact" {
				t.Errorf("%s: cleanup.policy %q, want compact", rc.Name, policy)
			}
		}
	}

	// The cleaner compacts the offsets topic (MM2 created it with the
	// segment.ms and dirty ratio the test gave it).
	removed := `ztfbroker_log_cleaner_records_removed_total{topic="` + offsets + `"}`
	for metric(t, down.http, removed) == 0 {
		if ctx.Err() != nil {
			t.Fatalf("the cleaner removed nothing from %s:\n%s", offsets, down.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Read back from the start, the compacted offsets topic has offsets
	// rising with gaps, and each upstream partition's last stored position
	// is its last record's, once MM2 has flushed it.
	stored, read, span := waitPositions(t, ctx, down.kafka, offsets, topic, sent, true)
	t.Logf("%s: %d records over %d offsets, %.0f removed by the cleaner; positions %v", offsets, read, span,
		metric(t, down.http, removed), stored)

	// MM2 killed and started again reads its connectors' configs and its
	// positions back from the compacted topics and carries on where it
	// stopped: a third round is copied after the first two, nothing twice
	// (its positions were flushed before the kill).
	mm2.kill()
	mm2 = startMM2(t, jars, up.kafka, down.kafka, topic)
	round(2)
	waitPositions(t, ctx, down.kafka, offsets, topic, sent, false)
	ends, err := kadm.NewClient(downCl).ListEndOffsets(ctx, "up."+topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if want := int64(len(inPartition(sent, o.Partition))); o.Offset != want {
			t.Errorf("up.%s partition %d: %d records after the restart, want %d", topic, o.Partition, o.Offset, want)
		}
	})
}

// waitPositions waits until MM2's offsets topic, read from its start,
// holds for each partition of topic the offset of the last record sent
// (MirrorSourceTask stores the offset of the last record it copied), and,
// when gaps, with offsets missing where the cleaner removed records.
func waitPositions(t *testing.T, ctx context.Context, addr, offsets, topic string, sent []*kgo.Record, gaps bool) (map[int32]int64, int64, int64) {
	t.Helper()
	lastOf := map[int32]int64{}
	for _, r := range sent {
		lastOf[r.Partition]++
	}
	for p := range lastOf {
		lastOf[p]--
	}
	for {
		stored, read, span := mm2Positions(t, ctx, addr, offsets, topic)
		done := !gaps || read < span
		for p, last := range lastOf {
			done = done && stored[p] == last
		}
		if done {
			return stored, read, span
		}
		if ctx.Err() != nil {
			t.Fatalf("%s read back: positions %v (want %v), %d records over %d offsets", offsets, stored, lastOf, read, span)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mm2Positions reads Connect's offsets topic from its start to its high
// watermark: the last position MirrorSourceConnector stored for each
// partition of topic, how many records were read and over how many offsets.
// Offsets must rise.
func mm2Positions(t *testing.T, ctx context.Context, addr, offsets, topic string) (map[int32]int64, int64, int64) {
	t.Helper()
	cl := client(t, addr)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, offsets)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, offsets)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	start, _ := starts.Lookup(offsets, 0)
	end, _ := ends.Lookup(offsets, 0)
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{offsets: {0: kgo.NewOffset().At(start.Offset)}})
	positions := map[int32]int64{}
	var read int64
	prev := int64(-1)
	for prev < end.Offset-1 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatalf("read %s: %v", offsets, err)
		}
		for _, r := range fs.Records() {
			if r.Offset <= prev {
				t.Fatalf("%s: offset %d after %d", offsets, r.Offset, prev)
			}
			prev = r.Offset
			if r.Offset >= end.Offset {
				continue
			}
			read++
			// Connect's key: ["MirrorSourceConnector",{"cluster":"up","partition":0,"topic":"ztf_mm2"}].
			var key []json.RawMessage
			var part struct {
				Topic     string `json:"topic"`
				Partition int32  `json:"partition"`
			}
			var value struct {
				Offset *int64 `json:"offset"`
			}
			var name string
			if json.Unmarshal(r.Key, &key) != nil || len(key) != 2 || json.Unmarshal(key[0], &name) != nil ||
				name != "MirrorSourceConnector" || json.Unmarshal(key[1], &part) != nil || part.Topic != topic {
				continue
			}
			if len(r.Value) == 0 { // a tombstone: the position was forgotten
				delete(positions, part.Partition)
				continue
			}
			if err := json.Unmarshal(r.Value, &value); err != nil || value.Offset == nil {
				t.Fatalf("%s offset %d: value %q is no position", offsets, r.Offset, r.Value)
			}
			positions[part.Partition] = *value.Offset
		}
	}
	return positions, read, end.Offset - start.Offset
}

// inPartition returns the records of partition p, in order.
func inPartition(rs []*kgo.Record, p int32) []*kgo.Record {
	var out []*kgo.Record
	for _, r := range rs {
		if r.Partition == p {
			out = append(out, r)
		}
	}
	return out
}

// consumeAll reads topic from its start until n records arrived (the topic
// appears when MM2 creates it), failing with MM2's log if they do not.
func consumeAll(t *testing.T, ctx context.Context, addr, topic string, n int, mm2 *mm2Proc) []*kgo.Record {
	t.Helper()
	cl := client(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	var got []*kgo.Record
	for len(got) < n {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		got = append(got, fs.Records()...)
		if ctx.Err() != nil || mm2.exited() {
			t.Fatalf("%s: %d of %d records copied; MirrorMaker 2's log:\n%s", topic, len(got), n, mm2.logs())
		}
	}
	return got
}

func client(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.MetadataMinAge(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// serveProc is a running `ztfbroker serve`.
type serveProc struct {
	kafka, http string
	cmd         *exec.Cmd
	log         string
}

func (s *serveProc) logs() string { b, _ := os.ReadFile(s.log); return string(b) }

// startServe starts `ztfbroker serve` on free loopback ports with a fresh
// data folder and waits until it answers; it is killed at the test's end.
func startServe(t *testing.T, extra ...string) *serveProc {
	t.Helper()
	dir := t.TempDir()
	s := &serveProc{kafka: freeAddr(t), http: freeAddr(t), log: filepath.Join(dir, "serve.log")}
	log, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	s.cmd = exec.Command(binary, append([]string{"serve", "--data-dir", filepath.Join(dir, "data"), "--listen", s.kafka,
		"--http", s.http, "--admin-http=", "--packager=false", "--archive=false"}, extra...)...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Signal(syscall.SIGKILL); s.cmd.Wait() })
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", s.kafka); err == nil {
			c.Close()
			return s
		}
	}
	t.Fatalf("ztfbroker serve not ready after 30 s:\n%s", s.logs())
	return nil
}

// metric is the value of a /metrics sample (name with its labels), 0 when
// it is not exported yet.
func metric(t *testing.T, addr, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
