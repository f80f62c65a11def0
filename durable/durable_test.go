package durable

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestWriteFileOS(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "state")
	for _, want := range []string{"first, longer contents", "second"} {
		if err := WriteFile(OS{}, name, []byte(want), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil || string(got) != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("folder holds %v (%v), want only the file", ents, err)
	}
	if st, _ := os.Stat(name); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", st.Mode())
	}
}

// A failed rename leaves the old file as it was and no temporary file.
func TestWriteFileFailedRename(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "state")
	if err := os.Mkdir(name, 0o755); err != nil { // a folder cannot be renamed over
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(name, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(OS{}, name, []byte("x"), 0o644)
	if err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("error %v does not name %s", err, name)
	}
	if _, err := os.Stat(name + TempSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

// The order is the contract: data durable before the rename, the rename
// durable (folder fsync) before WriteFile returns.
func TestWriteFileOrder(t *testing.T) {
	rec := &recorder{}
	if err := WriteFile(rec, "/d/state", []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"open /d/state.tmp", "write 3", "sync", "close",
		"rename /d/state.tmp /d/state", "syncdir /d",
	}
	if !reflect.DeepEqual(rec.ops, want) {
		t.Fatalf("operations\n%q\nwant\n%q", rec.ops, want)
	}

	rec = &recorder{failSync: true}
	if err := WriteFile(rec, "/d/state", []byte("abc"), 0o644); err == nil {
		t.Fatal("a failed fsync was not reported")
	}
	for _, op := range rec.ops {
		if strings.HasPrefix(op, "rename") {
			t.Fatalf("renamed after a failed fsync: %q", rec.ops)
		}
	}
	if last := rec.ops[len(rec.ops)-1]; last != "remove /d/state.tmp" {
		t.Fatalf("temporary file not removed: %q", rec.ops)
	}
}

type recorder struct {
	ops      []string
	failSync bool
}

type recFile struct{ r *recorder }

func (r *recorder) OpenFile(name string, _ int, _ os.FileMode) (*recFile, error) {
	r.ops = append(r.ops, "open "+name)
	return &recFile{r}, nil
}
func (r *recorder) Rename(o, n string) error { r.ops = append(r.ops, "rename "+o+" "+n); return nil }
func (r *recorder) Remove(n string) error    { r.ops = append(r.ops, "remove "+n); return nil }
func (r *recorder) SyncDir(d string) error   { r.ops = append(r.ops, "syncdir "+d); return nil }

func (f *recFile) WriteAt(p []byte, _ int64) (int, error) {
	f.r.ops = append(f.r.ops, "write "+strconv.Itoa(len(p)))
	return len(p), nil
}

func (f *recFile) Sync() error {
	f.r.ops = append(f.r.ops, "sync")
	if f.r.failSync {
		return errors.New("injected")
	}
	return nil
}

func (f *recFile) Close() error { f.r.ops = append(f.r.ops, "close"); return nil }
