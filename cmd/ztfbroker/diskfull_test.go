package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// smallDisk mounts a tmpfs of size bytes for a data directory. The tests run
// as root in CI; a failed mount fails the test, so that the disk-full cases
// are never silently skipped.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s (these tests need root): %v: %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a filler file until the file system is full, leaving about
// leave bytes free, and returns its path.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * int64(st.Bsize)
		if free <= leave {
			return name
		}
		n := min(int64(len(chunk)), free-leave)
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return name
			}
			t.Fatal(err)
		}
	}
}

// produceCode sends one record in a raw Produce request and returns the
// partition's error code: clients retry KAFKA_STORAGE_ERROR until their
// delivery timeout, so only the wire shows it.
func produceCode(t *testing.T, cl *kgo.Client, topic string) int16 {
	t.Helper()
	_, code := produceRaw(t, cl, topic, wireBatch{count: 1, baseTS: time.Now().UnixMilli(), maxTS: time.Now().UnixMilli(),
		body: wireRecord(0, 0, []byte("alert"))}.encode())
	return code
}

// produce sends one record and returns the error (a refusal shows as the
// client's timeout: it retries KAFKA_STORAGE_ERROR).
func produce(cl *kgo.Client, topic string, value []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr()
}

// commit commits offset 1 of topic/0 for a simple group and returns the
// partition's error (nil when stored).
func commit(t *testing.T, adm *kadm.Client, topic string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var offs kadm.Offsets
	offs.AddOffset(topic, 0, 1, -1)
	resp, err := adm.CommitOffsets(ctx, "diskfull-group", offs)
	if err != nil {
		return err
	}
	return resp.Error()
}

// alive fails the test unless the broker process runs and answers.
func alive(t *testing.T, b *serveProc, adm *kadm.Client) {
	t.Helper()
	select {
	case <-b.done:
		t.Fatalf("broker exited:\n%s", b.Logs())
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := adm.ListTopics(ctx); err != nil {
		t.Fatalf("broker does not answer: %v\n%s", err, b.Logs())
	}
}

// The disk fills under a producer: produce is refused with
// KAFKA_STORAGE_ERROR, everything acknowledged stays readable, offset
// commits are refused without taking the process down, and writes resume
// by themselves once the filler is deleted. A restart on the full disk
// starts and serves reads.
//
// On the code before issue 11's fix this fails: the partition stays
// read-only after the filler goes (a failed write was sticky), and a
// commit on the full disk ended the process (pebble's Fatalf exited).
func TestDiskFullRefusesWritesAndRecovers(t *testing.T) {
	disk := smallDisk(t, 64<<20)
	const mark = 4 << 20
	b := startBroker(t, filepath.Join(disk, "data"), "--set", fmt.Sprintf("log.dir.free.min.bytes=%d", mark))
	const topic = "diskfull"
	cl := newClient(t, b.Kafka, kgo.DisableIdempotentWrite(), kgo.RecordRetries(2), kgo.ProducerLinger(0))
	adm := kadm.NewClient(newClient(t, b.Kafka))
	value := bytes.Repeat([]byte("alert "), 40<<10/6) // a 40 kB alert
	var acked int
	for range 20 {
		if err := produce(cl, topic, value); err != nil {
			t.Fatalf("produce on an empty disk: %v", err)
		}
		acked++
	}
	if err := commit(t, adm, topic); err != nil {
		t.Fatalf("commit on an empty disk: %v", err)
	}

	// Fill the disk to the last byte while producing: refused, by the
	// mark or by ENOSPC itself, never accepted and lost.
	done := make(chan struct{})
	var refused error
	go func() {
		defer close(done)
		for refused == nil {
			if err := produce(cl, topic, value); err != nil {
				refused = err
				return
			}
			acked++
		}
	}()
	filler := fill(t, disk, 0)
	<-done
	t.Logf("first refusal: %v", refused)
	time.Sleep(1100 * time.Millisecond) // the free space is read at most once a second
	if code := produceCode(t, cl, topic); code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce on a full disk: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(code))
	}
	if got := metric(t, b, "ztfbroker_log_dir_writable"); got != "0" {
		t.Fatalf("ztfbroker_log_dir_writable %s on a full disk, want 0", got)
	}
	if !b.waitLog("free space under log.dir.free.min.bytes") {
		t.Fatalf("no log line for crossing the mark:\n%s", b.Logs())
	}
	for range 3 {
		if err := commit(t, adm, topic); !errors.Is(err, kerr.CoordinatorLoadInProgress) {
			t.Fatalf("offset commit on a full disk: %v, want COORDINATOR_LOAD_IN_PROGRESS", err)
		}
	}
	alive(t, b, adm)
	if recs := consumeAll(t, b.Kafka, topic); len(recs) < acked {
		t.Fatalf("read %d records, %d were acknowledged", len(recs), acked)
	}

	// Space is back: writes resume without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := produce(cl, topic, value)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("produce still refused 15 s after the disk was freed: %v\n%s", err, b.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := commit(t, adm, topic); err != nil {
		t.Fatalf("commit after the disk was freed: %v", err)
	}
	if !b.waitLog("free space back above log.dir.free.min.bytes") {
		t.Fatalf("no log line for crossing the mark back:\n%s", b.Logs())
	}
	if got := metric(t, b, "ztfbroker_log_dir_writable"); got != "1" {
		t.Fatalf("ztfbroker_log_dir_writable %s after the disk was freed, want 1", got)
	}
	want := len(consumeAll(t, b.Kafka, topic))

	// Restart on a disk under the mark: it starts, serves reads, refuses
	// writes.
	b.Stop()
	fill(t, disk, mark/4)
	b.Restart()
	if got := len(consumeAll(t, b.Kafka, topic)); got != want {
		t.Fatalf("read %d records after a restart on a full disk, want %d", got, want)
	}
	// Pebble's open may delete an old WAL: fill what it freed.
	fill(t, disk, mark/4)
	time.Sleep(1100 * time.Millisecond)
	cl2 := newClient(t, b.Kafka, kgo.DisableIdempotentWrite())
	if code := produceCode(t, cl2, topic); code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce after a restart on a full disk: %v, want KAFKA_STORAGE_ERROR\n%s", kerr.ErrorForCode(code), b.Logs())
	}
	if free := metric(t, b, "ztfbroker_log_dir_free_bytes"); free == "0" || free == "" {
		t.Fatalf("ztfbroker_log_dir_free_bytes %q", free)
	}
}

// log.dir.free.min.bytes above the free space refuses produce and topic
// creation before the disk is anywhere near full, and reads go on. On the
// code before issue 11 the setting does not exist (the start fails).
func TestFreeSpaceMarkRefusesBeforeFull(t *testing.T) {
	disk := smallDisk(t, 64<<20)
	b := startBroker(t, filepath.Join(disk, "data"))
	const topic = "marked"
	cl := newClient(t, b.Kafka, kgo.DisableIdempotentWrite(), kgo.RecordRetries(2))
	for range 5 {
		if err := produce(cl, topic, []byte("alert")); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	b.Stop()
	b.args = append(b.args, "--set", "log.dir.free.min.bytes=104857600") // 100 MiB on a 64 MiB disk
	b.Restart()
	cl = newClient(t, b.Kafka, kgo.DisableIdempotentWrite())
	if code := produceCode(t, cl, topic); code != kerr.KafkaStorageError.Code {
		t.Fatalf("produce under the mark: %v, want KAFKA_STORAGE_ERROR\n%s", kerr.ErrorForCode(code), b.Logs())
	}
	adm := kadm.NewClient(newClient(t, b.Kafka))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, 1, 1, nil, "another")
	if err == nil {
		err = resp.Err
	}
	if !errors.Is(err, kerr.KafkaStorageError) {
		t.Fatalf("create topic under the mark: %v, want KAFKA_STORAGE_ERROR", err)
	}
	if got := len(consumeAll(t, b.Kafka, topic)); got != 5 {
		t.Fatalf("read %d records under the mark, want 5", got)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(disk, &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < 32<<20 {
		t.Fatalf("only %d bytes free: the refusal must come before the disk is full", free)
	}
	if got := metric(t, b, "ztfbroker_log_dir_writable"); got != "0" {
		t.Fatalf("ztfbroker_log_dir_writable %s under the mark, want 0", got)
	}
}
