package archive

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// sampleDir is the shared folder of real ZTF alerts (see its README).
func sampleDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("ZTF_SAMPLE_ALERTS")
	if dir == "" {
		dir = "../../shared/data/ztf/alerts"
	}
	if _, err := os.Stat(dir); err != nil {
		tb.Fatalf("sample alerts: %v (set ZTF_SAMPLE_ALERTS)", err)
	}
	return dir
}

// sampleFiles is every .avro under the sample folder, sorted.
func sampleFiles(tb testing.TB) []string {
	tb.Helper()
	var files []string
	err := filepath.WalkDir(sampleDir(tb), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".avro") {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) == 0 {
		tb.Fatalf("sample alerts: %v, %d files", err, len(files))
	}
	slices.Sort(files)
	return files
}

// sampleMessages is one single-alert container per alert: files holding
// several alerts are split at block boundaries, header copied, bytes kept.
func sampleMessages(tb testing.TB) [][]byte {
	tb.Helper()
	var msgs [][]byte
	for _, f := range sampleFiles(tb) {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		h, hlen, err := avrofile.ParseHeader(b)
		if err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		var blocks [][]byte
		for off := hlen; off < len(b); {
			blk, n, err := avrofile.ReadBlock(b[off:], h.Sync)
			if err != nil {
				tb.Fatalf("%s: %v", f, err)
			}
			if blk.Count != 1 {
				tb.Fatalf("%s: block of %d alerts", f, blk.Count)
			}
			blocks = append(blocks, b[off:off+n])
			off += n
		}
		if len(blocks) == 1 {
			msgs = append(msgs, b)
			continue
		}
		for _, blk := range blocks {
			msgs = append(msgs, append(slices.Clip(b[:hlen]), blk...))
		}
	}
	return msgs
}

// decodeAlerts decodes a container file with hamba/avro, its writer schema
// read by avrofile's lenient parser (ZTF's defaults are often invalid), and
// checks nothing is left over.
func decodeAlerts(value []byte) ([]map[string]any, error) {
	h, hlen, err := avrofile.ParseHeader(value)
	if err != nil {
		return nil, err
	}
	schema, err := avrofile.ParseSchema(h.Schema())
	if err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	var out []map[string]any
	for off := hlen; off < len(value); {
		blk, n, err := avrofile.ReadBlock(value[off:], h.Sync)
		if err != nil {
			return nil, err
		}
		if c := h.Codec(); c != avrofile.CodecNull {
			return nil, fmt.Errorf("codec %s", c)
		}
		// A reader over the block itself, not a buffered decoder, so that
		// bytes left over show.
		r := avro.NewReader(nil, 0).Reset(blk.Data)
		for range blk.Count {
			var m map[string]any
			if r.ReadVal(schema, &m); r.Error != nil {
				return nil, r.Error
			}
			out = append(out, m)
		}
		if r.Peek(); !errors.Is(r.Error, io.EOF) {
			return nil, errors.New("bytes left in block")
		}
		off += n
	}
	return out, nil
}

// simulator makes synthetic single-alert files from the real 4.02 sample:
// the same schema text inside, new candid, objectId, position, magnitude,
// and incompressible cutouts of a real alert's size.
type simulator struct {
	schema  string
	base    map[string]any
	rng     *rand.Rand
	candid0 int64
}

func newSimulator(tb testing.TB, seed uint64) *simulator {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(sampleDir(tb), "other-sources/boom/2695378462115010012.avro"))
	if err != nil {
		tb.Fatal(err)
	}
	d, err := ocf.NewDecoder(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if !d.HasNext() {
		tb.Fatal("4.02 sample: no alert")
	}
	if err := d.Decode(&m); err != nil {
		tb.Fatal(err)
	}
	return &simulator{
		schema: string(d.Metadata()["avro.schema"]), base: m,
		rng: rand.New(rand.NewPCG(seed, 1)), candid0: 3000000000015000000 + int64(seed)*1_000_000,
	}
}

// alert i of the night, the same bytes for the same seed and i.
func (s *simulator) alert(tb testing.TB, i int) []byte {
	tb.Helper()
	m := s.base
	cand := m["candidate"].(map[string]any)
	candid := s.candid0 + int64(i)
	m["candid"] = candid
	cand["candid"] = candid
	m["objectId"] = fmt.Sprintf("ZTF26a%06d", i)
	cand["ra"] = s.rng.Float64() * 360
	cand["dec"] = s.rng.Float64()*120 - 30
	cand["magpsf"] = float32(14 + s.rng.Float64()*7)
	for _, k := range []string{"cutoutScience", "cutoutTemplate", "cutoutDifference"} {
		c := m[k].(map[string]any)
		if inner, ok := c["ztf.alert.cutout"].(map[string]any); ok { // hamba's union form
			c = inner
		}
		stamp := make([]byte, 12000+s.rng.IntN(3000))
		for j := range stamp {
			stamp[j] = byte(s.rng.Uint32())
		}
		stamp[0], stamp[1] = 0x1f, 0x8b
		c["stampData"] = stamp
	}
	var out bytes.Buffer
	enc, err := ocf.NewEncoder(s.schema, &out, ocf.WithCodec(ocf.Null),
		ocf.WithSchemaMarshaler(func(avro.Schema) ([]byte, error) { return []byte(s.schema), nil }))
	if err != nil {
		tb.Fatal(err)
	}
	if err := enc.Encode(m); err != nil {
		tb.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

func (s *simulator) night(tb testing.TB, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = s.alert(tb, i)
	}
	return out
}

// newCluster is an in-process Kafka cluster with the topic seeded.
func newCluster(tb testing.TB, partitions int32, topics ...string) *kfake.Cluster {
	tb.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// produce spreads values over partitions round-robin, in order, with
// timestamps one second apart from base.
func produce(tb testing.TB, addrs []string, topic string, partitions int32, values [][]byte, base time.Time) {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(1000))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Partition: int32(i) % partitions, Value: v,
			Timestamp: base.Add(time.Duration(i) * time.Second)}
	}
	for chunk := range slices.Chunk(recs, 200) {
		if err := cl.ProduceSync(ctx, chunk...).FirstErr(); err != nil {
			tb.Fatal(err)
		}
	}
}

func fileSHA256(tb testing.TB, path string) string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func mustRun(tb testing.TB, dir, name string, args ...string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("%s is needed for this test: %v", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// verifyArchive extracts the archive with GNU tar, runs md5sum -c, and
// checks the members are exactly the produced values (a multiset), each
// named by its candid and decoding as Avro.
func verifyArchive(t *testing.T, path string, values [][]byte) {
	t.Helper()
	dir := t.TempDir()
	mustRun(t, dir, "tar", "-xzf", path)
	if len(values) == 0 { // md5sum -c refuses a file without lines
		if b, err := os.ReadFile(filepath.Join(dir, "MD5SUMS")); err != nil || len(b) != 0 {
			t.Fatalf("MD5SUMS of an empty night: %q, %v", b, err)
		}
		return
	}
	out := mustRun(t, dir, "md5sum", "-c", "--strict", "MD5SUMS")
	if got := strings.Count(out, ": OK\n"); got != len(values) {
		t.Fatalf("md5sum -c: %d OK lines, want %d", got, len(values))
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != len(values)+1 {
		t.Fatalf("%d members (MD5SUMS included), want %d", len(des), len(values)+1)
	}
	want := map[[16]byte]int{}
	for _, v := range values {
		want[md5.Sum(v)]++
	}
	cr := newCandidReader()
	for _, de := range des {
		if de.Name() == "MD5SUMS" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := md5.Sum(b)
		if want[sum] == 0 {
			t.Fatalf("member %s is not one of the messages", de.Name())
		}
		want[sum]--
		alerts, err := decodeAlerts(b)
		if err != nil || len(alerts) != 1 {
			t.Fatalf("member %s: %d alerts, %v", de.Name(), len(alerts), err)
		}
		c, err := cr.Candid(b)
		if err != nil {
			t.Fatal(err)
		}
		if c != alerts[0]["candid"].(int64) {
			t.Fatalf("member %s: candid %d, hamba says %v", de.Name(), c, alerts[0]["candid"])
		}
		base, _, _ := strings.Cut(strings.TrimSuffix(de.Name(), ".avro"), "_")
		if base != MemberBase(c) {
			t.Fatalf("member %s holds candid %d", de.Name(), c)
		}
	}
}
