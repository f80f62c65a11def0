package log

import (
	"errors"
	"math/rand"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAppendReadAcrossRolls(t *testing.T) {
	for _, policy := range []FlushPolicy{FlushInterval, FlushAlways} {
		t.Run(policy.String(), func(t *testing.T) {
			fsys := NewCrashFS()
			cfg := Config{SegmentBytes: 2048, IndexIntervalBytes: 300, Flush: policy}
			l := openT(t, fsys, "/p/t-0", cfg)
			rng := rand.New(rand.NewSource(1))
			var batches [][]byte
			var next int64
			for i := 0; i < 200; i++ {
				b := testBatch(rng, i, int64(1000+i*10))
				info := mustAppend(t, l, b)
				if info.BaseOffset != next {
					t.Fatalf("batch %d at offset %d, want %d", i, info.BaseOffset, next)
				}
				next = info.LastOffset + 1
				batches = append(batches, b)
			}
			if l.Segments() < 10 {
				t.Fatalf("only %d segments: rolls did not happen", l.Segments())
			}
			if hw := l.HighWatermark(); hw != next {
				t.Fatalf("high watermark %d, want %d", hw, next)
			}
			check := func(l *Log) {
				for _, maxBytes := range []int{1, 500, 4096, 1 << 20} {
					got := readAll(t, l, 0, maxBytes)
					if len(got) != len(batches) {
						t.Fatalf("maxBytes %d: read %d batches, want %d", maxBytes, len(got), len(batches))
					}
					for _, b := range batches {
						h, _ := parseBatchHeader(b)
						if !sameBatch(got[h.BaseOffset], b) {
							t.Fatalf("batch at %d differs", h.BaseOffset)
						}
					}
				}
			}
			check(l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if err := VerifyFS(fsys, "/p/t-0"); err != nil {
				t.Fatalf("verify: %v", err)
			}
			l = openT(t, fsys, "/p/t-0", cfg)
			defer l.Close()
			check(l)
			if info := mustAppend(t, l, testBatch(rng, 0, 5000)); info.BaseOffset != next {
				t.Fatalf("after reopen: offset %d, want %d", info.BaseOffset, next)
			}
		})
	}
}

// buildLog appends n batches and returns their headers as stored.
func buildLog(t *testing.T, l *Log, rng *rand.Rand, n int, ts func(i int) int64) []batchHeader {
	var hs []batchHeader
	for i := 0; i < n; i++ {
		b := testBatch(rng, i, ts(i))
		mustAppend(t, l, b)
		h, _ := parseBatchHeader(b)
		hs = append(hs, h)
	}
	return hs
}

// Every offset, including the ones inside a batch, must return the whole
// batch that contains it first; Ranges must describe the same bytes.
func TestIndexLookupEveryOffset(t *testing.T) {
	fsys := NewCrashFS()
	l := openT(t, fsys, "/p/t-0", Config{SegmentBytes: 3000, IndexIntervalBytes: 700})
	defer l.Close()
	rng := rand.New(rand.NewSource(2))
	hs := buildLog(t, l, rng, 150, func(i int) int64 { return int64(i * 100) })
	for _, h := range hs {
		for off := h.BaseOffset; off <= h.lastOffset(); off++ {
			data, err := l.Read(off, 1, nil)
			if err != nil {
				t.Fatalf("read %d: %v", off, err)
			}
			got, err := parseBatchHeader(data)
			if err != nil || got.BaseOffset != h.BaseOffset || int64(len(data)) != h.Size {
				t.Fatalf("read %d: got batch %d (%d bytes), want %d (%d bytes)", off, got.BaseOffset, len(data), h.BaseOffset, h.Size)
			}
			rs, err := l.Ranges(off, 1)
			if err != nil || len(rs) != 1 || rs[0].BaseOffset != h.BaseOffset || rs[0].Len != h.Size {
				t.Fatalf("ranges %d: %+v %v", off, rs, err)
			}
		}
	}
	// A large budget spans segments: ranges and read agree byte for byte.
	rs, err := l.Ranges(hs[3].BaseOffset+1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	data, err := l.Read(hs[3].BaseOffset+1, 10000, nil)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, r := range rs {
		b, _ := fsys.Bytes(r.Segment)
		if string(b[r.Pos:r.Pos+r.Len]) != string(data[total:total+r.Len]) {
			t.Fatalf("range %+v differs from read", r)
		}
		total += r.Len
	}
	if total != int64(len(data)) || total > 10000 || len(rs) < 2 {
		t.Fatalf("ranges cover %d bytes in %d ranges, read %d", total, len(rs), len(data))
	}
	hw := l.HighWatermark()
	if d, err := l.Read(hw, 100, nil); err != nil || len(d) != 0 {
		t.Fatalf("read at hw: %d bytes, %v", len(d), err)
	}
	for _, off := range []int64{-1, hw + 1} {
		if _, err := l.Read(off, 100, nil); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read %d: %v, want ErrOffsetOutOfRange", off, err)
		}
	}
}

func TestOffsetForTimeBoundaries(t *testing.T) {
	fsys := NewCrashFS()
	l := openT(t, fsys, "/p/t-0", Config{SegmentBytes: 2500, IndexIntervalBytes: 500})
	rng := rand.New(rand.NewSource(3))
	// Timestamps rise with a dip every 7th batch, so the running max and
	// the batch max differ.
	ts := func(i int) int64 {
		if i%7 == 6 {
			return int64(i*1000 - 5000)
		}
		return int64(i * 1000)
	}
	hs := buildLog(t, l, rng, 120, ts)
	check := func(l *Log) {
		t.Helper()
		for _, h := range hs {
			for _, q := range []int64{h.MaxTimestamp - 1, h.MaxTimestamp, h.MaxTimestamp + 1} {
				var want *batchHeader
				for j := range hs {
					if hs[j].MaxTimestamp >= q {
						want = &hs[j]
						break
					}
				}
				off, mts, ok, err := l.OffsetForTime(q)
				if err != nil {
					t.Fatal(err)
				}
				if want == nil {
					if ok {
						t.Fatalf("ts %d: found %d, want none", q, off)
					}
					continue
				}
				if !ok || off != want.BaseOffset || mts != want.MaxTimestamp {
					t.Fatalf("ts %d: got (%d, %d, %v), want (%d, %d)", q, off, mts, ok, want.BaseOffset, want.MaxTimestamp)
				}
			}
		}
		var maxH batchHeader
		maxH.MaxTimestamp = -1
		for _, h := range hs {
			if h.MaxTimestamp > maxH.MaxTimestamp {
				maxH = h
			}
		}
		if ts, off := l.MaxTimestamp(); ts != maxH.MaxTimestamp || off != maxH.lastOffset() {
			t.Fatalf("max timestamp (%d, %d), want (%d, %d)", ts, off, maxH.MaxTimestamp, maxH.lastOffset())
		}
	}
	check(l)
	l.Close()
	l = openT(t, fsys, "/p/t-0", Config{SegmentBytes: 2500, IndexIntervalBytes: 500})
	defer l.Close()
	check(l)
}

func TestRefuseBadBatches(t *testing.T) {
	l := openT(t, NewCrashFS(), "/p/t-0", Config{})
	defer l.Close()
	good := makeBatch(nil, 3, 1, 20)
	cases := map[string]struct {
		mutate func([]byte) []byte
		magic  bool
	}{
		"magic 1":      {mutate: func(b []byte) []byte { b[batchMagicPos] = 1; return b }, magic: true},
		"crc":          {mutate: func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		"short":        {mutate: func(b []byte) []byte { return b[:40] }},
		"length":       {mutate: func(b []byte) []byte { putInt32(b[batchLengthPos:], 5000); return b }},
		"trailing":     {mutate: func(b []byte) []byte { return append(b, 0) }},
		"negative len": {mutate: func(b []byte) []byte { putInt32(b[batchLengthPos:], -1); return b }},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			b := c.mutate(append([]byte(nil), good...))
			_, err := l.Append(b)
			var me *MagicError
			if c.magic != errors.As(err, &me) || !errors.Is(err, ErrInvalidBatch) {
				t.Fatalf("err %v", err)
			}
		})
	}
	if l.HighWatermark() != 0 {
		t.Fatal("a refused batch moved the high watermark")
	}
}

func TestHighWatermarkAndChanged(t *testing.T) {
	gate := make(chan struct{})
	fsys := &gatedFS{FS: NewCrashFS()}
	l := openT(t, fsys, "/p/t-0", Config{Flush: FlushAlways})
	defer l.Close()
	ch := l.Changed()
	fsys.gate.Store(&gate)
	info, err := l.Write(makeBatch(nil, 2, 1, 5))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the flusher is now stuck in fsync
	if hw := l.HighWatermark(); hw != 0 {
		t.Fatalf("hw %d before fsync under always", hw)
	}
	if d, err := l.Read(0, 100, nil); err != nil || len(d) != 0 {
		t.Fatalf("read of undurable data: %d bytes, %v", len(d), err)
	}
	select {
	case <-ch:
		t.Fatal("Changed closed before the high watermark moved")
	default:
	}
	close(gate)
	if err := l.WaitDurable(info.LastOffset + 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed not closed after the high watermark moved")
	}
	if hw := l.HighWatermark(); hw != 2 {
		t.Fatalf("hw %d, want 2", hw)
	}
	if err := l.WaitDurable(1000); err != nil {
		t.Fatalf("wait past the written end: %v", err)
	}
}

// gatedFS holds every file Sync until the gate channel, when set, closes.
type gatedFS struct {
	FS
	gate atomic.Pointer[chan struct{}]
}

type gatedFile struct {
	File
	g *gatedFS
}

func (g *gatedFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return gatedFile{f, g}, nil
}

func (f gatedFile) Sync() error {
	if ch := f.g.gate.Load(); ch != nil {
		<-*ch
	}
	return f.File.Sync()
}

// countingFS counts file syncs, to show group commit.
type countingFS struct {
	FS
	syncs atomic.Int64
}

type countingFile struct {
	File
	c *countingFS
}

func (c *countingFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countingFile{f, c}, nil
}

func (f countingFile) Sync() error {
	f.c.syncs.Add(1)
	time.Sleep(time.Millisecond)
	return f.File.Sync()
}

func TestGroupCommit(t *testing.T) {
	fsys := &countingFS{FS: NewCrashFS()}
	l := openT(t, fsys, "/p/t-0", Config{Flush: FlushAlways})
	defer l.Close()
	before := fsys.syncs.Load()
	const writers, each = 16, 20
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := l.Append(makeBatch(nil, 1, 1, 10)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	syncs := fsys.syncs.Load() - before
	if syncs >= writers*each/2 {
		t.Fatalf("%d fsyncs for %d appends: no group commit", syncs, writers*each)
	}
	t.Logf("%d appends, %d fsyncs", writers*each, syncs)
	if l.HighWatermark() != writers*each {
		t.Fatalf("hw %d", l.HighWatermark())
	}
}

func TestReadOnlyAfterSyncError(t *testing.T) {
	for _, policy := range []FlushPolicy{FlushAlways, FlushInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			fsys := NewCrashFS()
			l := openT(t, fsys, "/p/t-0", Config{Flush: policy, FlushInterval: time.Hour})
			defer l.Close()
			mustAppend(t, l, makeBatch(nil, 1, 1, 10))
			boom := errors.New("EIO")
			fsys.InjectSyncError(boom)
			_, err := l.Append(makeBatch(nil, 1, 1, 10))
			if policy == FlushInterval {
				if err != nil {
					t.Fatalf("interval append failed before any fsync: %v", err)
				}
				err = l.Sync()
			}
			if !errors.Is(err, boom) || !errors.Is(err, ErrReadOnly) {
				t.Fatalf("err %v, want EIO and read-only", err)
			}
			fsys.InjectSyncError(nil) // the disk "heals": the log must not
			if _, err := l.Append(makeBatch(nil, 1, 1, 10)); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("append after failed fsync: %v", err)
			}
			if !errors.Is(l.Err(), boom) {
				t.Fatalf("Err() = %v", l.Err())
			}
			if _, err := l.Read(0, 100, nil); err != nil {
				t.Fatalf("reads must go on: %v", err)
			}
		})
	}
}

func TestReadOnlyAfterWriteError(t *testing.T) {
	fsys := NewCrashFS()
	l := openT(t, fsys, "/p/t-0", Config{Flush: FlushAlways})
	defer l.Close()
	fsys.InjectWriteError(errors.New("ENOSPC"))
	if _, err := l.Append(makeBatch(nil, 1, 1, 10)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("err %v", err)
	}
	fsys.InjectWriteError(nil)
	if _, err := l.Append(makeBatch(nil, 1, 1, 10)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("err %v", err)
	}
}

func TestRetentionByTime(t *testing.T) {
	clock := newClock()
	fsys := NewCrashFS()
	cfg := Config{SegmentBytes: 1000, RetentionAge: time.Hour, SegmentAge: 24 * time.Hour}
	l := openT(t, fsys, "/p/t-0", cfg, func(o *Options) { o.Now = clock.Now })
	defer l.Close()
	rng := rand.New(rand.NewSource(4))
	for i := 0; i < 40; i++ {
		mustAppend(t, l, testBatch(rng, i, clock.Now().UnixMilli()))
		clock.Add(time.Minute)
	}
	segs := l.Segments()
	if n, err := l.EnforceRetention(); err != nil || n != 0 {
		t.Fatalf("deleted %d (%v) before anything expired", n, err)
	}
	clock.Add(time.Hour - 20*time.Minute) // the first ~20 minutes have expired
	n, err := l.EnforceRetention()
	if err != nil || n == 0 || l.Segments() != segs-n {
		t.Fatalf("deleted %d of %d (%v)", n, segs, err)
	}
	start := l.LogStartOffset()
	if _, off := l.Read(start-1, 10, nil); !errors.Is(off, ErrOffsetOutOfRange) {
		t.Fatalf("read below log start: %v", off)
	}
	got := readAll(t, l, start, 1<<20)
	for _, b := range got {
		h, _ := parseBatchHeader(b)
		if clock.Now().Sub(time.UnixMilli(h.MaxTimestamp)) > time.Hour+40*time.Minute {
			t.Fatalf("kept a batch from %v", time.UnixMilli(h.MaxTimestamp))
		}
	}
	// Much later, the active segment rolls by age and everything goes.
	clock.Add(48 * time.Hour)
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if l.Segments() != 1 || l.Size() != 0 || l.LogStartOffset() != l.HighWatermark() {
		t.Fatalf("after expiry: %d segments, %d bytes, start %d hw %d", l.Segments(), l.Size(), l.LogStartOffset(), l.HighWatermark())
	}
	names, _ := fsys.ReadDir("/p/t-0")
	for _, n := range names {
		if len(n) > 8 && n[len(n)-8:] == deletedSuffix {
			t.Fatalf("left %s behind", n)
		}
	}
}

func TestRetentionBySize(t *testing.T) {
	fsys := NewCrashFS()
	l := openT(t, fsys, "/p/t-0", Config{SegmentBytes: 1000, RetentionBytes: 3000, RetentionAge: -1})
	defer l.Close()
	rng := rand.New(rand.NewSource(5))
	buildLog(t, l, rng, 60, func(i int) int64 { return 1 })
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if size := l.Size(); size > 3000+1000 || size < 3000 {
		t.Fatalf("size %d after retention.bytes 3000 with 1000-byte segments", size)
	}
	readAll(t, l, l.LogStartOffset(), 1<<20)
}

// A reader holding a segment keeps reading it while retention deletes it.
func TestReadDuringRetention(t *testing.T) {
	fsys := NewCrashFS()
	l := openT(t, fsys, "/p/t-0", Config{SegmentBytes: 1000, RetentionBytes: 1, RetentionAge: -1})
	defer l.Close()
	rng := rand.New(rand.NewSource(6))
	buildLog(t, l, rng, 30, func(i int) int64 { return 1 })
	l.mu.RLock()
	views := l.viewsLocked(0, 1)
	l.mu.RUnlock()
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	v := views[0]
	if _, ok := fsys.Bytes(v.s.path + deletedSuffix); !ok {
		t.Fatal("segment not renamed to .deleted")
	}
	buf := make([]byte, v.limit)
	if err := readFull(v.s.log, buf, 0); err != nil {
		t.Fatalf("pinned segment unreadable: %v", err)
	}
	if _, _, err := checkChunk(buf, v.s.base, 0, true, 0); err != nil {
		t.Fatal(err)
	}
	releaseViews(views)
	if _, ok := fsys.Bytes(v.s.path + deletedSuffix); ok {
		t.Fatal("segment files not removed after the last reader")
	}
}

func TestDeleteRecords(t *testing.T) {
	fsys := NewCrashFS()
	cfg := Config{SegmentBytes: 1000}
	l := openT(t, fsys, "/p/t-0", cfg)
	rng := rand.New(rand.NewSource(7))
	hs := buildLog(t, l, rng, 40, func(i int) int64 { return 1 })
	segs := l.Segments()
	mid := hs[20].BaseOffset + 1
	start, err := l.DeleteRecords(mid)
	if err != nil || start != mid {
		t.Fatalf("DeleteRecords: %d %v", start, err)
	}
	if l.Segments() >= segs {
		t.Fatal("no segment deleted")
	}
	if _, err := l.Read(mid-1, 10, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	if d, err := l.Read(mid, 10, nil); err != nil || len(d) == 0 {
		t.Fatalf("read at start: %v", err)
	}
	l.Close()
	l = openT(t, fsys, "/p/t-0", cfg)
	defer l.Close()
	if l.LogStartOffset() != mid {
		t.Fatalf("log start %d after reopen, want %d", l.LogStartOffset(), mid)
	}
	if s, _ := l.DeleteRecords(1 << 40); s != l.HighWatermark() {
		t.Fatalf("clamp: %d vs hw %d", s, l.HighWatermark())
	}
}

// Indexes that are missing or garbage are rebuilt on open.
func TestRebuildIndexes(t *testing.T) {
	fsys := NewCrashFS()
	cfg := Config{SegmentBytes: 2000, IndexIntervalBytes: 300}
	l := openT(t, fsys, "/p/t-0", cfg)
	rng := rand.New(rand.NewSource(8))
	hs := buildLog(t, l, rng, 60, func(i int) int64 { return int64(i) })
	l.Close()
	first := "/p/t-0/" + segmentName(0)
	fsys.SetBytes(first+indexSuffix, []byte{1, 2, 3})
	fsys.Remove(first + timeIndexSuffix)
	l = openT(t, fsys, "/p/t-0", cfg)
	if got := readAll(t, l, 0, 1<<20); len(got) != len(hs) {
		t.Fatalf("read %d batches", len(got))
	}
	want := hs[0]
	for _, h := range hs {
		if h.MaxTimestamp >= 30 {
			want = h
			break
		}
	}
	if off, _, ok, _ := l.OffsetForTime(30); !ok || off != want.BaseOffset {
		t.Fatalf("time lookup after rebuild: %d %v", off, ok)
	}
	l.Close()
	if err := VerifyFS(fsys, "/p/t-0"); err != nil {
		t.Fatal(err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := NewMetrics(nil); m == nil || err != nil {
		t.Fatalf("nil registerer: %v", err)
	}
	// A second store on one registry is an error, not a panic.
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("NewMetrics twice on one registry")
	}
	l := openT(t, NewCrashFS(), "/p/t-0", Config{Flush: FlushAlways}, func(o *Options) { o.Metrics = m })
	mustAppend(t, l, makeBatch(nil, 1, 1, 1))
	l.Close()
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != len(m.Collectors()) {
		t.Fatalf("gathered %d families: %v", len(mfs), err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "ztfbroker_log_fsync_seconds" && mf.GetMetric()[0].GetHistogram().GetSampleCount() == 0 {
			t.Fatal("no fsync observed")
		}
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{SegmentBytes: -1, IndexIntervalBytes: -1, Flush: 7}.Validate()
	for _, want := range []string{"segment.bytes", "index.interval.bytes", "flush policy"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%v does not name %s", err, want)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
}
