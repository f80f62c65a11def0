package archive

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

const helperEnv = "ARCHIVE_TEST_HELPER_JOB"

func TestMain(m *testing.M) {
	if js := os.Getenv(helperEnv); js != "" {
		os.Exit(helperMain(js))
	}
	goleak.VerifyTestMain(m)
}

// helperJob is what the parent test hands the re-executed test binary.
type helperJob struct {
	Bootstrap  []string
	Night      string
	Out        string
	Checkpoint int64
}

// helperMain is an archiver process for the SIGKILL test: it prints a line
// after each checkpoint and dawdles there, so the parent can kill it mid-run.
func helperMain(js string) int {
	var hj helperJob
	if err := json.Unmarshal([]byte(js), &hj); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	n, _ := ParseNight(hj.Night)
	_, err := Build(context.Background(), Job{
		Bootstrap: hj.Bootstrap, Night: n, Program: Public, OutDir: hj.Out, CheckpointBytes: hj.Checkpoint,
		afterCheckpoint: func(i int) {
			fmt.Printf("checkpoint %d\n", i)
			time.Sleep(20 * time.Millisecond)
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("done")
	return 0
}

var testNight, _ = ParseNight("20260115")

func TestReplayedNight(t *testing.T) {
	msgs := sampleMessages(t)
	if len(msgs) != 38 {
		t.Fatalf("%d sample alerts, the README counts 38", len(msgs))
	}
	topic := Topic(testNight, Public)
	c := newCluster(t, 3, topic)
	produce(t, c.ListenAddrs(), topic, 3, msgs, testNight.t.Add(4*time.Hour))
	out := t.TempDir()
	res, err := Build(context.Background(), Job{Bootstrap: c.ListenAddrs(), Night: testNight, Program: Public, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if res.Members != int64(len(msgs)) || res.NoCandid != 0 || res.Resumed {
		t.Fatalf("result %+v, want %d members", res, len(msgs))
	}
	if want := filepath.Join(out, "ztf_public_20260115.tar.gz"); res.Path != want {
		t.Fatalf("path %s, want %s", res.Path, want)
	}
	verifyArchive(t, res.Path, msgs)
	// The same candid under several schema versions keeps every copy.
	names := mustRun(t, out, "tar", "-tzf", res.Path)
	for _, want := range []string{"472263571115115000.avro\n", "472263571115115000_4.avro\n", "n87704463155000.avro\n", "MD5SUMS\n"} {
		if !strings.Contains(names, want) {
			t.Errorf("no member %q in\n%s", want, names)
		}
	}
	hidden, _ := filepath.Glob(filepath.Join(out, ".*"))
	if len(hidden) != 2 || !strings.HasSuffix(hidden[0], ".json") || !strings.HasSuffix(hidden[1], ".lock") {
		t.Errorf("left behind: %v (want the manifest and the lock file)", hidden)
	}
}

func TestSimulatedNight(t *testing.T) {
	msgs := newSimulator(t, 1).night(t, 300)
	topic := Topic(testNight, Partnership)
	c := newCluster(t, 4, topic)
	produce(t, c.ListenAddrs(), topic, 4, msgs, testNight.t.Add(3*time.Hour))
	out := t.TempDir()
	res, err := Build(context.Background(), Job{Bootstrap: c.ListenAddrs(), Night: testNight, Program: Partnership,
		OutDir: out, CheckpointBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(res.Path) != "ztf_partnership_20260115.tar.gz" || res.Members != 300 {
		t.Fatalf("result %+v", res)
	}
	var inTopic int64
	for _, pr := range res.Ranges {
		inTopic += pr.End - pr.Start
	}
	if len(res.Ranges) != 4 || inTopic != res.Members {
		t.Fatalf("topic holds %d messages in %d partitions, archive %d members", inTopic, len(res.Ranges), res.Members)
	}
	verifyArchive(t, res.Path, msgs)
	t.Logf("%d alerts, %.1f MB tar -> %.1f MB gz", res.Members, float64(res.InputBytes)/1e6, float64(res.Size)/1e6)
}

func TestEmptyAndMissingTopic(t *testing.T) {
	topic := Topic(testNight, Public)
	c := newCluster(t, 2, topic)
	out := t.TempDir()
	res, err := Build(context.Background(), Job{Bootstrap: c.ListenAddrs(), Night: testNight, Program: Public, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	verifyArchive(t, res.Path, nil)
	_, err = Build(context.Background(), Job{Bootstrap: c.ListenAddrs(), Night: testNight.AddDays(1), Program: Public, OutDir: out})
	if !errors.Is(err, ErrNoTopic) {
		t.Fatalf("missing topic: %v, want ErrNoTopic", err)
	}
	unlock, err := lockRun(pathsFor(out, FileName(testNight, Public)))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	_, err = Build(context.Background(), Job{Bootstrap: c.ListenAddrs(), Night: testNight, Program: Public, OutDir: out})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("second run of the same night: %v, want ErrBusy", err)
	}
}

// resumeFixture is a simulated night on a cluster and the archive an
// uninterrupted run makes of it.
type resumeFixture struct {
	addrs []string
	msgs  [][]byte
	sum   string
}

func newResumeFixture(t *testing.T) resumeFixture {
	msgs := newSimulator(t, 2).night(t, 200)
	topic := Topic(testNight, Public)
	c := newCluster(t, 2, topic)
	produce(t, c.ListenAddrs(), topic, 2, msgs, testNight.t.Add(5*time.Hour))
	res, err := Build(context.Background(), Job{Bootstrap: c.ListenAddrs(), Night: testNight, Program: Public,
		OutDir: t.TempDir(), CheckpointBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return resumeFixture{addrs: c.ListenAddrs(), msgs: msgs, sum: fileSHA256(t, res.Path)}
}

func TestResumeAfterCancel(t *testing.T) {
	f := newResumeFixture(t)
	out := t.TempDir()
	for _, stopAt := range []int{3, 7} {
		ctx, cancel := context.WithCancel(context.Background())
		_, err := Build(ctx, Job{Bootstrap: f.addrs, Night: testNight, Program: Public, OutDir: out, CheckpointBytes: 1 << 20,
			afterCheckpoint: func(n int) {
				if n == stopAt {
					cancel()
				}
			}})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled run: %v", err)
		}
		if _, err := os.Stat(filepath.Join(out, "ztf_public_20260115.tar.gz")); err == nil {
			t.Fatal("final archive exists after a cancelled run")
		}
	}
	res, err := Build(context.Background(), Job{Bootstrap: f.addrs, Night: testNight, Program: Public, OutDir: out, CheckpointBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed {
		t.Fatal("the third run did not resume")
	}
	if got := fileSHA256(t, res.Path); got != f.sum {
		t.Fatalf("resumed archive %s differs from uninterrupted %s", got, f.sum)
	}
	verifyArchive(t, res.Path, f.msgs)
}

func TestResumeAfterSIGKILL(t *testing.T) {
	f := newResumeFixture(t)
	out := t.TempDir()
	js, _ := json.Marshal(helperJob{Bootstrap: f.addrs, Night: testNight.String(), Out: out, Checkpoint: 1 << 20})
	for _, killAfter := range []int{2, 5} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+string(js))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		killed := false
		for sc.Scan() {
			if sc.Text() == fmt.Sprintf("checkpoint %d", killAfter) {
				// Land the kill mid-way through the next stretch of writing.
				time.Sleep(25 * time.Millisecond)
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
				break
			}
		}
		_ = cmd.Wait()
		if !killed {
			t.Fatalf("helper ended before checkpoint %d", killAfter)
		}
		if _, err := os.Stat(filepath.Join(out, "ztf_public_20260115.tar.gz")); err == nil {
			t.Fatal("final archive exists after SIGKILL")
		}
	}
	res, err := Build(context.Background(), Job{Bootstrap: f.addrs, Night: testNight, Program: Public, OutDir: out, CheckpointBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed {
		t.Fatal("the run after SIGKILL did not resume")
	}
	if got := fileSHA256(t, res.Path); got != f.sum {
		t.Fatalf("resumed archive %s differs from uninterrupted %s", got, f.sum)
	}
	verifyArchive(t, res.Path, f.msgs)
}

func TestCorruptCheckpointStartsOver(t *testing.T) {
	f := newResumeFixture(t)
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, _ = Build(ctx, Job{Bootstrap: f.addrs, Night: testNight, Program: Public, OutDir: out, CheckpointBytes: 1 << 20,
		afterCheckpoint: func(n int) {
			if n == 4 {
				cancel()
			}
		}})
	cancel()
	p := pathsFor(out, FileName(testNight, Public))
	if err := os.Truncate(p.part, 100); err != nil { // shorter than the checkpoint says
		t.Fatal(err)
	}
	res, err := Build(context.Background(), Job{Bootstrap: f.addrs, Night: testNight, Program: Public, OutDir: out, CheckpointBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed {
		t.Fatal("resumed from a checkpoint whose .part is short")
	}
	if got := fileSHA256(t, res.Path); got != f.sum {
		t.Fatalf("restarted archive differs from uninterrupted")
	}
}
