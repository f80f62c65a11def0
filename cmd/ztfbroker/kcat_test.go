package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// printable returns n random bytes from an alphabet without the newline that
// kcat uses as its message delimiter.
func printable(n int) []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return b
}

func messages(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = append([]byte(fmt.Sprintf("%06d:", i)), printable(size-7)...)
	}
	return out
}

func kcatProduce(t *testing.T, ctx context.Context, addr, topic string, msgs [][]byte, extra ...string) {
	t.Helper()
	in := append(bytes.Join(msgs, []byte("\n")), '\n')
	args := append([]string{"-b", addr, "-t", topic, "-P", "-X", "acks=all"}, extra...)
	runTool(t, ctx, in, "kcat", args...)
}

// kcatConsume reads topic partition 0 from offsetSpec to its end and returns
// the messages with their offsets.
func kcatConsume(t *testing.T, ctx context.Context, addr, topic, offsetSpec string) (offsets []int64, values [][]byte) {
	t.Helper()
	out := runTool(t, ctx, nil, "kcat", "-b", addr, "-t", topic, "-p", "0", "-C", "-o", offsetSpec, "-e", "-q", "-f", "%o %s\n")
	for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		o, v, ok := bytes.Cut(line, []byte(" "))
		if !ok {
			t.Fatalf("kcat output line without offset: %.80q", line)
		}
		n, err := strconv.ParseInt(string(o), 10, 64)
		if err != nil {
			t.Fatalf("kcat offset %q: %v", o, err)
		}
		offsets = append(offsets, n)
		values = append(values, v)
	}
	return offsets, values
}

func sameMessages(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d messages, want %d", what, len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: message %d differs (%d bytes, want %d)", what, i, len(got[i]), len(want[i]))
		}
	}
}

func TestKcatMetadataProduceConsume(t *testing.T) {
	b := startBroker(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const topic = "ztf_20180725_programid1"

	// 2,000 messages of 60 kB, ZTF's alert size, with no set-up: the nightly
	// topic is created on first use.
	msgs := messages(2000, 60_000)
	kcatProduce(t, ctx, b.Kafka, topic, msgs)

	meta := string(runTool(t, ctx, nil, "kcat", "-b", b.Kafka, "-L"))
	if !strings.Contains(meta, `topic "`+topic+`" with 1 partitions`) || !strings.Contains(meta, "1 brokers:") {
		t.Fatalf("kcat -L does not list the topic and the broker:\n%s", meta)
	}

	offsets, values := kcatConsume(t, ctx, b.Kafka, topic, "beginning")
	sameMessages(t, "consume from beginning", values, msgs)
	for i, o := range offsets {
		if o != int64(i) {
			t.Fatalf("message %d has offset %d", i, o)
		}
	}
	// The produce path checked every batch, so the whole topic went from
	// the segment files to kcat's socket with sendfile.
	sent, _ := strconv.ParseFloat(metric(t, b, "ztfbroker_kafka_sendfile_bytes_total"), 64)
	if want := float64(len(msgs) * 60_000); sent < want {
		t.Errorf("sendfile sent %.0f bytes, want at least the %.0f of the messages", sent, want)
	}

	// From an offset.
	_, values = kcatConsume(t, ctx, b.Kafka, topic, "1500")
	sameMessages(t, "consume from offset 1500", values, msgs[1500:])
}

func TestKcatConsumeFromTimestamp(t *testing.T) {
	b := startBroker(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic = "timestamps"
	first, second := messages(50, 1000), messages(70, 1000)
	kcatProduce(t, ctx, b.Kafka, topic, first)
	time.Sleep(50 * time.Millisecond)
	mid := time.Now().UnixMilli()
	time.Sleep(50 * time.Millisecond)
	kcatProduce(t, ctx, b.Kafka, topic, second)

	offsets, values := kcatConsume(t, ctx, b.Kafka, topic, "s@"+strconv.FormatInt(mid, 10))
	sameMessages(t, "consume from timestamp", values, second)
	if offsets[0] != int64(len(first)) {
		t.Fatalf("first offset from timestamp is %d, want %d", offsets[0], len(first))
	}
}

func TestKcatCompressionCodecs(t *testing.T) {
	b := startBroker(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, codec := range []string{"gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			topic := "codec-" + codec
			// Compressible messages: the stored log must be smaller than the
			// payload, which shows batches are kept compressed, as sent.
			msgs := make([][]byte, 400)
			for i := range msgs {
				msgs[i] = []byte(fmt.Sprintf("%05d %s", i, strings.Repeat("ztf alert "+codec+" ", 200)))
			}
			kcatProduce(t, ctx, b.Kafka, topic, msgs, "-z", codec)
			_, values := kcatConsume(t, ctx, b.Kafka, topic, "beginning")
			sameMessages(t, codec+" round trip", values, msgs)

			payload := 0
			for _, m := range msgs {
				payload += len(m)
			}
			stored := logBytes(t, b.DataDir, topic+"-0")
			if stored*4 > int64(payload) {
				t.Fatalf("%s: %d bytes stored for %d bytes of payload: batches were not kept compressed", codec, stored, payload)
			}
		})
	}
}
