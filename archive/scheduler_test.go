package archive

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestScheduler(t *testing.T) {
	msgs := sampleMessages(t)
	yesterday := testNight
	old, stale, tooOld := yesterday.AddDays(-3), yesterday.AddDays(-4), yesterday.AddDays(-9)
	topics := []string{Topic(yesterday, Partnership), Topic(old, Public), Topic(stale, Public), Topic(tooOld, Public)}
	c := newCluster(t, 2, topics...)
	addrs := c.ListenAddrs()
	produce(t, addrs, Topic(yesterday, Partnership), 2, msgs[:5], yesterday.t)
	produce(t, addrs, Topic(old, Public), 2, msgs[:12], old.t)
	produce(t, addrs, Topic(stale, Public), 2, msgs[:10], stale.t)
	produce(t, addrs, Topic(tooOld, Public), 2, msgs[:3], tooOld.t)

	dir := t.TempDir()
	// An archive of the stale night made before 3 late messages came.
	if _, err := Build(context.Background(), Job{Bootstrap: addrs, Night: stale, Program: Public, OutDir: filepath.Join(dir, "public")}); err != nil {
		t.Fatal(err)
	}
	produce(t, addrs, Topic(stale, Public), 2, msgs[10:13], stale.t)

	clock := &fakeClock{t: yesterday.End().Add(time.Minute)}
	cfg := DefaultConfig()
	cfg.Dir, cfg.Bootstrap, cfg.Idle, cfg.Poll = dir, addrs, 10*time.Minute, 20*time.Millisecond
	s, err := NewScheduler(cfg, nil, nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitPasses := func(n int64) {
		t.Helper()
		target := s.passes.Load() + n
		for deadline := time.Now().Add(30 * time.Second); s.passes.Load() < target; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("scheduler made no progress")
			}
		}
	}
	members := func(night Night, p Program) int64 {
		var m Manifest
		if err := readJSON(pathsFor(filepath.Join(dir, p.Name()), FileName(night, p)).meta, &m); err != nil {
			return -1
		}
		return m.Members
	}
	exists := func(night Night, p Program) bool {
		_, err := os.Stat(filepath.Join(dir, p.Name(), FileName(night, p)))
		return err == nil
	}

	waitPasses(2)
	if got := members(old, Public); got != 12 {
		t.Fatalf("missing night at start: %d members, want 12", got)
	}
	if got := members(stale, Public); got != 13 {
		t.Fatalf("incomplete night: %d members after the rebuild, want 13", got)
	}
	if exists(tooOld, Public) {
		t.Fatal("a night outside the lookback window was built")
	}
	if exists(yesterday, Partnership) {
		t.Fatal("yesterday was built before the idle time past the end of the night")
	}

	// Late messages at +5 min restart the idle clock.
	clock.Set(yesterday.End().Add(5 * time.Minute))
	produce(t, addrs, Topic(yesterday, Partnership), 2, msgs[5:7], yesterday.End())
	waitPasses(2)
	clock.Set(yesterday.End().Add(12 * time.Minute))
	waitPasses(2)
	if exists(yesterday, Partnership) {
		t.Fatal("built 7 minutes after the last message, idle is 10")
	}
	clock.Set(yesterday.End().Add(16 * time.Minute))
	waitPasses(2)
	if got := members(yesterday, Partnership); got != 7 {
		t.Fatalf("yesterday: %d members, want 7", got)
	}
	entries, err := List(dir, Partnership)
	if err != nil || len(entries) != 1 || entries[0].Name != "ztf_partnership_20260115.tar.gz" {
		t.Fatalf("listing %v, %v", entries, err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "archive.bootstrap") {
		t.Fatalf("default config without bootstrap: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want []string
	}{
		"ok":            {func(c *Config) {}, nil},
		"listing only":  {func(c *Config) { c.Enabled, c.Bootstrap = false, nil }, nil},
		"bad program":   {func(c *Config) { c.Programs = []int{1, 3, 1} }, []string{"archive.programs: 3", "archive.programs: 1 listed twice"}},
		"every problem": {func(c *Config) { c.Dir, c.Level, c.Idle, c.Lookback, c.Poll, c.CheckpointBytes = "", 11, -1, 0, 0, 5 }, []string{"archive.dir", "archive.level", "archive.idle", "archive.lookback.nights", "archive.poll.ms", "archive.checkpoint.bytes"}},
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			c.Bootstrap = []string{"localhost:9092"}
			tc.edit(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if _, err := NewScheduler(c, nil, nil, nil); err == nil || errors.Is(err, nil) {
				t.Error("NewScheduler accepted a bad config")
			}
		})
	}
}

// The archive imports nothing of the project but avrofile: it must work
// against any Kafka cluster, not only ours. avrofile is the container file
// format, a leaf below the archive the way log is below broker, so importing
// it keeps imports pointing down the house table.
func TestImportsNothingInternal(t *testing.T) {
	out := mustRun(t, ".", "go", "list", "-deps", ".")
	for _, dep := range strings.Fields(out) {
		if strings.HasPrefix(dep, "github.com/ztfbroker/ztfbroker/") &&
			dep != "github.com/ztfbroker/ztfbroker/archive" && dep != "github.com/ztfbroker/ztfbroker/avrofile" {
			t.Errorf("archive imports %s", dep)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	plain, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	for name, tc := range map[string]struct {
		w    io.Writer
		want bool
	}{"pty": {pts, true}, "file": {plain, false}, "/dev/null": {devnull, false}, "buffer": {&strings.Builder{}, false}} {
		if got := IsTerminal(tc.w); got != tc.want {
			t.Errorf("%s: IsTerminal %v", name, got)
		}
	}
}
