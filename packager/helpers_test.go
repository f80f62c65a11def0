package packager

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

const python = "/usr/bin/python3"

func newCluster(t testing.TB, brokers int) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newProducer(t testing.TB, c *kfake.Cluster) *kgo.Client {
	t.Helper()
	cl, err := NewKafkaProducer(KafkaOptions{Bootstrap: c.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.HistoryDir = filepath.Join(t.TempDir(), "history")
	cfg.RejectDir = filepath.Join(t.TempDir(), "rejects")
	return cfg
}

func newTestPackager(t testing.TB, cfg Config, prod Producer) *Packager {
	t.Helper()
	var p *Packager
	var err error
	if tt, ok := t.(*testing.T); ok {
		p, err = New(cfg, prod, zaptest.NewLogger(tt), nil)
	} else {
		p, err = New(cfg, prod, nil, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// consume reads n records from the topics matching regex.
func consume(t testing.TB, addrs []string, regex string, n int, extra ...kgo.Opt) []*kgo.Record {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeRegex(), kgo.ConsumeTopics(regex),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64 << 20)}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records from %s", len(out), n, regex)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

type pySummary struct {
	ObjectID   string    `json:"objectId"`
	Candid     int64     `json:"candid"`
	JD         float64   `json:"jd"`
	Ndethist   int       `json:"ndethist"`
	Detections int       `json:"detections"`
	Limits     int       `json:"limits"`
	PrvJDs     []float64 `json:"prv_jds"`
	FpHists    int       `json:"fp_hists"`
	Cutouts    []int     `json:"cutouts"`
	Gzip       bool      `json:"gzip"`
}

// pyCheck decodes values with python3-avro (testdata/check_alerts.py) and
// validates them against the 4.02 schema. A missing python3-avro fails.
func pyCheck(t testing.TB, s *Schema, mode string, args []string, values [][]byte) []pySummary {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import avro.io, avro.datafile").CombinedOutput(); err != nil {
		t.Fatalf("python3-avro is required (apt-get install python3-avro): %v: %s", err, out)
	}
	dir := t.TempDir()
	schemaPath := filepath.Join(dir, "alert.avsc")
	if err := os.WriteFile(schemaPath, s.Text, 0o644); err != nil {
		t.Fatal(err)
	}
	cmdArgs := append([]string{"testdata/check_alerts.py", schemaPath, mode}, args...)
	for i, v := range values {
		f := filepath.Join(dir, fmt.Sprintf("%06d.avro", i))
		if err := os.WriteFile(f, v, 0o644); err != nil {
			t.Fatal(err)
		}
		cmdArgs = append(cmdArgs, f)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(python, cmdArgs...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3-avro check failed: %v\n%s", err, stderr.String())
	}
	var sums []pySummary
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s pySummary
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, s)
	}
	if len(sums) != len(values) {
		t.Fatalf("python decoded %d of %d alerts", len(sums), len(values))
	}
	return sums
}

func values(recs []*kgo.Record) [][]byte {
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = r.Value
	}
	return out
}

// readContainer parses a container file into its header and its blocks,
// the records decompressed.
func readContainer(b []byte) (*avrofile.Header, []avrofile.Block, error) {
	h, off, err := avrofile.ParseHeader(b)
	if err != nil {
		return nil, nil, err
	}
	var blocks []avrofile.Block
	for off < len(b) {
		blk, n, err := avrofile.ReadBlock(b[off:], h.Sync)
		if err != nil {
			return nil, nil, err
		}
		if blk.Data, err = avrofile.Decompress(h.Codec(), blk.Data); err != nil {
			return nil, nil, err
		}
		blocks = append(blocks, blk)
		off += n
	}
	return h, blocks, nil
}
