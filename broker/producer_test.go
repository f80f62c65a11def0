package broker

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
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

// producerLog stands in for a partition: it appends per Check's verdict.
type producerLog struct {
	t     *testing.T
	s     *ProducerSequences
	topic string
	part  int32
	end   int64
}

func (l *producerLog) produce(b ProducerBatch) (int64, error) {
	l.t.Helper()
	off, dup, err := l.s.Check(l.topic, l.part, b, l.end)
	if err != nil || dup {
		return off, err
	}
	off = l.end
	l.end += int64(b.LastOffsetDelta) + 1
	l.s.Appended(l.topic, l.part, b, off)
	return off, nil
}

func TestProducerSequences(t *testing.T) {
	tc := newTestCoordinator(t, nil)
	id, _ := initPID(t, tc.GroupCoordinator, 4)
	l := &producerLog{t: t, s: tc.Producers(), topic: "alerts", part: 0}
	batch := func(epoch int16, seq, n int32) ProducerBatch {
		return ProducerBatch{ProducerID: id, Epoch: epoch, BaseSequence: seq, LastOffsetDelta: n - 1}
	}
	want := func(what string, b ProducerBatch, wantOff int64, wantErr error) {
		t.Helper()
		off, err := l.produce(b)
		if !errors.Is(err, wantErr) || (err == nil && off != wantOff) {
			t.Fatalf("%s: offset %d err %v, want %d %v", what, off, err, wantOff, wantErr)
		}
	}
	for i := int32(0); i < 7; i++ {
		want("in order", batch(0, i*10, 10), int64(i)*10, nil)
	}
	want("retry of a batch in the window", batch(0, 50, 10), 50, nil)
	want("retry of the last batch", batch(0, 60, 10), 60, nil)
	if l.end != 70 {
		t.Fatalf("duplicates were written: log end %d", l.end)
	}
	want("retry older than the window", batch(0, 10, 10), 0, kerr.OutOfOrderSequenceNumber)
	want("gap", batch(0, 80, 10), 0, kerr.OutOfOrderSequenceNumber)
	want("overlap", batch(0, 65, 10), 0, kerr.OutOfOrderSequenceNumber)

	// Durable: after a restart, a retry is still recognized.
	tc.reopen()
	l.s = tc.Producers()
	want("retry after restart", batch(0, 60, 10), 60, nil)
	want("next after restart", batch(0, 70, 5), 70, nil)

	// Epochs: a new epoch restarts at 0; the old one is fenced.
	want("new epoch not at 0", batch(1, 5, 1), 0, kerr.OutOfOrderSequenceNumber)
	want("new epoch", batch(1, 0, 1), 75, nil)
	want("old epoch", batch(0, 75, 1), 0, kerr.InvalidProducerEpoch)

	// Another partition, another producer, no producer: independent.
	other := &producerLog{t: t, s: l.s, topic: "alerts", part: 1}
	if off, err := other.produce(batch(1, 1000, 1)); err != nil || off != 0 {
		t.Fatalf("unknown producer on a partition must be accepted at any sequence: %d %v", off, err)
	}
	if off, err := l.produce(ProducerBatch{ProducerID: -1, Epoch: -1, BaseSequence: -1}); err != nil || off != 76 {
		t.Fatalf("non-idempotent batch: %d %v", off, err)
	}

	// A crash lost the log's unsynced tail: the retry is written again.
	l.end = 75
	want("retry of a batch the log lost", batch(1, 0, 1), 75, nil)
	if l.end != 76 {
		t.Fatalf("lost batch not rewritten: log end %d", l.end)
	}

	// Sequences wrap at MaxInt32.
	wrap := &producerLog{t: t, s: l.s, topic: "wrap", part: 0}
	if _, err := wrap.produce(batch(0, math.MaxInt32-1, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := wrap.produce(batch(0, 0, 1)); err != nil {
		t.Fatalf("sequence after MaxInt32: %v", err)
	}

	// Idle producers are forgotten after producer.id.expiration.ms.
	tc.clk.Advance(25 * time.Hour)
	tc.Tick()
	if n := len(l.s.entries); n != 0 {
		t.Fatalf("%d producer entries kept past expiration", n)
	}
	tc.reopen()
	if n := len(tc.Producers().entries); n != 0 {
		t.Fatalf("%d expired producer entries back after restart", n)
	}
}
