package log

import (
	"errors"
	"io/fs"
	"math/rand"
	"os"
	"slices"
	"testing"
)

// CrashFS keeps a name only once the folder holding it is synced, and a
// folder only once its parent is: the crash tests see a missing SyncDir.
func TestCrashFSNamesNeedDirSync(t *testing.T) {
	// Every case starts from /a/f, synced, with /a and / synced.
	setup := func(t *testing.T) *CrashFS {
		fsys := NewCrashFS()
		must(t, fsys.MkdirAll("/a", 0o755))
		writeSynced(t, fsys, "/a/f", "x")
		must(t, fsys.SyncDir("/a"))
		must(t, fsys.SyncDir("/"))
		return fsys
	}
	for _, tc := range []struct {
		name     string
		change   func(t *testing.T, fsys *CrashFS)
		syncs    []string // the folders to sync after change
		unsynced []string // the files after a crash without those syncs
		synced   []string // and with them
	}{
		{
			name:     "create",
			change:   func(t *testing.T, fsys *CrashFS) { writeSynced(t, fsys, "/a/g", "y") },
			syncs:    []string{"/a"},
			unsynced: []string{"/a/f"},
			synced:   []string{"/a/f", "/a/g"},
		},
		{
			name:     "rename",
			change:   func(t *testing.T, fsys *CrashFS) { must(t, fsys.Rename("/a/f", "/a/g")) },
			syncs:    []string{"/a"},
			unsynced: []string{"/a/f"},
			synced:   []string{"/a/g"},
		},
		{
			name:     "remove",
			change:   func(t *testing.T, fsys *CrashFS) { must(t, fsys.Remove("/a/f")) },
			syncs:    []string{"/a"},
			unsynced: []string{"/a/f"},
			synced:   nil,
		},
		{
			name:     "remove folder",
			change:   func(t *testing.T, fsys *CrashFS) { must(t, fsys.RemoveAll("/a")) },
			syncs:    []string{"/"},
			unsynced: []string{"/a/f"},
			synced:   nil,
		},
		{
			name: "new folder, its file synced",
			change: func(t *testing.T, fsys *CrashFS) {
				must(t, fsys.MkdirAll("/b/c", 0o755))
				writeSynced(t, fsys, "/b/c/h", "z")
				must(t, fsys.SyncDir("/b/c"))
			},
			syncs:    []string{"/b", "/"},
			unsynced: []string{"/a/f"},
			synced:   []string{"/a/f", "/b/c/h"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, sync := range []bool{false, true} {
				fsys := setup(t)
				tc.change(t, fsys)
				want := tc.unsynced
				if sync {
					for _, d := range tc.syncs {
						must(t, fsys.SyncDir(d))
					}
					want = tc.synced
				}
				if got := files(t, fsys.Crash(nil), "/"); !slices.Equal(got, want) {
					t.Errorf("synced %v: after the crash %v, want %v", sync, got, want)
				}
			}
		})
	}
}

// A new partition's folder is made durable in its parent when the log is
// opened: appended and synced data survives a crash that comes before any
// Close. Before the log synced the parent, the folder vanished with every
// segment in it.
func TestNewPartitionFolderSurvivesCrash(t *testing.T) {
	fsys := NewCrashFS()
	cfg := Config{SegmentBytes: 1000, IndexIntervalBytes: 100, Flush: FlushAlways}
	l := openT(t, fsys, "/data/t-0", cfg)
	rng := rand.New(rand.NewSource(1))
	acked := map[int64][]byte{}
	for i := 0; i < 30; i++ {
		b := testBatch(rng, i, int64(i))
		acked[mustAppend(t, l, b).BaseOffset] = b
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if l.Segments() < 2 {
		t.Fatalf("%d segments, want a roll", l.Segments())
	}
	fsys = fsys.Crash(nil)
	l.Close()

	if names, err := fsys.ReadDir("/data/t-0"); err != nil || len(names) == 0 {
		t.Fatalf("partition folder after the crash: %v, %v", names, err)
	}
	l = openT(t, fsys, "/data/t-0", cfg)
	defer l.Close()
	got := readAll(t, l, 0, 1<<20)
	if len(got) != len(acked) {
		t.Fatalf("recovered %d of %d acknowledged batches", len(got), len(acked))
	}
	for off, b := range acked {
		if !sameBatch(got[off], b) {
			t.Fatalf("batch at %d differs", off)
		}
	}
}

// Remove (topic deletion) is durable: a crash does not bring the folder
// back.
func TestRemoveSurvivesCrash(t *testing.T) {
	fsys := NewCrashFS()
	l := openT(t, fsys, "/data/t-0", Config{Flush: FlushAlways})
	mustAppend(t, l, makeBatch(nil, 1, 1, 10))
	// The folder is durable (Open saw to it; say so for the test's sake).
	must(t, fsys.SyncDir("/data"))
	must(t, fsys.SyncDir("/"))
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
	fsys = fsys.Crash(nil)
	if names, err := fsys.ReadDir("/data/t-0"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("removed folder back after a crash: %v, %v", names, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeSynced(t *testing.T, fsys FS, name, data string) {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	must(t, err)
	_, err = f.WriteAt([]byte(data), 0)
	must(t, err)
	must(t, f.Sync())
	must(t, f.Close())
}

// files lists the files under dir, depth first, by full name.
func files(t *testing.T, fsys *CrashFS, dir string) []string {
	t.Helper()
	names, err := fsys.ReadDir(dir)
	must(t, err)
	var out []string
	for _, name := range names {
		p := dir + name
		if dir != "/" {
			p = dir + "/" + name
		}
		if _, ok := fsys.Bytes(p); ok {
			out = append(out, p)
		} else {
			out = append(out, files(t, fsys, p)...)
		}
	}
	return out
}
