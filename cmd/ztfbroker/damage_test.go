package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Issue 11, damaged files, against the real binary.

func damageTopics(t *testing.T, addr string, names ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(newClient(t, addr)).CreateTopics(ctx, 1, 1, nil, names...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// produceN writes n records "<topic>-<i>" to partition 0 of topic.
func produceN(t *testing.T, addr, topic string, n int) {
	t.Helper()
	cl := newClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Value: fmt.Appendf(nil, "%s-%05d", topic, i)}
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// (a) A damaged log-start-offset file takes its partition offline, not the
// broker: the other topics serve, the damaged one answers
// KAFKA_STORAGE_ERROR, and the log names its folder.
func TestDamagedPartitionServesTheRest(t *testing.T) {
	b := startBroker(t, "")
	damageTopics(t, b.Kafka, "intact", "hurt")
	produceN(t, b.Kafka, "intact", 20)
	produceN(t, b.Kafka, "hurt", 20)
	// The log-start-offset file exists once DeleteRecords moved the
	// start inside a segment.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, b.Kafka))
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "hurt", Partition: 0, At: 5})
	if resp, err := adm.DeleteRecords(ctx, offs); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
	b.Stop()
	damaged := filepath.Join(b.DataDir, "hurt-0")
	if err := os.WriteFile(filepath.Join(damaged, "log-start-offset"), []byte("\xde\xad\xbe\xef garbage"), 0o644); err != nil {
		t.Fatal(err)
	}

	b.Restart() // fails the test if the process exits
	if !b.waitLog("partition offline") || !strings.Contains(b.Logs(), damaged) || !strings.Contains(b.Logs(), "log-start-offset") {
		t.Fatalf("no error line naming the folder and the damage:\n%s", b.Logs())
	}
	produceN(t, b.Kafka, "intact", 1)
	if got := len(consumeAll(t, b.Kafka, "intact")); got != 21 {
		t.Fatalf("intact: %d records, want 21", got)
	}

	adm = kadm.NewClient(newClient(t, b.Kafka))
	// Metadata already names the partition offline, so kadm may refuse
	// before asking; either way the answer is KAFKA_STORAGE_ERROR.
	ends, err := adm.ListEndOffsets(ctx, "hurt")
	if err != nil && !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatal(err)
	}
	if end, _ := ends.Lookup("hurt", 0); err == nil && !errors.Is(end.Err, kerr.KafkaStorageError) {
		t.Fatalf("ListOffsets of the damaged partition: %+v, want KAFKA_STORAGE_ERROR", end)
	}
	cl := newClient(t, b.Kafka, kgo.DisableIdempotentWrite(), kgo.RecordRetries(1))
	pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
	defer pcancel()
	if err := cl.ProduceSync(pctx, &kgo.Record{Topic: "hurt", Value: []byte("x")}).FirstErr(); !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatalf("produce to the damaged partition: %v, want KAFKA_STORAGE_ERROR", err)
	}
	// A raw Fetch: franz-go retries KAFKA_STORAGE_ERROR without telling.
	details, err := adm.ListTopics(ctx, "hurt")
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.MaxWaitMillis, req.MaxBytes = 11, 100, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = "hurt", details["hurt"].ID // kgo sends the newest version, which names topics by id
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset, fp.PartitionMaxBytes = 5, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	req.Topics = append(req.Topics, ft)
	resp, err := req.RequestWith(ctx, newClient(t, b.Kafka))
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode); !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatalf("fetch of the damaged partition: %v, want KAFKA_STORAGE_ERROR", err)
	}
	if p := details["hurt"].Partitions[0]; !errors.Is(p.Err, kerr.KafkaStorageError) || len(p.OfflineReplicas) != 1 {
		t.Fatalf("metadata of the damaged partition: %+v, want KAFKA_STORAGE_ERROR and this node offline", p)
	}
	if v := metric(t, b, "ztfbroker_partitions_offline"); v != "1" {
		t.Fatalf("ztfbroker_partitions_offline %s, want 1", v)
	}
}

// serveRefused runs `ztfbroker serve` on dataDir expecting it to refuse to
// start; a broker still running after 20 s started on the damage.
func serveRefused(t *testing.T, dataDir string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve", "--data-dir", dataDir, "--listen", freeAddr(t),
		"--http", freeAddr(t), "--admin-http=", "--packager=false", "--archive=false")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("serve started on a damaged metadata store:\n%s", out)
	}
	if err == nil {
		t.Fatalf("serve exited 0 on a damaged metadata store:\n%s", out)
	}
	return string(out)
}

// (b) A metadata store that lost its topics (a bit flip in pebble's WAL
// after a clean stop) or does not open (CURRENT deleted) stops the start,
// naming the damage; --recover-metadata rebuilds the topic from its folder
// with every record at its offset, and produce goes on from there.
func TestMetadataDamageRecovered(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, meta string)
	}{
		{"WAL bit flip", func(t *testing.T, meta string) {
			wals, _ := filepath.Glob(filepath.Join(meta, "*.log"))
			flipped := 0
			for _, w := range wals {
				data, err := os.ReadFile(w)
				if err != nil || len(data) < 64 {
					continue
				}
				data[20] ^= 0x08 // inside the first record: pebble drops it and all after
				if err := os.WriteFile(w, data, 0o644); err != nil {
					t.Fatal(err)
				}
				flipped++
			}
			if flipped == 0 {
				t.Fatalf("no WAL in %s: %v", meta, wals)
			}
		}},
		{"CURRENT deleted", func(t *testing.T, meta string) {
			if err := os.Remove(filepath.Join(meta, "CURRENT")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			const topic, n = "ztf_night", 6000
			b := startBroker(t, "")
			damageTopics(t, b.Kafka, topic)
			produceN(t, b.Kafka, topic, n)
			b.Stop()
			c.damage(t, filepath.Join(b.DataDir, "meta"))

			out := serveRefused(t, b.DataDir)
			for _, want := range []string{"metadata damaged", topic + "-0", "--recover-metadata"} {
				if !strings.Contains(out, want) {
					t.Fatalf("refusal does not say %q:\n%s", want, out)
				}
			}

			r := startBroker(t, b.DataDir, "--recover-metadata")
			if !r.waitLog("metadata rebuilt from the partition folders") || !strings.Contains(r.Logs(), "meta.damaged-") {
				t.Fatalf("recovery not logged:\n%s", r.Logs())
			}
			recs := consumeAll(t, r.Kafka, topic)
			if len(recs) != n {
				t.Fatalf("%d records after recovery, want %d", len(recs), n)
			}
			for i, rec := range recs {
				if want := fmt.Sprintf("%s-%05d", topic, i); rec.Offset != int64(i) || string(rec.Value) != want {
					t.Fatalf("record %d: offset %d value %q, want %q", i, rec.Offset, rec.Value, want)
				}
			}
			cl := newClient(t, r.Kafka, kgo.DisableIdempotentWrite())
			res, err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte("after")}).First()
			if err != nil || res.Offset != n {
				t.Fatalf("produce after recovery: offset %v, %v; want %d", res, err, n)
			}
		})
	}
}

// (c) verify refuses the data directory of a running broker (its active
// segments are being written) unless --live, which reads each partition up
// to its last complete batch.
func TestVerifyRefusesRunningBroker(t *testing.T) {
	b := startBroker(t, "")
	produceN(t, b.Kafka, "busy", 50)
	out, err := runBinary(t, "verify", "--data-dir", b.DataDir)
	if err == nil || !strings.Contains(out, "in use by a running broker") || !strings.Contains(out, "--live") {
		t.Fatalf("verify of a running broker's data dir: %v\n%s", err, out)
	}
	out, err = runBinary(t, "verify", "--live", "--data-dir", b.DataDir)
	if err != nil || !strings.Contains(out, "ok      busy-0") || !strings.Contains(out, "0 damaged (live") {
		t.Fatalf("verify --live: %v\n%s", err, out)
	}
	b.Stop()
	out, err = runBinary(t, "verify", "--data-dir", b.DataDir)
	if err != nil || !strings.Contains(out, "0 damaged") {
		t.Fatalf("verify after the stop: %v\n%s", err, out)
	}
}
