package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestVerifyCommand runs `ztfbroker verify` on a stopped broker's data: a
// clean store passes; one flipped bit in a stored record fails it, naming
// the partition and the segment file.
func TestVerifyCommand(t *testing.T) {
	b := startBroker(t, "")
	const topic = "verified"
	cl := newClient(t, b.Kafka, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite())
	for i := 0; i < 20; i++ {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(fmt.Sprintf("verify-%03d", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	b.Stop()

	out, err := runBinary(t, "verify", "--data-dir", b.DataDir)
	if err != nil || !strings.Contains(out, "ok      "+topic+"-0") || !strings.Contains(out, "0 damaged") {
		t.Fatalf("verify of a clean store: %v\n%s", err, out)
	}

	seg := segmentFiles(t, b.DataDir, topic+"-0")[0]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte("verify-007"))
	if at < 0 {
		t.Fatal("record not found verbatim in the segment")
	}
	data[at+3] ^= 0x10
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runBinary(t, "verify", "--data-dir", b.DataDir)
	if err == nil {
		t.Fatalf("verify passed a store with a flipped bit:\n%s", out)
	}
	if !strings.Contains(out, "DAMAGED "+topic+"-0") || !strings.Contains(out, filepath.Base(seg)) {
		t.Fatalf("verify does not name the damaged partition and segment:\n%s", out)
	}
}
