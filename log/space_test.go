package log

import (
	"errors"
	"math/rand"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// faultFS is a CrashFS whose writes, opens and fsyncs fail on demand:
// writeErr after writing half of the bytes (a partial write, as a disk that
// fills in the middle of a batch), openErr for new files (EMFILE at a roll).
type faultFS struct {
	*CrashFS
	mu       sync.Mutex
	writeErr error
	openErr  error
}

func (f *faultFS) set(write, open error) {
	f.mu.Lock()
	f.writeErr, f.openErr = write, open
	f.mu.Unlock()
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f.mu.Lock()
	oerr := f.openErr
	f.mu.Unlock()
	if oerr != nil && flag&os.O_CREATE != 0 {
		return nil, &os.PathError{Op: "open", Path: name, Err: oerr}
	}
	file, err := f.CrashFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f}, nil
}

type faultFile struct {
	File
	fs *faultFS
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	werr := f.fs.writeErr
	f.fs.mu.Unlock()
	if werr == nil {
		return f.File.WriteAt(p, off)
	}
	n, err := f.File.WriteAt(p[:len(p)/2], off)
	if err != nil {
		return n, err
	}
	return n, &os.PathError{Op: "write", Path: "segment", Err: werr}
}

// A full disk or a lack of descriptors refuses the batch being written and
// nothing else: the log stays writable, the partial batch is cut away (and
// the cut fsynced), and writing resumes once the cause is gone, before and
// after a crash.
func TestTransientWriteErrorsAreNotSticky(t *testing.T) {
	for _, tc := range []struct {
		name        string
		write, open error
		segBytes    int64
	}{
		{name: "ENOSPC partial write", write: syscall.ENOSPC},
		{name: "EDQUOT partial write", write: syscall.EDQUOT},
		{name: "EMFILE at roll", open: syscall.EMFILE, segBytes: 1},
		{name: "ENOSPC at roll", open: syscall.ENOSPC, segBytes: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crash := NewCrashFS()
			fsys := &faultFS{CrashFS: crash}
			cfg := DefaultConfig()
			if tc.segBytes > 0 {
				cfg.SegmentBytes = tc.segBytes // every batch rolls
			}
			l := openT(t, fsys, "/p", cfg)
			rng := rand.New(rand.NewSource(1))
			var want [][]byte
			for i := range 5 {
				b := testBatch(rng, i, 1000+int64(i))
				mustAppend(t, l, b)
				want = append(want, b)
			}
			fsys.set(tc.write, tc.open)
			for i := range 3 {
				_, err := l.Append(testBatch(rng, i, 2000))
				if !Transient(err) || errors.Is(err, ErrReadOnly) {
					t.Fatalf("append on a full disk: %v, want a transient error, not read-only", err)
				}
				if l.Err() != nil {
					t.Fatalf("log read-only after a transient failure: %v", l.Err())
				}
			}
			if tc.segBytes == 0 {
				var size int
				for _, b := range want {
					size += len(b)
				}
				if data, _ := crash.Bytes("/p/" + segmentName(0) + logSuffix); len(data) != size {
					t.Fatalf("segment of %d bytes after refused writes, want %d: the partial batch must be cut", len(data), size)
				}
			}
			fsys.set(nil, nil)
			for i := range 3 {
				b := testBatch(rng, i, 3000+int64(i))
				mustAppend(t, l, b)
				want = append(want, b)
			}
			check := func(l *Log) {
				t.Helper()
				got := readAll(t, l, 0, 1<<20)
				if len(got) != len(want) {
					t.Fatalf("%d batches stored, want %d", len(got), len(want))
				}
				for _, b := range want {
					h, _ := parseBatchHeader(b)
					if !sameBatch(got[h.BaseOffset], b) {
						t.Fatalf("batch at %d differs", h.BaseOffset)
					}
				}
			}
			check(l)
			if tc.segBytes > 0 {
				// A roll retried after the refusal seals its segment
				// once: one seal entry more in the time index than
				// entries in the offset index, never two.
				names, _ := crash.ReadDir("/p")
				for _, n := range names {
					stem, ok := strings.CutSuffix(n, indexSuffix)
					if !ok || stem+indexSuffix == segmentName(l.cur.base)+indexSuffix {
						continue
					}
					idx, _ := crash.Bytes("/p/" + n)
					tidx, _ := crash.Bytes("/p/" + stem + timeIndexSuffix)
					if len(tidx)/timeEntrySize != len(idx)/offsetEntrySize+1 {
						t.Fatalf("%s: %d time entries for %d offset entries, want one seal entry", stem, len(tidx)/timeEntrySize, len(idx)/offsetEntrySize)
					}
				}
			}
			// A crash keeps exactly the acknowledged batches: no half
			// batch was left where recovery would look.
			next := crash.Crash(nil)
			l.Close()
			l2 := openT(t, next, "/p", cfg)
			defer l2.Close()
			check(l2)
		})
	}
}

// A failed fsync stays sticky (its pages may be gone), but Reopen, once
// the disk takes writes again, brings the log back without a restart: cut
// to the durable end, recovered, writable.
func TestFailedFsyncReopens(t *testing.T) {
	crash := NewCrashFS()
	l := openT(t, crash, "/p", DefaultConfig())
	defer l.Close()
	rng := rand.New(rand.NewSource(2))
	var want [][]byte
	for i := range 4 {
		b := testBatch(rng, i, int64(i))
		mustAppend(t, l, b)
		want = append(want, b)
	}
	hw := l.HighWatermark()
	crash.InjectSyncError(syscall.EIO)
	if _, err := l.Append(testBatch(rng, 9, 9)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("append with a failing fsync: %v, want ErrReadOnly", err)
	}
	if err := l.Reopen(); err == nil {
		t.Fatal("Reopen succeeded while fsync still fails")
	}
	if _, err := l.Append(testBatch(rng, 9, 9)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("append after a failed Reopen: %v, want ErrReadOnly", err)
	}
	crash.InjectSyncError(nil)
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	if l.HighWatermark() != hw || l.Err() != nil {
		t.Fatalf("after Reopen: hw %d (want %d), err %v", l.HighWatermark(), hw, l.Err())
	}
	b := testBatch(rng, 10, 10)
	if info := mustAppend(t, l, b); info.BaseOffset != hw {
		t.Fatalf("first batch after Reopen at %d, want %d (the unsynced batch must be gone)", info.BaseOffset, hw)
	}
	want = append(want, b)
	got := readAll(t, l, 0, 1<<20)
	if len(got) != len(want) {
		t.Fatalf("%d batches, want %d", len(got), len(want))
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen of a writable log: %v", err)
	}
}
