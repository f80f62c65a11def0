package log

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Kill -9 a real process appending under FlushAlways, reopen its log and
// find every batch it acknowledged. (Process death, not power loss: the
// page cache survives; CrashFS covers the latter.)
func TestKillProcess(t *testing.T) {
	if dir := os.Getenv("ZTFLOG_KILL_CHILD"); dir != "" {
		killChild(dir, Config{SegmentBytes: 20000, Flush: FlushAlways})
		return
	}
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := filepath.Join(t.TempDir(), "t-0")
	acked := killAfterAcks(t, "TestKillProcess", "ZTFLOG_KILL_CHILD", dir, 300)
	l := openT(t, nil, dir, Config{SegmentBytes: 20000})
	defer l.Close()
	got := readAll(t, l, 0, 1<<16)
	for base, size := range acked {
		if int64(len(got[base])) != size {
			t.Fatalf("acknowledged batch at %d: %d bytes after kill, want %d", base, len(got[base]), size)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dir); err != nil {
		t.Fatal(err)
	}
}

// killChild appends to the log in dir with cfg until killed, printing
// "<base offset> <size>" for each acknowledged batch (killAfterAcks).
func killChild(dir string, cfg Config) {
	l, err := Open(dir, cfg, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	rng := rand.New(rand.NewSource(1))
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		b := testBatch(rng, i, int64(i))
		info, err := l.Append(b)
		if err != nil {
			fmt.Println("append:", err)
			os.Exit(1)
		}
		fmt.Fprintln(w, info.BaseOffset, len(b))
		w.Flush()
	}
}

// killAfterAcks runs test in a child process with env=dir, reads the
// "<base offset> <size>" lines it prints as batches are acknowledged until
// it has n, then kills it with SIGKILL and returns them.
func killAfterAcks(t *testing.T, test, env, dir string, n int) map[int64]int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int64]int64{} // base offset -> size
	sc := bufio.NewScanner(out)
	for len(acked) < n && sc.Scan() {
		var base, size int64
		if _, err := fmt.Sscan(sc.Text(), &base, &size); err == nil {
			acked[base] = size
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if len(acked) < n {
		t.Fatalf("child acknowledged only %d batches", len(acked))
	}
	return acked
}
