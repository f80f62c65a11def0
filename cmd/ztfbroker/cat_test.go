package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

const catSample402 = "../../../shared/data/ztf/alerts/other-sources/boom/2695378462115010012.avro"

func catCmd(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := runCat(ctx, args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

// The round trip through the command, against a three-broker
// kfake cluster: file -> kafka -> json -> avro -> file, byte-identical.
func TestCatCommandRoundTripKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(3, "ztf_20261129_programid1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kafka := "kafka://" + strings.Join(c.ListenAddrs(), ",") + "/ztf_20261129_programid1"
	dir := t.TempDir()
	if _, _, err := catCmd(t, "", catSample402, kafka); err != nil {
		t.Fatal(err)
	}
	jsonl := filepath.Join(dir, "night.jsonl")
	if _, stderr, err := catCmd(t, "", "--eof", "--progress", "--bytes", "datauri", kafka, jsonl); err != nil || !strings.Contains(stderr, "1 alerts") {
		t.Fatalf("%v; progress: %q", err, stderr)
	}
	js, _ := os.ReadFile(jsonl)
	for _, want := range []string{`"$avro":{"sync":"`, `"candid":2695378462115010012`, `"stampData":"data:application/gzip;base64,H4s`, `"fp_hists":[{`} {
		if !bytes.Contains(js, []byte(want)) {
			t.Errorf("JSON lacks %s", want)
		}
	}
	// JSON from stdin to Avro on stdout.
	avro, _, err := catCmd(t, string(js), "--to", "avro", "-", "-")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(catSample402)
	if avro != string(want) {
		t.Fatalf("file -> kafka -> json -> avro is %d bytes, not the %d of the original", len(avro), len(want))
	}
	// Errors say what is wrong.
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"unreachable":   {[]string{"--timeout", "1s", "kafka://127.0.0.1:1/x", "-"}, "unreachable"},
		"unknown topic": {[]string{"--eof", "kafka://" + c.ListenAddrs()[0] + "/nope", "-"}, "unknown topic"},
		"usage":         {[]string{"only-one"}, "SOURCE... DEST"},
		"bad --to":      {[]string{"--to", "xml", catSample402, "-"}, "--to must be avro or json"},
	} {
		if _, _, err := catCmd(t, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", name, err, tc.want)
		}
	}
}

func TestCatParseStart(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2h":                   now.Add(-2 * time.Hour),
		"2026-11-29T03:00:00Z": time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC),
		"2026-11-28":           time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseStart(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	if _, err := parseStart("yesterday", now); err == nil {
		t.Error("yesterday: want an error")
	}
}

// The same round trip through `ztfbroker serve` itself, with the topic
// created by --create.
func TestCatCommandRoundTripEmbedded(t *testing.T) {
	dir := t.TempDir()
	addr := catFreeAddr(t)
	serve := exec.Command(binary, "serve", "--data-dir", filepath.Join(dir, "data"), "--listen", addr, "--http", catFreeAddr(t), "--admin-http=")
	var logs bytes.Buffer
	serve.Stdout, serve.Stderr = &logs, &logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = serve.Process.Signal(syscall.SIGTERM)
		_ = serve.Wait()
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not listen: %s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	kafka := "kafka://" + addr + "/ztf_20261129_programid1"
	if _, _, err := catCmd(t, "", "--create", catSample402, kafka); err != nil {
		t.Fatal(err)
	}
	js, _, err := catCmd(t, "", "--eof", kafka, "-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "back.avro")
	if _, _, err := catCmd(t, js, "--from", "json", "-", out); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want, _ := os.ReadFile(catSample402)
	if !bytes.Equal(got, want) {
		t.Fatalf("through ztfbroker serve: %d bytes back, %d sent, or content differs", len(got), len(want))
	}
}

func catFreeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
