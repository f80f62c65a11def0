package main

import (
	"bufio"
	"context"
	be "encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The three attacks of issue 11, each against its own broker run with a
// 512 MiB memory.budget.bytes: the broker's peak resident set (VmHWM) must
// stay under the budget, and an ordinary client must still produce and
// consume. An attack stops early when the broker passes hostileCutoff, so
// that running this against a broker without the bounds does not take the
// machine's memory with it.
const (
	hostileBudget = 512 << 20
	hostileCutoff = 3 << 30
)

// startHostileBroker starts a broker with the small budget.
func startHostileBroker(t *testing.T) *serveProc {
	return startBroker(t, "", "--set", "memory.budget.bytes="+strconv.Itoa(hostileBudget))
}

// procStatus reads one kB field of /proc/<pid>/status, in bytes.
func procStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// attack is a hostile run against b: its connections, closed by stop, and
// a watch that stops it when the broker's RSS passes hostileCutoff.
type attack struct {
	t     *testing.T
	b     *serveProc
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
	over  chan struct{} // closed when the cutoff was passed
	quit  chan struct{}
	once  sync.Once
}

func newAttack(t *testing.T, b *serveProc) *attack {
	a := &attack{t: t, b: b, over: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-a.quit:
				return
			case <-tick.C:
				if procStatus(b.cmd.Process.Pid, "VmRSS") > hostileCutoff {
					close(a.over)
					a.closeConns()
					return
				}
			}
		}
	}()
	t.Cleanup(a.stop)
	return a
}

func (a *attack) dial() net.Conn {
	a.t.Helper()
	c, err := net.DialTimeout("tcp", a.b.Kafka, 5*time.Second)
	if err != nil {
		a.t.Fatal(err)
	}
	a.mu.Lock()
	a.conns = append(a.conns, c)
	a.mu.Unlock()
	return c
}

// goWrite writes p on c from its own goroutine: a broker that stops reading
// blocks the write until the connection is closed.
func (a *attack) goWrite(c net.Conn, p ...[]byte) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for _, b := range p {
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}()
}

func (a *attack) closeConns() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		c.Close()
	}
}

// hold lets the attack run for d, or until the cutoff.
func (a *attack) hold(d time.Duration) {
	select {
	case <-time.After(d):
	case <-a.over:
	}
}

// stop closes every connection and waits for the writers.
func (a *attack) stop() {
	a.once.Do(func() {
		close(a.quit)
		a.closeConns()
		a.wg.Wait()
	})
}

// check reports the broker's peak RSS and fails the test past the budget.
func (a *attack) check(name string) {
	a.t.Helper()
	peak := procStatus(a.b.cmd.Process.Pid, "VmHWM")
	a.t.Logf("%s: broker peak RSS (VmHWM) %d MiB, budget %d MiB", name, peak>>20, hostileBudget>>20)
	select {
	case <-a.over:
		a.t.Errorf("%s: broker RSS passed %d MiB; the attack was stopped", name, hostileCutoff>>20)
	default:
	}
	if peak > hostileBudget {
		a.t.Errorf("%s: broker peak RSS %d MiB over memory.budget.bytes %d MiB", name, peak>>20, hostileBudget>>20)
	}
}

// requestFrame encodes req as a request frame.
func requestFrame(req kmsg.Request, corr int32) []byte {
	b := []byte{0, 0, 0, 0}
	b = kbin.AppendInt16(b, req.Key())
	b = kbin.AppendInt16(b, req.GetVersion())
	b = kbin.AppendInt32(b, corr)
	b = kbin.AppendNullableString(b, kmsg.StringPtr("hostile"))
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	be.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// readResponse reads one response frame into resp (its version set).
func readResponse(c net.Conn, resp kmsg.Response) error {
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return err
	}
	body := make([]byte, be.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return err
	}
	skip := 4 // correlation id
	if resp.IsFlexible() {
		skip++ // empty header tags
	}
	return resp.ReadFrom(body[skip:])
}

// stillServes produces n records to topic with a fresh client and, when
// consume, reads the topic back.
func stillServes(t *testing.T, addr, topic string, n int, consume bool) {
	t.Helper()
	cl := newClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("ordinary " + strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatalf("an ordinary producer beside the attack: %v", err)
		}
	}
	cl.Close()
	if consume {
		if got := len(consumeAll(t, addr, topic)); got < n {
			t.Fatalf("an ordinary consumer beside the attack read %d of %d records", got, n)
		}
	}
}

// TestHostileUnreadFetches: many connections pipeline fetches for 2 GiB
// each of a topic holding 50 MB and never read the answers.
func TestHostileUnreadFetches(t *testing.T) {
	b := startHostileBroker(t)
	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic("big"), kgo.DisableIdempotentWrite(),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerLinger(5*time.Millisecond))
	value := make([]byte, 500<<10)
	var perr error
	var pmu sync.Mutex
	for range 100 {
		cl.Produce(context.Background(), &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				pmu.Lock()
				perr = err
				pmu.Unlock()
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil || perr != nil {
		t.Fatalf("filling the topic: %v %v", err, perr)
	}
	t.Logf("idle, 50 MB topic: broker peak RSS %d MiB", procStatus(b.cmd.Process.Pid, "VmHWM")>>20)

	a := newAttack(t, b)
	var pipelined []byte
	for i := range 20 {
		req := kmsg.NewPtrFetchRequest()
		req.Version, req.MaxBytes, req.MinBytes, req.MaxWaitMillis, req.ReplicaID = 11, 1<<31-1, 1, 500, -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "big"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1<<31 - 1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		pipelined = append(pipelined, requestFrame(req, int32(i))...)
	}
	for range 40 {
		a.goWrite(a.dial(), pipelined)
	}
	a.hold(4 * time.Second)
	stillServes(t, b.Kafka, "beside-fetches", 5, false)
	a.hold(time.Second)
	a.check("40 connections x 20 unread 2 GiB fetches")
	a.stop()
	stillServes(t, b.Kafka, "after-fetches", 5, true)
}

// TestHostileStalledFrames: 24 connections each send 99% of a 90 MiB frame
// and stall.
func TestHostileStalledFrames(t *testing.T) {
	b := startHostileBroker(t)
	a := newAttack(t, b)
	const size = 90 << 20
	body := make([]byte, size*99/100) // shared by every writer
	for range 24 {
		var head [4]byte
		be.BigEndian.PutUint32(head[:], size)
		a.goWrite(a.dial(), head[:], body)
	}
	a.hold(5 * time.Second)
	stillServes(t, b.Kafka, "beside-frames", 5, true)
	a.check("24 connections x 99% of a 90 MiB frame")
	a.stop()
	stillServes(t, b.Kafka, "after-frames", 5, true)
}

// TestHostileJoinGroupMetadata: 20 members join one group with 10 MiB of
// protocol metadata each.
func TestHostileJoinGroupMetadata(t *testing.T) {
	b := startHostileBroker(t)
	a := newAttack(t, b)
	meta := make([]byte, 10<<20)
	join := func(memberID string) *kmsg.JoinGroupRequest {
		r := kmsg.NewPtrJoinGroupRequest()
		r.Version, r.Group, r.MemberID = 9, "hostile", memberID
		r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = 30000, 60000
		r.ProtocolType = "consumer"
		r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta}}
		return r
	}
	codes := map[int16]int{}
	for i := range 20 {
		c := a.dial()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(requestFrame(join(""), 1)); err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		resp := kmsg.NewPtrJoinGroupResponse()
		resp.Version = 9
		if err := readResponse(c, resp); err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		codes[resp.ErrorCode]++
		if resp.ErrorCode == kerr.MemberIDRequired.Code {
			// Join with the id given; the answer waits for the
			// rebalance, which the other members never finish.
			a.goWrite(c, requestFrame(join(resp.MemberID), 2))
		}
	}
	a.hold(2 * time.Second)
	stillServes(t, b.Kafka, "beside-joins", 5, true)
	a.check("20 members x 10 MiB JoinGroup metadata")
	if codes[kerr.InvalidRequest.Code] != 20 {
		t.Errorf("JoinGroup answers by error code: %v, want INVALID_REQUEST (%d) for all 20", codes, kerr.InvalidRequest.Code)
	}
	a.stop()
}
