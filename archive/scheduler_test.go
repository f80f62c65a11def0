package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
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
	// A pass that read the clock before it moved must not be the one to
	// see the late messages (it would date them +1 min): let it end first.
	waitPasses(1)
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

// TestTopicRetention: a night's topic goes TopicRetention after its archive
// was built complete, and only then; never the topic of a night without an
// archive, with messages its archive lacks, of tonight, or of a program not
// archived.
func TestTopicRetention(t *testing.T) {
	msgs := sampleMessages(t)
	now := testNight.End().Add(time.Minute) // testNight is yesterday
	week := 7 * 24 * time.Hour
	type topic struct {
		night    Night
		program  Program
		builtAgo time.Duration // 0: no archive
		kept     string        // why it stays; "": deleted
	}
	// Every night but tonight is out of the lookback window, so the
	// scheduler builds none of them.
	topics := []topic{
		{testNight.AddDays(-10), Public, week + time.Minute, ""},
		{testNight.AddDays(-11), Public, week - time.Minute, "built under a week ago"},
		{testNight.AddDays(-12), Public, 0, "not archived"},
		{testNight.AddDays(-13), Public, 2 * week, "messages came after the build"},
		{testNight.AddDays(-14), Public, 2 * week, "archive without a manifest, made elsewhere"},
		{NightOf(now), Public, 2 * week, "tonight's"},
		{testNight.AddDays(-10), Partnership, 2 * week, "program not archived"},
	}
	var names []string
	for _, tp := range topics {
		names = append(names, Topic(tp.night, tp.program))
	}
	c := newCluster(t, 2, names...)
	addrs := c.ListenAddrs()
	dir := t.TempDir()
	final := func(tp topic) string { return filepath.Join(dir, tp.program.Name(), FileName(tp.night, tp.program)) }
	age := func(tp topic, ago time.Duration) {
		t.Helper()
		if err := os.Chtimes(final(tp), now.Add(-ago), now.Add(-ago)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tp := range topics {
		produce(t, addrs, Topic(tp.night, tp.program), 2, msgs[:3], tp.night.t)
		if tp.builtAgo == 0 {
			continue
		}
		if _, err := Build(context.Background(), Job{Bootstrap: addrs, Night: tp.night, Program: tp.program, OutDir: filepath.Join(dir, tp.program.Name())}); err != nil {
			t.Fatal(err)
		}
		age(tp, tp.builtAgo)
	}
	produce(t, addrs, Topic(topics[3].night, Public), 2, msgs[3:5], topics[3].night.t)
	if err := os.Remove(pathsFor(filepath.Join(dir, "public"), FileName(topics[4].night, Public)).meta); err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.Dir, cfg.Bootstrap, cfg.Poll, cfg.Programs = dir, addrs, 20*time.Millisecond, []int{int(Public)}
	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	s, err := NewScheduler(cfg, zap.New(core), reg, (&fakeClock{t: now}).Now)
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
	check := func(deleted map[string]bool) {
		t.Helper()
		// A new client each time: a client answers a Metadata request
		// from its cache for MetadataMinAge.
		cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		listed, err := kadm.NewClient(cl).ListTopics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, tp := range topics {
			name := Topic(tp.night, tp.program)
			if got := !listed.Has(name); got != deleted[name] {
				t.Errorf("%s (%s): deleted %v", name, tp.kept, got)
			}
			if _, err := os.Stat(final(tp)); (err == nil) != (tp.builtAgo != 0) {
				t.Errorf("%s: archive: %v", name, err)
			}
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := 0.0
		for _, mf := range mfs {
			if mf.GetName() == "ztfbroker_archive_topics_deleted_total" {
				for _, m := range mf.GetMetric() {
					got += m.GetCounter().GetValue()
				}
			}
		}
		if got != float64(len(deleted)) {
			t.Errorf("ztfbroker_archive_topics_deleted_total = %v, want %d", got, len(deleted))
		}
		lines := logs.FilterMessage("archive: deleted topic past retention").AllUntimed()
		if len(lines) != len(deleted) {
			t.Fatalf("%d deletion lines, want %d", len(lines), len(deleted))
		}
		for _, l := range lines {
			f := l.ContextMap()
			n, _ := ParseNight(fmt.Sprint(f["night"]))
			if !deleted[fmt.Sprint(f["topic"])] || f["archive"] != filepath.Join(dir, "public", FileName(n, Public)) {
				t.Errorf("deletion line %v", f)
			}
		}
	}

	waitPasses(3)
	check(map[string]bool{Topic(topics[0].night, Public): true})
	if n := logs.FilterMessage("archive: topic past retention kept").Len(); n != 2 {
		t.Errorf("%d warnings of topics kept past retention, want 2 (late messages, no manifest, once each): %v", n, logs.FilterMessage("archive: topic past retention kept").AllUntimed())
	}

	age(topics[1], week+time.Minute)
	waitPasses(2)
	check(map[string]bool{Topic(topics[0].night, Public): true, Topic(topics[1].night, Public): true})
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "archive.bootstrap") {
		t.Fatalf("default config without bootstrap: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want []string
	}{
		"ok":                    {func(c *Config) {}, nil},
		"listing only":          {func(c *Config) { c.Enabled, c.Bootstrap = false, nil }, nil},
		"bad program":           {func(c *Config) { c.Programs = []int{1, 3, 1} }, []string{"archive.programs: 3", "archive.programs: 1 listed twice"}},
		"keep topics":           {func(c *Config) { c.TopicRetention = 0 }, nil},
		"keep topics, negative": {func(c *Config) { c.TopicRetention = -time.Millisecond }, nil},
		"retention in days":     {func(c *Config) { c.TopicRetention = 7 * time.Millisecond }, []string{"archive.topic.retention.ms: 7ms is under an hour"}},
		"every problem":         {func(c *Config) { c.Dir, c.Level, c.Idle, c.Lookback, c.Poll, c.CheckpointBytes = "", 11, -1, 0, 0, 5 }, []string{"archive.dir", "archive.level", "archive.idle", "archive.lookback.nights", "archive.poll.ms", "archive.checkpoint.bytes"}},
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
