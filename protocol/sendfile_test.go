package protocol

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fileBackend is a memBackend that answers fetches as a Backend over
// segment files does (FileFetcher): the fetched batches but the last are
// written to a file of their own and handed out as two sections of it, the
// last batch as bytes. The file is removed at once, as retention may remove
// a segment while an answer is queued: only the open descriptor reads it.
type fileBackend struct {
	*memBackend
	dir  string
	live atomic.Int64 // files handed out and not yet released
}

func (f *fileBackend) FetchFiles(ctx context.Context, topic string, partition int32, offset int64, maxBytes int, dst []byte) ([]*io.SectionReader, int64, []byte, func(), int64, int64, error) {
	recs, hw, ls, err := f.Fetch(ctx, topic, partition, offset, maxBytes, nil)
	if err != nil || len(recs) == 0 {
		return nil, 0, append(dst, recs...), func() {}, hw, ls, err
	}
	bases := batchEnds(recs)
	cut := 0
	if len(bases) > 1 {
		cut = bases[len(bases)-2]
	}
	if cut == 0 {
		return nil, 0, append(dst, recs...), func() {}, hw, ls, nil
	}
	file, err := os.CreateTemp(f.dir, "segment")
	if err != nil {
		return nil, 0, dst, func() {}, hw, ls, err
	}
	const pad = 1000 // the batches start inside the file, as in a segment
	if _, err := file.WriteAt(recs[:cut], pad); err != nil {
		file.Close()
		return nil, 0, dst, func() {}, hw, ls, err
	}
	os.Remove(file.Name())
	f.live.Add(1)
	half := int64(bases[0])
	files := []*io.SectionReader{io.NewSectionReader(file, pad, half), io.NewSectionReader(file, pad+half, int64(cut)-half)}
	release := func() {
		file.Close()
		f.live.Add(-1)
	}
	return files, int64(countRecords(recs[:cut])), append(dst, recs[cut:]...), release, hw, ls, nil
}

// batchEnds lists where each whole batch of b ends.
func batchEnds(b []byte) []int {
	var ends []int
	for pos := 0; pos+batchHeaderLen <= len(b); {
		n := int(int32(binary.BigEndian.Uint32(b[pos+batchLengthAt:])))
		pos += 12 + n
		ends = append(ends, pos)
	}
	return ends
}

// startFileServer is startServer over a fileBackend.
func startFileServer(t *testing.T, cfg Config) (*testServer, *fileBackend) {
	t.Helper()
	fb := &fileBackend{memBackend: newMemBackend(), dir: t.TempDir()}
	t.Cleanup(func() { // after the server's shutdown
		if n := fb.live.Load(); n != 0 {
			t.Errorf("%d fetched files never released", n)
		}
	})
	s, reg, addr := serveBackend(t, cfg, fb, nil)
	return &testServer{s: s, b: fb.memBackend, reg: reg, addr: addr}, fb
}

// rawFetch sends one request on a new connection and returns the response
// frame as written.
func rawFetch(t *testing.T, addr string, req []byte) []byte {
	t.Helper()
	c := dial(t, addr)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	return readFrame(t, c)
}

// TestFetchSendfileAsBuffered: answers sent with sendfile from files are
// byte for byte those sent from memory, for every Fetch version, over
// partitions with and without records; the files are released once
// written.
func TestFetchSendfileAsBuffered(t *testing.T) {
	mem := startServer(t, Config{}, nil)
	files, fb := startFileServer(t, Config{})
	for _, ts := range []*testServer{mem, files} {
		ts.b.CreateTopic(context.Background(), "f", 3, nil, false)
		for i := range 6 {
			for p := int32(0); p < 2; p++ {
				if _, _, err := ts.b.Produce(t.Context(), "f", p, makeBatch(1+i, 100+4000*i, int64(i))); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	mem.b.mu.Lock()
	id := mem.b.topics["f"].id
	mem.b.mu.Unlock()
	files.b.mu.Lock()
	files.b.topics["f"].id = id
	files.b.mu.Unlock()
	for v := int16(4); v <= 15; v++ {
		for _, partMax := range []int32{1, 10000, 1 << 20} {
			req := frame(fetchReq(v, 1<<20, partMax, fetchTarget{topic: "f", id: id},
				fetchTarget{topic: "f", id: id, partition: 1, offset: 3}, fetchTarget{topic: "f", id: id, partition: 2}), 9)
			want := rawFetch(t, mem.addr, req)
			if got := rawFetch(t, files.addr, req); !bytes.Equal(got, want) {
				t.Fatalf("v%d, partition max %d: sendfile answer of %d bytes differs from the buffered one of %d", v, partMax, len(got), len(want))
			}
		}
	}
	if sent := testutil.ToFloat64(files.s.m.sendfileBytes); sent == 0 {
		t.Fatal("nothing was sent with sendfile")
	}
	waitFor(t, "every file released", func() bool { return fb.live.Load() == 0 })
}

// TestSendfileWriteTimeout: a client that stops reading in the middle of a
// sendfile answer is dropped after socket.response.write.timeout.ms; its
// files and budget are given back.
func TestSendfileWriteTimeout(t *testing.T) {
	ts, fb := startFileServer(t, Config{WriteTimeout: 300 * time.Millisecond, FetchMaxBytes: 64 << 20})
	ts.b.CreateTopic(context.Background(), "t", 1, nil, false)
	batch := makeBatch(1, 1<<20, 1)
	for range 48 {
		if _, _, err := ts.b.Produce(t.Context(), "t", 0, batch); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, ts.addr)
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	if _, err := c.Write(frame(fetchReq(11, 64<<20, 64<<20, fetchTarget{topic: "t"}), 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the answer to be queued", func() bool { return fb.live.Load() == 1 })
	time.Sleep(time.Second) // the write stalls, then times out
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := io.Copy(io.Discard, c)
	if n >= int64(48*len(batch)) {
		t.Fatalf("read %d bytes: the whole answer, want the connection dropped", n)
	}
	waitFor(t, "the files to be released", func() bool { return fb.live.Load() == 0 })
	waitFor(t, "the budget to be given back", func() bool { return ts.s.responses.Used() == 0 })
	// Another client is still served.
	r := rawFetch(t, ts.addr, frame(fetchReq(11, 1<<20, 1<<20, fetchTarget{topic: "t"}), 2))
	if len(r) < len(batch) {
		t.Fatalf("a reading client got %d bytes", len(r))
	}
}

// TestFetchCopyNoSendfile: with fetch.copy the records in files are copied
// through memory, not sent with sendfile, and still answered whole.
func TestFetchCopyNoSendfile(t *testing.T) {
	ts, fb := startFileServer(t, Config{FetchCopy: true})
	ts.b.CreateTopic(context.Background(), "t", 1, nil, false)
	batch := makeBatch(2, 5000, 1)
	for range 4 {
		if _, _, err := ts.b.Produce(t.Context(), "t", 0, batch); err != nil {
			t.Fatal(err)
		}
	}
	r := rawRoundTrip(t, ts.addr, fetchReq(12, 1<<20, 1<<20, fetchTarget{topic: "t"})).(*kmsg.FetchResponse)
	if got := batchBases(t, r.Topics[0].Partitions[0].RecordBatches); len(got) != 4 {
		t.Fatalf("batches %v, want 4", got)
	}
	if sent := testutil.ToFloat64(ts.s.m.sendfileBytes); sent != 0 {
		t.Fatalf("fetch.copy: %v bytes sent with sendfile", sent)
	}
	waitFor(t, "every file released", func() bool { return fb.live.Load() == 0 })
}
