package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// archiveSamples is the single-alert files of the shared sample folder.
func archiveSamples(t *testing.T) [][]byte {
	t.Helper()
	files, err := filepath.Glob("../../../shared/data/ztf/alerts/ztf-avro-alert/history/v*/*.avro")
	if err != nil || len(files) < 20 {
		t.Fatalf("sample alerts: %d files, %v", len(files), err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func archiveProduce(t *testing.T, addr, topic string, values [][]byte) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, v := range values {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// archiveCheck extracts with GNU tar and runs md5sum -c.
func archiveCheck(t *testing.T, path string, want int) {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{{"tar", "-xzf", path}, {"md5sum", "-c", "--strict", "MD5SUMS"}} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	members, _ := filepath.Glob(filepath.Join(dir, "*.avro"))
	if len(members) != want {
		t.Fatalf("%d members, want %d", len(members), want)
	}
}

func TestArchiveCommandKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "ztf_20260110_programid2"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs := archiveSamples(t)
	archiveProduce(t, c.ListenAddrs()[0], "ztf_20260110_programid2", msgs)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	err = runArchive(context.Background(), []string{"--bootstrap", strings.Join(c.ListenAddrs(), ","),
		"--night", "20260110", "--program", "2", "--out", out, "--level", "1", "--progress", "always"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	path := filepath.Join(out, "ztf_partnership_20260110.tar.gz")
	if !strings.HasPrefix(stdout.String(), path+": ") || !strings.Contains(stdout.String(), " alerts, ") {
		t.Fatalf("stdout %q", stdout.String())
	}
	if !strings.Contains(stderr.String(), "100%") {
		t.Errorf("--progress always drew no bar: %q", stderr.String())
	}
	archiveCheck(t, path, len(msgs))
}

func TestArchiveCommandFlags(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no night":    {[]string{"--out", t.TempDir()}, "--night is required"},
		"bad night":   {[]string{"--night", "2026-01-10"}, "want YYYYMMDD"},
		"bad program": {[]string{"--night", "20260110", "--program", "3", "--level", "12"}, "program: 3"},
		"bad level":   {[]string{"--night", "20260110", "--level", "12"}, "level: 12"},
		"progress":    {[]string{"--night", "20260110", "--progress", "sometimes"}, "--progress"},
		"extra":       {[]string{"--night", "20260110", "more"}, "unexpected arguments"},
		"unknown":     {[]string{"--nite", "20260110"}, "flag provided but not defined"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runArchive(context.Background(), tc.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// The archiver against our own broker: `ztfbroker serve` in a process.
func TestArchiveCommandEmbeddedBroker(t *testing.T) {
	b := startBroker(t, "")
	defer b.Stop()
	msgs := archiveSamples(t)
	archiveProduce(t, b.Kafka, "ztf_20260111_programid1", msgs)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := runArchive(context.Background(), []string{"--bootstrap", b.Kafka, "--night", "20260111", "--out", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr is not a terminal, yet: %q", stderr.String())
	}
	archiveCheck(t, filepath.Join(out, "ztf_public_20260111.tar.gz"), len(msgs))
}
