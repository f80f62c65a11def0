package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestBoundedOpenFiles (issue 11) runs the broker under `ulimit -n 256`:
// one producer rolls 2,000 segments (one-record batches with timestamps
// 1 ms apart under segment.ms 1), the broker restarts and serves every
// record, and then 1,000 clients start archive downloads and stop
// reading, while the broker keeps taking produce requests (rolling more
// segments), serving fetches and answering /healthz. Before the file
// cache every segment held 3 descriptors: the partition turned read-only
// after ~80 segments (EMFILE at a roll), and the stalled downloads alone
// exhausted the descriptors.
func TestBoundedOpenFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("rolls 2,000 segments")
	}
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc")
	}
	const nofile, segments, stalled = 256, 2000, 1000
	// The process runs through sh, which lowers the limit and execs it
	// (the same pid). Tests before this one in the file order run with
	// the plain binary; this one is not parallel, so none runs meanwhile.
	wrapper := filepath.Join(t.TempDir(), "ztfbroker-ulimit")
	script := fmt.Sprintf("#!/bin/sh\nulimit -n %d || exit 1\nexec %q \"$@\"\n", nofile, binary)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := binary
	binary = wrapper
	t.Cleanup(func() { binary = plain })

	b := startBroker(t, "", "--set", "http.max.connections=64")
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", b.cmd.Process.Pid))
		if err != nil {
			t.Fatalf("descriptors of the broker: %v", err)
		}
		return len(ents)
	}
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", b.cmd.Process.Pid))
	if err != nil || !strings.Contains(string(limits), "Max open files            256") {
		t.Fatalf("broker not under ulimit -n %d: %v\n%s", nofile, err, limits)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const topic = "rolls"
	adm := kadm.NewClient(newClient(t, b.Kafka))
	one := func(s string) *string { return &s }
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"segment.ms": one("1"), "flush.ms": one("1000")}, topic); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	base := time.Now()
	produce := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			r := &kgo.Record{Value: []byte(strconv.Itoa(i)), Timestamp: base.Add(time.Duration(i) * time.Millisecond)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce record %d (broker holding %d descriptors): %v\n%s", i, fds(), err, tail(b.Logs()))
			}
		}
	}
	start := time.Now()
	produce(0, segments)
	logs, _ := filepath.Glob(filepath.Join(b.DataDir, topic+"-0", "*.log"))
	t.Logf("%d records produced in %v: %d segments, broker holding %d descriptors", segments, time.Since(start).Round(time.Millisecond), len(logs), fds())
	if len(logs) < segments {
		t.Fatalf("%d segments, want %d", len(logs), segments)
	}
	checkRecords := func(n int) {
		t.Helper()
		recs := consumeAll(t, b.Kafka, topic)
		if len(recs) != n {
			t.Fatalf("%d records, want %d", len(recs), n)
		}
		for i, r := range recs {
			if string(r.Value) != strconv.Itoa(i) {
				t.Fatalf("record %d holds %q", i, r.Value)
			}
		}
	}

	b.Stop()
	b.Restart()
	t.Logf("restarted over %d segments: %d descriptors", len(logs), fds())
	checkRecords(segments)

	// 1,000 downloads of a 256 MiB archive that nobody reads.
	dir := filepath.Join(b.DataDir, "archive", "public")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const name = "ztf_public_20240101.tar.gz"
	f, err := os.Create(filepath.Join(dir, name))
	if err == nil {
		err = f.Truncate(256 << 20) // sparse
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Head("http://" + b.HTTP + "/alerts/public/" + name)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("archive not served: %v %v", err, resp)
	}
	resp.Body.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < stalled; i++ {
		c, err := net.Dial("tcp", b.HTTP)
		if err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /alerts/public/%s HTTP/1.1\r\nHost: x\r\n\r\n", name)
	}
	time.Sleep(2 * time.Second) // the server fills the socket buffers and blocks
	held := fds()
	t.Logf("%d stalled downloads: broker holding %d descriptors", stalled, held)
	if held >= nofile {
		t.Fatalf("broker holds %d descriptors, its limit is %d", held, nofile)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err = hc.Get("http://" + b.HTTP + "/healthz")
	if err != nil {
		t.Fatalf("healthz during %d stalled downloads: %v", stalled, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	produce(segments, 100) // 100 more rolls, each opening 3 files
	checkRecords(segments + 100)
	t.Logf("after: broker holding %d descriptors", fds())
}

// tail is the end of a log, for a failure message.
func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}
