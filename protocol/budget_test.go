package protocol

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// announce opens a connection and sends the size of a frame of n bytes and
// then sent of its bytes, which need not be a valid request: the test is
// about what the server holds before the frame is complete. The writes run
// on their own goroutine, since a server that stops reading blocks them.
func announce(t *testing.T, addr string, n, sent int) net.Conn {
	t.Helper()
	c := dial(t, addr)
	c.SetDeadline(time.Time{})
	go func() {
		var size [4]byte
		binary.BigEndian.PutUint32(size[:], uint32(n))
		c.Write(size[:])
		c.Write(make([]byte, sent))
	}()
	return c
}

// TestRequestReadTimeoutCoversWholeFrame closes a connection that sends a
// frame a byte at a time, each within the timeout but the whole beyond it.
func TestRequestReadTimeoutCoversWholeFrame(t *testing.T) {
	ts := startServer(t, Config{RequestReadTimeout: 300 * time.Millisecond}, nil)
	c := dial(t, ts.addr)
	f := frame(kmsg.NewPtrMetadataRequest(), 1)
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for _, b := range f {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	expectClosed(t, c)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("trickled frame closed after %v, want about the 300 ms read timeout", d)
	}
	<-closed
}

// TestFrameBufferGrowsAsBytesArrive: a frame announced at 50 MiB of which
// 100 KiB arrive holds a small buffer, not 50 MiB.
func TestFrameBufferGrowsAsBytesArrive(t *testing.T) {
	ts := startServer(t, Config{MaxRequestBytes: 64 << 20, RequestReadTimeout: 2 * time.Second}, nil)
	c := announce(t, ts.addr, 50<<20, 100<<10)
	waitFor(t, "the frame to be read into", func() bool { return ts.s.frames.Used() > 0 })
	time.Sleep(50 * time.Millisecond)
	if got := ts.s.frames.Used(); got > smallFrameBytes {
		t.Fatalf("100 KiB of a 50 MiB frame hold %d bytes, want at most %d", got, smallFrameBytes)
	}
	expectClosed(t, c) // the read timeout covers the whole frame
	waitFor(t, "the budget to be given back", func() bool { return ts.s.frames.Used() == 0 })
}

// TestFrameBudget: big frames stalled short of their end hold at most
// three quarters of queued.max.request.bytes plus the one frame allowed
// past it, and small requests are still answered meanwhile.
func TestFrameBudget(t *testing.T) {
	const budget = 8 << 20
	ts := startServer(t, Config{MaxRequestBytes: 64 << 20, QueuedMaxRequestBytes: budget,
		RequestReadTimeout: 3 * time.Second}, nil)
	var conns []net.Conn
	for range 8 {
		conns = append(conns, announce(t, ts.addr, 20<<20, 19<<20))
	}
	// The one frame allowed past the ceiling takes the budget past its
	// total: small requests still have their reserve.
	waitFor(t, "a frame past the ceiling", func() bool { return ts.s.frames.Used() > budget })
	start := time.Now()
	stillServing(t, ts.addr)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a small request was answered after %v, when the stalled frames timed out", d)
	}
	if got, most := ts.s.frames.Used(), int64(budget*3/4+20<<20+smallFrameBytes); got > most {
		t.Fatalf("8 stalled 20 MiB frames hold %d bytes, want at most %d", got, most)
	}
	for _, c := range conns {
		expectClosed(t, c)
	}
	waitFor(t, "the budget to be given back", func() bool { return ts.s.frames.Used() == 0 })
	stillServing(t, ts.addr)
}

// TestFrameLargerThanBudget completes a request bigger than
// queued.max.request.bytes when nothing else holds it.
func TestFrameLargerThanBudget(t *testing.T) {
	ts := startServer(t, Config{MaxRequestBytes: 32 << 20, QueuedMaxRequestBytes: 4 << 20}, nil)
	ts.b.CreateTopic(context.Background(), "big", 1, nil, false)
	batch := makeBatch(1, 9<<20, 1)
	r := rawRoundTrip(t, ts.addr, produceReq(7, 1, "big", 0, batch)).(*kmsg.ProduceResponse)
	if code := r.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("produce of a 9 MiB batch with a 4 MiB budget: error %d", code)
	}
	waitFor(t, "the budget to be given back", func() bool { return ts.s.frames.Used() == 0 })
}

// TestUnreadFetchesBounded pipelines fetches asking for 2 GiB on
// connections that never read: what waits to be written stays within
// max.inflight.response.bytes, each connection stops being served past
// connection.max.inflight.response.bytes, and a client that reads its
// answers still gets records, within the write timeout at worst.
func TestUnreadFetchesBounded(t *testing.T) {
	const total, perConn, fetchMax = 16 << 20, 2 << 20, 4 << 20
	ts := startServer(t, Config{MaxInflightResponseBytes: total, ConnectionMaxInflightResponseBytes: perConn,
		FetchMaxBytes: fetchMax, WriteTimeout: 3 * time.Second}, nil)
	ts.b.CreateTopic(context.Background(), "t", 1, nil, false)
	batch := makeBatch(1, 512<<10, 1)
	for range 40 {
		if _, _, err := ts.b.Produce(t.Context(), "t", 0, batch); err != nil {
			t.Fatal(err)
		}
	}
	var req []byte
	for i := range 50 {
		req = append(req, frame(fetchReq(11, 1<<31-1, 1<<31-1, fetchTarget{topic: "t"}), int32(i))...)
	}
	var wg sync.WaitGroup
	var conns []net.Conn
	for range 12 {
		c := dial(t, ts.addr)
		c.SetDeadline(time.Time{})
		conns = append(conns, c)
		wg.Add(1)
		go func() { defer wg.Done(); c.Write(req) }()
	}
	time.Sleep(time.Second)
	if got := ts.s.responses.Used(); got > total {
		t.Fatalf("unread fetches hold %d bytes, want at most max.inflight.response.bytes %d", got, total)
	}
	ts.s.mu.Lock()
	for c := range ts.s.conns {
		if q := c.queued.Load(); q > perConn+fetchMax+int64(len(batch)) {
			t.Errorf("a connection queues %d bytes, want at most %d and one answer", q, perConn)
		}
	}
	ts.s.mu.Unlock()

	// The reader waits as real clients do: on a loaded machine the
	// attackers' answers may still hold the whole budget, reserve too,
	// until their writes stall for WriteTimeout and their connections
	// are closed; what is given back then wakes the reader's fetch.
	read := fetchReq(11, 1<<20, 1<<20, fetchTarget{topic: "t"})
	read.MaxWaitMillis = 6000
	r := rawRoundTrip(t, ts.addr, read).(*kmsg.FetchResponse)
	if p := r.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
		t.Fatalf("a reading client during the attack: error %d, %d record bytes", p.ErrorCode, len(p.RecordBatches))
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	waitFor(t, "the budget to be given back", func() bool { return ts.s.responses.Used() == 0 })
}

// TestFetchFirstBatchLargerThanBudget: the first batch is served whole even
// when it is bigger than max.inflight.response.bytes.
func TestFetchFirstBatchLargerThanBudget(t *testing.T) {
	ts := startServer(t, Config{MaxInflightResponseBytes: 1 << 20}, nil)
	ts.b.CreateTopic(context.Background(), "t", 1, nil, false)
	batch := makeBatch(1, 3<<20, 1)
	if _, _, err := ts.b.Produce(t.Context(), "t", 0, batch); err != nil {
		t.Fatal(err)
	}
	// The reader waits as real clients do: on a loaded machine the
	// attackers' answers may still hold the whole budget, reserve too,
	// until their writes stall for WriteTimeout and their connections
	// are closed; what is given back then wakes the reader's fetch.
	read := fetchReq(11, 1<<20, 1<<20, fetchTarget{topic: "t"})
	read.MaxWaitMillis = 6000
	r := rawRoundTrip(t, ts.addr, read).(*kmsg.FetchResponse)
	if p := r.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) != len(batch) {
		t.Fatalf("error %d, %d record bytes, want the whole %d-byte batch", p.ErrorCode, len(p.RecordBatches), len(batch))
	}
	waitFor(t, "the budget to be given back", func() bool { return ts.s.responses.Used() == 0 })
}

func TestByteBudgetReserve(t *testing.T) {
	b := newByteBudget(100)
	if got := b.takeUpTo(90, false); got != 75 {
		t.Fatalf("without the reserve took %d, want 75", got)
	}
	if got := b.takeUpTo(90, true); got != 25 {
		t.Fatalf("with the reserve took %d, want 25", got)
	}
	b.give(100)
	if !b.take(500, false, time.Now().Add(time.Second), nil, nil) {
		t.Fatal("a take bigger than the budget did not go through with nothing held")
	}
	if b.take(1, true, time.Now().Add(50*time.Millisecond), nil, nil) {
		t.Fatal("took past the budget")
	}
	b.give(500)
}
