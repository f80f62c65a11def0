package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

func initPID(t *testing.T, c *GroupCoordinator, version int16) (int64, int16) {
	t.Helper()
	r := kmsg.NewPtrInitProducerIDRequest()
	r.Version = version
	resp := c.InitProducerID(context.Background(), r)
	wantCode(t, "InitProducerID", resp.ErrorCode, nil)
	return resp.ProducerID, resp.ProducerEpoch
}

func TestProducerIDsPersist(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	seen := map[int64]bool{}
	for v := int16(0); v <= 4; v++ {
		id, epoch := initPID(t, tc.GroupCoordinator, v)
		if seen[id] || epoch != 0 {
			t.Fatalf("v%d: id %d (seen %v) epoch %d", v, id, seen[id], epoch)
		}
		seen[id] = true
		tc.reopen()
	}
	r := kmsg.NewPtrInitProducerIDRequest()
	r.TransactionalID = kmsg.StringPtr("txn")
	if code := tc.InitProducerID(context.Background(), r).ErrorCode; code == 0 {
		t.Fatal("transactional id accepted")
	}
}

// idemBatch is a batch of n records from producer pid at epoch, base
// sequence seq.
func idemBatch(t *testing.T, pid int64, epoch int16, seq, n int32) []byte {
	b := makeBatch(t, testBatch{baseTS: 1, tsDeltas: deltas(int(n), 1), producerID: pid, sequence: seq})
	binary.BigEndian.PutUint16(b[51:], uint16(epoch)) // producerEpoch
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// Idempotent produce through a broker: retries in the window are answered
// with their first offsets and not written; gaps, overlaps and old epochs
// are refused; the state survives a restart (rebuilt by the logs, issue
// 11), a DeleteRecords (KIP-360) and not a topic deletion; idle producers
// expire.
func TestProducerSequences(t *testing.T) {
	e := newEnv(t, nil)
	b := e.open()
	seqs, err := newProducerSequences(b.Meta(), 24*time.Hour, zap.NewNop(), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	b.SetProducerCheck(seqs)
	mustTopic(t, b, "alerts")
	const pid = 5
	want := func(what string, batch []byte, wantOff int64, wantErr error) {
		t.Helper()
		off, _, err := b.Produce(context.Background(), "alerts", 0, batch)
		if !errors.Is(err, wantErr) || (err == nil && off != wantOff) {
			t.Fatalf("%s: offset %d err %v, want %d %v", what, off, err, wantOff, wantErr)
		}
	}
	end := func() int64 {
		_, hw, err := b.Offsets(context.Background(), "alerts", 0)
		if err != nil {
			t.Fatal(err)
		}
		return hw
	}
	for i := int32(0); i < 7; i++ {
		want("in order", idemBatch(t, pid, 0, i*10, 10), int64(i)*10, nil)
	}
	want("retry of a batch in the window", idemBatch(t, pid, 0, 50, 10), 50, nil)
	want("retry of the last batch", idemBatch(t, pid, 0, 60, 10), 60, nil)
	if end() != 70 {
		t.Fatalf("duplicates were written: log end %d", end())
	}
	want("retry older than the window", idemBatch(t, pid, 0, 10, 10), 0, kerr.OutOfOrderSequenceNumber)
	want("gap", idemBatch(t, pid, 0, 80, 10), 0, kerr.OutOfOrderSequenceNumber)
	want("overlap", idemBatch(t, pid, 0, 65, 10), 0, kerr.OutOfOrderSequenceNumber)

	// After a restart the log has rebuilt the state: a retry is still
	// recognized, with no producer record in pebble.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = e.open()
	b.SetProducerCheck(seqs)
	want("retry after restart", idemBatch(t, pid, 0, 60, 10), 60, nil)
	want("next after restart", idemBatch(t, pid, 0, 70, 5), 70, nil)

	// Epochs: a new epoch restarts at 0; the old one is fenced.
	want("new epoch not at 0", idemBatch(t, pid, 1, 5, 1), 0, kerr.OutOfOrderSequenceNumber)
	want("new epoch", idemBatch(t, pid, 1, 0, 1), 75, nil)
	want("old epoch", idemBatch(t, pid, 0, 75, 1), 0, kerr.InvalidProducerEpoch)
	want("non-idempotent batch", e.batch(1, 1, 10), 76, nil)

	// Another partition, another producer: independent.
	other := mustTopic(t, b, "other")
	if off, _, err := b.Produce(context.Background(), other, 0, idemBatch(t, pid, 1, 1000, 1)); err != nil || off != 0 {
		t.Fatalf("unknown producer on a partition must be accepted at any sequence: %d %v", off, err)
	}

	// Sequences wrap at MaxInt32.
	want("before the wrap", idemBatch(t, 6, 0, math.MaxInt32-1, 2), 77, nil)
	want("after the wrap", idemBatch(t, 6, 0, 0, 1), 79, nil)

	// DeleteRecords keeps producer state (KIP-360): the retry of a
	// deleted batch is still a duplicate, not written again.
	if _, err := b.DeleteRecords(context.Background(), "alerts", 0, -1); err != nil {
		t.Fatal(err)
	}
	want("retry of a deleted batch", idemBatch(t, pid, 1, 0, 1), 75, nil)
	if end() != 80 {
		t.Fatalf("log end %d after a retry of a deleted batch, want 80", end())
	}

	// Idle producers are forgotten after producer.id.expiration.ms: the
	// next write may then start anywhere.
	e.clock.Advance(25 * time.Hour)
	want("expired producer", idemBatch(t, pid, 1, 500, 1), 80, nil)

	// A deleted topic's producers go with it.
	if err := b.DeleteTopic(context.Background(), "alerts"); err != nil {
		t.Fatal(err)
	}
	mustTopic(t, b, "alerts")
	want("producer on a recreated topic", idemBatch(t, pid, 1, 501, 1), 0, nil)
	want("old epoch on a recreated topic", idemBatch(t, pid, 0, 0, 1), 0, kerr.InvalidProducerEpoch)
}

// Sequence records of earlier versions are dropped from pebble at start.
func TestOldSequenceRecordsDropped(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	key := append([]byte(producerSeqPrefix), "anything"...)
	if err := tc.db.Set(key, []byte("{}"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	tc.reopen()
	if _, closer, err := tc.db.Get(key); !errors.Is(err, pebble.ErrNotFound) {
		if closer != nil {
			closer.Close()
		}
		t.Fatalf("old sequence record kept: %v", err)
	}
}
