//go:build unix

package broker

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// A topic whose data was acknowledged survives SIGKILL (KAFKA-NOTES trap 9):
// a child process creates topics, produces, and kills itself without Close;
// the parent reopens the folder and finds every acknowledged batch.
func TestSIGKILLKeepsAcknowledgedTopics(t *testing.T) {
	if dir := os.Getenv("ZTF_BROKER_CRASH_DIR"); dir != "" {
		crashChild(t, dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLKeepsAcknowledgedTopics$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ZTF_BROKER_CRASH_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}

	e := newEnv(t, func(c *Config) { c.DataDir = dir; c.NumPartitions = 2 })
	b := e.open()
	for _, topic := range []string{"ztf_20180725_programid1", "ztf_20180725_programid2"} {
		_, n, err := b.Topic(context.Background(), topic, false)
		if err != nil || n != 2 {
			t.Fatalf("%s after SIGKILL: %d partitions, %v", topic, n, err)
		}
		for p := int32(0); p < 2; p++ {
			if bs := fetchAll(t, b, topic, p, 0); len(bs) != 5 {
				t.Fatalf("%s-%d: %d batches after SIGKILL, want 5", topic, p, len(bs))
			}
		}
	}
}

func crashChild(t *testing.T, dir string) {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.NumPartitions = dir, 2
	b, err := Open(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"ztf_20180725_programid1", "ztf_20180725_programid2"} {
		if _, _, err := b.Topic(context.Background(), topic, true); err != nil {
			t.Fatal(err)
		}
		for p := int32(0); p < 2; p++ {
			for i := 0; i < 5; i++ {
				batch := makeBatch(t, testBatch{baseTS: time.Now().UnixMilli(), tsDeltas: deltas(3, 1), valueSize: 1000})
				if _, _, err := b.Produce(context.Background(), topic, p, batch); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
