package packager

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

func TestCompressionSettings(t *testing.T) {
	for name, tc := range map[string]struct {
		codec string
		level int
		want  string // "": valid
	}{
		"default":           {"", 0, ""},
		"zstd 19":           {"zstd", 19, ""},
		"gzip 9":            {"gzip", 9, ""},
		"lz4":               {"lz4", 0, ""},
		"snappy":            {"snappy", 0, ""},
		"none":              {"none", 0, ""},
		"unknown codec":     {"brotli", 0, "packager.compression: \"brotli\""},
		"zstd 23":           {"zstd", 23, "packager.compression.level: 23"},
		"gzip 10":           {"gzip", 10, "packager.compression.level: 10"},
		"lz4 takes none":    {"lz4", 3, "lz4 takes no level"},
		"negative level":    {"zstd", -1, "packager.compression.level: -1"},
		"kafka's uppercase": {"ZSTD", 0, "packager.compression"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Compression, cfg.CompressionLevel = tc.codec, tc.level
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				cl, err := NewKafkaProducer(KafkaOptions{Bootstrap: []string{"127.0.0.1:1"}, Compression: tc.codec, CompressionLevel: tc.level})
				if err != nil {
					t.Fatal(err)
				}
				cl.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if cl, err := NewKafkaProducer(KafkaOptions{Bootstrap: []string{"127.0.0.1:1"}, Compression: tc.codec, CompressionLevel: tc.level}); err == nil {
				cl.Close()
				t.Fatal("NewKafkaProducer took what Validate refuses")
			}
		})
	}
	cfg := testConfig(t)
	cfg.Partitions = 0
	if err := cfg.Validate(); err != nil {
		t.Errorf("partitions 0 (the default): %v", err)
	}
	for _, n := range []int32{-2, maxPartitions + 1} {
		cfg.Partitions = n
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "packager.partitions") {
			t.Errorf("partitions %d: %v", n, err)
		}
	}
}

// teeProducer keeps a copy of each value it is handed, by key, then
// produces it.
type teeProducer struct {
	*kgo.Client
	mu   sync.Mutex
	sent map[string][]byte
}

func (p *teeProducer) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.mu.Lock()
	p.sent[string(r.Key)] = bytes.Clone(r.Value)
	p.mu.Unlock()
	p.Client.Produce(ctx, r, promise)
}

// oneAlertFile checks that v is a container file of one record.
func oneAlertFile(v []byte) error {
	rd, err := avrofile.NewReader(bytes.NewReader(v))
	if err != nil {
		return err
	}
	b, err := rd.Next()
	if err != nil {
		return err
	}
	if b.Count != 1 {
		return fmt.Errorf("a block of %d records, want 1", b.Count)
	}
	if _, err := rd.Next(); err != io.EOF {
		return fmt.Errorf("after the first block: %v, want the end", err)
	}
	return nil
}

// batchReads records what a consumer's fetches held: franz-go reports each
// record batch as the broker served it, with its codec and sizes.
type batchReads struct {
	mu                   sync.Mutex
	codecs               map[uint8]int
	compressed, expanded int
}

func (h *batchReads) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.codecs[m.CompressionType]++
	h.compressed += m.CompressedBytes
	h.expanded += m.UncompressedBytes
}

// TestProducerCompresses: with each codec, the batches reach the broker
// compressed with it, every alert reads back byte for byte as it was made, and
// zstd (the default) stores the OCF alerts in under 60% of their bytes: their
// schema text compresses away.
func TestProducerCompresses(t *testing.T) {
	const alerts = 60
	codecID := map[string]uint8{"zstd": 4, "lz4": 3, "snappy": 2, "gzip": 1, "none": 0}
	for _, codec := range []string{"zstd", "lz4", "snappy", "gzip", "none"} {
		t.Run(codec, func(t *testing.T) {
			c := newCluster(t, 1)
			cl, err := NewKafkaProducer(KafkaOptions{Bootstrap: c.ListenAddrs(), Compression: codec})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cl.Close)
			tee := &teeProducer{Client: cl, sent: map[string][]byte{}}
			p := newTestPackager(t, testConfig(t), tee)
			sim, err := NewSimulation(SimulateConfig{Alerts: alerts, Start: nightStart}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res, err := p.Package(context.Background(), sim.Exposure(0)); err != nil || res.Alerts != alerts {
				t.Fatalf("%+v %v", res, err)
			}
			topic := NightTopic(TimeJD(nightStart), 1)
			reads := &batchReads{codecs: map[uint8]int{}}
			var made int
			for _, r := range consume(t, c.ListenAddrs(), "^"+topic+"$", alerts, kgo.WithHooks(reads)) {
				want := tee.sent[string(r.Key)]
				if !bytes.Equal(r.Value, want) {
					t.Fatalf("%s: %d bytes read back, %d made", r.Key, len(r.Value), len(want))
				}
				if err := oneAlertFile(r.Value); err != nil {
					t.Fatalf("%s: %v", r.Key, err)
				}
				made += len(want)
			}
			if len(reads.codecs) != 1 || reads.codecs[codecID[codec]] == 0 {
				t.Fatalf("batches by codec %v, want all %d (%s)", reads.codecs, codecID[codec], codec)
			}
			stored := reads.compressed
			t.Logf("%s: %d bytes of alerts stored in %d (%.0f%%)", codec, made, stored, 100*float64(stored)/float64(made))
			if codec == "zstd" && stored*10 > made*6 {
				t.Errorf("zstd stored %d bytes for %d bytes of alerts, want under 60%%", stored, made)
			}
		})
	}
}
