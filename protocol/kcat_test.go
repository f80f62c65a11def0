package protocol

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestKcat runs librdkafka, through kcat, against the listener when kcat is
// installed: metadata, produce with each codec, consume from the start, from
// an offset and from a timestamp.
func TestKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is needed by this test and is not installed (.ci/run installs it): %v", err)
	}
	ts := startServer(t, Config{}, nil)
	run := func(stdin string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kcat, append([]string{"-b", ts.addr}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	var lines []string
	for i := range 100 {
		lines = append(lines, fmt.Sprintf("alert-%03d-%s", i, strings.Repeat("x", 1000)))
	}
	input := strings.Join(lines, "\n") + "\n"
	for attr, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		topic := "kcat_" + codec
		run(input, "-P", "-t", topic, "-z", codec, "-X", "topic.request.required.acks=-1")
		// librdkafka falls back to no compression, silently, when it
		// thinks the broker cannot take a codec: check the stored batch.
		ts.b.mu.Lock()
		stored := ts.b.topics[topic].parts[0].batches[0]
		ts.b.mu.Unlock()
		if got := int(binary.BigEndian.Uint16(stored[21:]) & 7); got != attr {
			t.Errorf("%s: stored batch has codec %d, want %d", codec, got, attr)
		}
		got := run("", "-C", "-t", topic, "-o", "beginning", "-e", "-q")
		if got != input {
			t.Fatalf("%s: consumed %d bytes, want %d", codec, len(got), len(input))
		}
	}
	if md := run("", "-L"); !strings.Contains(md, `topic "kcat_zstd" with 1 partitions`) {
		t.Errorf("metadata:\n%s", md)
	}
	got := run("", "-C", "-t", "kcat_lz4", "-o", "95", "-e", "-q", "-f", "%o\n")
	if got != "95\n96\n97\n98\n99\n" {
		t.Errorf("from offset 95: %q", got)
	}
	ms := time.Now().Add(-time.Minute).UnixMilli()
	if got := run("", "-C", "-t", "kcat_none", "-o", fmt.Sprintf("s@%d", ms), "-e", "-q", "-f", "%o\n"); !strings.HasPrefix(got, "0\n") {
		t.Errorf("from timestamp: %q", got[:min(len(got), 20)])
	}
}
