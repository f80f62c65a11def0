package protocol

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// frame encodes req as a request frame with a client id.
func frame(req kmsg.Request, corr int32) []byte {
	b := []byte{0, 0, 0, 0}
	b = kbin.AppendInt16(b, req.Key())
	b = kbin.AppendInt16(b, req.GetVersion())
	b = kbin.AppendInt32(b, corr)
	b = kbin.AppendNullableString(b, kmsg.StringPtr("raw-test"))
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// readFrame reads one response frame and returns what follows its size.
func readFrame(t testing.TB, c net.Conn) []byte {
	t.Helper()
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("reading response size: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("reading response: %v", err)
	}
	return body
}

// rawRoundTrip sends req on a fresh connection and decodes the answer.
func rawRoundTrip(t testing.TB, addr string, req kmsg.Request) kmsg.Response {
	t.Helper()
	c := dial(t, addr)
	if _, err := c.Write(frame(req, 7)); err != nil {
		t.Fatal(err)
	}
	body := readFrame(t, c)
	if corr := int32(binary.BigEndian.Uint32(body)); corr != 7 {
		t.Fatalf("correlation id %d", corr)
	}
	body = body[4:]
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() && req.Key() != 18 {
		if body[0] != 0 {
			t.Fatalf("response header tags %d", body[0])
		}
		body = body[1:]
	}
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("decoding %s v%d response: %v", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
	}
	return resp
}

// expectClosed checks the server closes c without answering.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	switch {
	case n != 0:
		t.Fatalf("got %d bytes, want the connection closed", n)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatal("connection left open")
	}
}

// stillServing checks a fresh client still gets answers.
func stillServing(t *testing.T, addr string) {
	t.Helper()
	r := rawRoundTrip(t, addr, kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse)
	if r.ErrorCode != 0 || len(r.ApiKeys) == 0 {
		t.Fatalf("api versions after abuse: %+v", r)
	}
}

func TestRawAbuse(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"2GB frame", []byte{0x7f, 0xff, 0xff, 0xf0, 0, 18, 0, 0}},
		{"negative size", []byte{0xff, 0xff, 0xff, 0xff}},
		{"tiny frame", []byte{0, 0, 0, 2, 0, 18}},
		{"unknown key", []byte{0, 0, 0, 10, 0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0, 0}}, // key 999
		{"group key without Groups", frame(kmsg.NewPtrHeartbeatRequest(), 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			c.Write(tc.send)
			expectClosed(t, c)
			stillServing(t, ts.addr)
		})
	}
	t.Run("unsupported version", func(t *testing.T) {
		req := kmsg.NewPtrMetadataRequest()
		req.Version = 13
		c := dial(t, ts.addr)
		c.Write(frame(req, 1))
		expectClosed(t, c)
	})
	t.Run("malformed body", func(t *testing.T) {
		f := frame(kmsg.NewPtrMetadataRequest(), 1)
		f = append(f[:len(f)-1], 0x7f, 0xff, 0xff) // array length far past the end
		binary.BigEndian.PutUint32(f, uint32(len(f)-4))
		c := dial(t, ts.addr)
		c.Write(f)
		expectClosed(t, c)
		stillServing(t, ts.addr)
	})
	if v := metricValue(ts.s.m.clientErrors.WithLabelValues("frame_size")); v != 4 {
		t.Errorf("frame_size client errors = %v, want 4 (garbage, 2GB, negative, tiny)", v)
	}
}

func TestApiVersions(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	t.Run("v127 fallback", func(t *testing.T) {
		c := dial(t, ts.addr)
		// A future ApiVersions version with a body we cannot parse.
		f := []byte{0, 0, 0, 0, 0, 18, 0, 127, 0, 0, 0, 9, 0, 0, 0, 0xde, 0xad}
		binary.BigEndian.PutUint32(f, uint32(len(f)-4))
		c.Write(f)
		body := readFrame(t, c)
		if corr := binary.BigEndian.Uint32(body); corr != 9 {
			t.Fatalf("correlation %d", corr)
		}
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.Version = 0
		if err := resp.ReadFrom(body[4:]); err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) < 10 {
			t.Fatalf("fallback %+v", resp)
		}
		// The connection stays usable at a version from the list.
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 3
		req.ClientSoftwareName, req.ClientSoftwareVersion = "raw", "1"
		c.Write(frame(req, 10))
		body = readFrame(t, c)
		// No tagged-field byte in the ApiVersions response header.
		r3 := kmsg.NewPtrApiVersionsResponse()
		r3.Version = 3
		if err := r3.ReadFrom(body[4:]); err != nil || r3.ErrorCode != 0 {
			t.Fatalf("v3 after fallback: %v %+v", err, r3)
		}
	})
	t.Run("keys", func(t *testing.T) {
		for v := int16(0); v <= 4; v++ {
			req := kmsg.NewPtrApiVersionsRequest()
			req.Version = v
			req.ClientSoftwareName, req.ClientSoftwareVersion = "raw", "1"
			r := rawRoundTrip(t, ts.addr, req).(*kmsg.ApiVersionsResponse)
			got := map[int16][2]int16{}
			for _, k := range r.ApiKeys {
				got[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
			}
			for key, want := range map[int16][2]int16{0: {0, 10}, 1: {4, 15}, 2: {1, 7}, 3: {0, 12}, 10: {0, 4},
				18: {0, 4}, 23: {2, 4}, 32: {1, 4}} {
				if got[key] != want {
					t.Errorf("v%d key %d: %v, want %v", v, key, got[key], want)
				}
			}
			if _, ok := got[11]; ok {
				t.Errorf("JoinGroup advertised without Groups")
			}
		}
	})
}

// TestIdleConnections holds 500 idle connections (and one mid-frame) while
// a client produces and consumes.
func TestIdleConnections(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	var idle []net.Conn
	for range 500 {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	idle[0].Write([]byte{0, 0, 1, 0, 0}) // a frame that never completes
	const topic = "busy"
	cl := newClient(t, ts.addr, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := ctxT(t, 20*time.Second)
	for i := range 200 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: bytes.Repeat([]byte{1}, i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	consume(t, cl, 200, 20*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if v := metricValue(ts.s.m.connsOpen); v >= 501 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%v connections open", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleTimeout closes a silent connection after connections.max.idle.ms.
func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, Config{IdleTimeout: 200 * time.Millisecond}, nil)
	c := dial(t, ts.addr)
	start := time.Now()
	expectClosed(t, c)
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

// TestPipelined sends many requests before reading: answers come in order.
func TestPipelined(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	c := dial(t, ts.addr)
	var buf bytes.Buffer
	for i := range 100 {
		req := kmsg.NewPtrMetadataRequest()
		req.Version = int16(i % 13)
		buf.Write(frame(req, int32(i)))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.Write(buf.Bytes()) }()
	for i := range 100 {
		body := readFrame(t, c)
		if corr := int32(binary.BigEndian.Uint32(body)); corr != int32(i) {
			t.Fatalf("answer %d has correlation id %d", i, corr)
		}
	}
	wg.Wait()
}

// TestPipelinedFetches mixes produce (acks=all), fetch and metadata requests
// sent before any answer is read: fetch answers, which the reader writes
// itself when nothing is queued (conn.read), still come in request
// order, and each fetch sees every batch produced before it.
func TestPipelinedFetches(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	ts.b.CreateTopic(context.Background(), "pf", 1, nil, false)
	c := dial(t, ts.addr)
	const n = 300
	var buf bytes.Buffer
	for i := range n {
		var req kmsg.Request
		switch i % 3 {
		case 0:
			req = produceReq(9, -1, "pf", 0, makeBatch(1, 100, int64(i)))
		case 1:
			req = fetchReq(11, 1<<20, 1<<20, fetchTarget{topic: "pf"})
		default:
			req = kmsg.NewPtrMetadataRequest()
		}
		buf.Write(frame(req, int32(i)))
	}
	go c.Write(buf.Bytes())
	for i := range n {
		body := readFrame(t, c)
		if corr := int32(binary.BigEndian.Uint32(body)); corr != int32(i) {
			t.Fatalf("answer %d has correlation id %d", i, corr)
		}
		if i%3 != 1 {
			continue
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = 11
		if err := resp.ReadFrom(body[4:]); err != nil {
			t.Fatalf("fetch answer %d: %v", i, err)
		}
		p := resp.Topics[0].Partitions[0]
		if got := len(batchBases(t, p.RecordBatches)); p.ErrorCode != 0 || got != i/3+1 {
			t.Fatalf("fetch %d: error %d, %d batches, want %d", i, p.ErrorCode, got, i/3+1)
		}
	}
}

// TestStalledRequest closes a connection that stops in the middle of a
// request for longer than the request read timeout.
func TestStalledRequest(t *testing.T) {
	ts := startServer(t, Config{RequestReadTimeout: 200 * time.Millisecond}, nil)
	c := dial(t, ts.addr)
	f := frame(kmsg.NewPtrMetadataRequest(), 1)
	c.Write(f[:len(f)-2])
	start := time.Now()
	expectClosed(t, c)
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("closed after %v", d)
	}
}
