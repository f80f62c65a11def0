package log

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// stepFS calls at before its n-th change to the file system (a write,
// fsync, create, rename or removal).
type stepFS struct {
	FS
	ops atomic.Int64
	n   atomic.Int64
	at  func()
}

func (c *stepFS) tick() {
	if c.ops.Add(1) == c.n.Load() {
		c.at()
	}
}

type stepFile struct {
	File
	c *stepFS
}

func (f stepFile) WriteAt(p []byte, off int64) (int, error) {
	f.c.tick()
	return f.File.WriteAt(p, off)
}
func (f stepFile) Sync() error { f.c.tick(); return f.File.Sync() }

func (c *stepFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if flag&os.O_CREATE != 0 {
		c.tick()
	}
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return stepFile{f, c}, nil
}
func (c *stepFS) Rename(o, n string) error { c.tick(); return c.FS.Rename(o, n) }
func (c *stepFS) Remove(n string) error    { c.tick(); return c.FS.Remove(n) }
func (c *stepFS) SyncDir(d string) error   { c.tick(); return c.FS.SyncDir(d) }

// A power cut at every step of a clean (each write, fsync, create, rename
// and removal, up to the clean's last) loses nothing: Open finishes or
// drops the half-done swap, Verify passes, every key's last record is
// there, and what was cleaned stays cleaned or is cleaned again.
func TestCompactCrashAtEveryStep(t *testing.T) {
	cfg := compactConfig()
	cfg.SegmentBytes = 3 << 10
	// Uncompressed and few: the race detector runs this too.
	swaps := 0
	for n := int64(1); ; n++ {
		fsys := NewCrashFS()
		l := openT(t, fsys, "/d/t-0", cfg)
		w := written{}
		writeKeys(t, l, rand.New(rand.NewSource(6)), "key", 60, 15, 1_700_000_000_000, true, w, plainCodecs)
		must(t, l.Close())
		var rebooted *CrashFS
		cfs := &stepFS{FS: fsys, at: func() { rebooted = fsys.Crash(nil) }}
		l = openT(t, cfs, "/d/t-0", cfg)
		activeBase := l.SegmentInfos()[l.Segments()-1].Base
		cfs.ops.Store(0)
		cfs.n.Store(n)
		st, err := l.Clean(CleanConfig{MapBytes: 1 << 20, DeleteRetention: time.Hour})
		l.Close()
		if rebooted == nil {
			t.Logf("%+v", st)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("crashed at each of %d steps of a clean, %d inside a swap", n-1, swaps)
			return
		}
		// Verify, which writes nothing, says a swap is to finish.
		before, _ := rebooted.ReadDir("/d/t-0")
		if swapPending(before) != "" {
			swaps++
			if err := VerifyFS(rebooted, "/d/t-0"); err == nil || !strings.Contains(err.Error(), "cut short in its swap") {
				t.Fatalf("crash at step %d: verify before open: %v", n, err)
			}
		}
		l2, err := Open("/d/t-0", cfg, Options{FS: rebooted})
		if err != nil {
			t.Fatalf("crash at step %d: open: %v", n, err)
		}
		// Every last record of a key is there; anything superseded may
		// or may not be.
		got := checkCompacted(t, l2, w, 0, false)
		if len(got) == 0 {
			t.Fatal("nothing read back")
		}
		must(t, l2.Close())
		if err := VerifyFS(rebooted, "/d/t-0"); err != nil {
			t.Fatalf("crash at step %d: verify: %v", n, err)
		}
		names, _ := rebooted.ReadDir("/d/t-0")
		for _, name := range names {
			if strings.HasSuffix(name, swapSuffix) || strings.HasSuffix(name, cleanedSuffix) || strings.HasSuffix(name, deletedSuffix) {
				t.Fatalf("crash at step %d: %s left after Open", n, name)
			}
		}
		// The next clean completes the work.
		l3 := openT(t, rebooted, "/d/t-0", cfg)
		if _, err := l3.Clean(CleanConfig{MapBytes: 1 << 20, DeleteRetention: time.Hour}); err != nil {
			t.Fatalf("crash at step %d: clean again: %v", n, err)
		}
		checkCompacted(t, l3, w, activeBase, false)
		must(t, l3.Close())
	}
}

// SIGKILL a process that appends keyed records and cleans the log in a
// loop, at random moments, five times over one folder: each Open
// recovers, Verify passes, and the last acknowledged record of every key
// is there with its value.
func TestCompactKillDuringClean(t *testing.T) {
	if dir := os.Getenv("ZTFLOG_COMPACT_CHILD"); dir != "" {
		compactChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := filepath.Join(t.TempDir(), "t-0")
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	last := map[string]string{} // key -> last acknowledged value
	lastOff := map[string]int64{}
	cleans, midClean, maxAcked := 0, 0, int64(-1)
	for round := 0; round < 5; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCompactKillDuringClean$")
		cmd.Env = append(os.Environ(), "ZTFLOG_COMPACT_CHILD="+dir, fmt.Sprintf("ZTFLOG_COMPACT_SEED=%d", rng.Int63()))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of cleans have started: mostly in
		// the middle of one.
		killAt := 1 + rng.Intn(4)
		sc := bufio.NewScanner(out)
		started := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 4 && f[0] == "rec":
				off, _ := strconv.ParseInt(f[1], 10, 64)
				last[f[2]], lastOff[f[2]] = f[3], off
				maxAcked = max(maxAcked, off)
			case len(f) == 1 && f[0] == "clean":
				started++
			case len(f) > 0 && f[0] == "error":
				t.Fatalf("child: %s", sc.Text())
			}
			if started == killAt {
				time.Sleep(time.Duration(rng.Intn(3000)) * time.Microsecond)
				break
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		cleans += started
		names, _ := os.ReadDir(dir)
		for _, n := range names {
			if strings.HasSuffix(n.Name(), cleanedSuffix) || strings.HasSuffix(n.Name(), swapSuffix) {
				midClean++ // killed inside a clean's rewrite or swap
				break
			}
		}
		l, err := Open(dir, compactConfig(), Options{})
		if err != nil {
			t.Fatalf("round %d: open after SIGKILL: %v", round, err)
		}
		got := map[string]storedRecord{}
		for _, r := range readRecords(t, l) {
			got[string(r.key)] = r
		}
		for k, v := range last {
			r, ok := got[k]
			if r.offset > maxAcked {
				continue // written before the kill, not yet reported
			}
			if !ok || string(r.value) != v || r.offset != lastOff[k] {
				t.Fatalf("round %d: key %s: got %q at %d, last acknowledged %q at %d", round, k, r.value, r.offset, v, lastOff[k])
			}
		}
		for k, r := range got {
			last[k], lastOff[k] = string(r.value), r.offset
			maxAcked = max(maxAcked, r.offset)
		}
		must(t, l.Close())
		if err := Verify(dir); err != nil {
			t.Fatalf("round %d: verify: %v", round, err)
		}
	}
	t.Logf("%d keys; %d cleans started, %d of 5 kills inside a rewrite or swap", len(last), cleans, midClean)
}

// compactChild appends keyed batches to the log in dir and cleans it
// every few batches until killed, printing "rec <offset> <key> <value>"
// for every record acknowledged and "clean" as each clean starts.
func compactChild(dir string) {
	seed, _ := strconv.ParseInt(os.Getenv("ZTFLOG_COMPACT_SEED"), 10, 64)
	cfg := compactConfig()
	cfg.Flush = FlushAlways
	l, err := Open(dir, cfg, Options{})
	if err != nil {
		fmt.Println("error open:", err)
		os.Exit(1)
	}
	rng := rand.New(rand.NewSource(seed))
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		var recs []kv
		for j := 0; j < 1+rng.Intn(4); j++ {
			recs = append(recs, kv{[]byte(fmt.Sprintf("k%02d", rng.Intn(30))), []byte(fmt.Sprintf("v%d-%d-%s", seed%1000, i, strings.Repeat("x", rng.Intn(200))))})
		}
		b, err := buildKeyed(recs, time.Now().UnixMilli(), plainCodecs[i%len(plainCodecs)], -1, 0)
		if err != nil {
			fmt.Println("error batch:", err)
			os.Exit(1)
		}
		info, err := l.Append(b)
		if err != nil {
			fmt.Println("error append:", err)
			os.Exit(1)
		}
		var out bytes.Buffer
		for j, r := range recs {
			fmt.Fprintf(&out, "rec %d %s %s\n", info.BaseOffset+int64(j), r.key, r.value)
		}
		w.Write(out.Bytes())
		w.Flush()
		if i%25 == 24 {
			fmt.Fprintln(w, "clean")
			w.Flush()
			if _, err := l.Clean(CleanConfig{MapBytes: 2000, DeleteRetention: time.Hour}); err != nil {
				fmt.Println("error clean:", err)
				os.Exit(1)
			}
		}
	}
}
