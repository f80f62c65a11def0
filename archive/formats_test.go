package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

func TestMemberBase(t *testing.T) {
	for _, tc := range []struct {
		candid int64
		want   string
	}{
		{2695378462115010012, "2695378462115010012"},
		{0, "0"},
		{-87704463155000, "n87704463155000"},
		{math.MinInt64, "n9223372036854775808"},
	} {
		if got := MemberBase(tc.candid); got != tc.want {
			t.Errorf("MemberBase(%d) = %q, want %q", tc.candid, got, tc.want)
		}
	}
}

// confluentFrames turns container files into Confluent frames: one schema
// id per distinct writer schema text, numbered from 1 in order of first use.
func confluentFrames(tb testing.TB, msgs [][]byte) (frames [][]byte, schemas map[int32][]byte) {
	tb.Helper()
	ids := map[string]int32{}
	schemas = map[int32][]byte{}
	for _, m := range msgs {
		h, off, err := avrofile.ParseHeader(m)
		if err != nil {
			tb.Fatal(err)
		}
		blk, n, err := avrofile.ReadBlock(m[off:], h.Sync)
		if err != nil || blk.Count != 1 || off+n != len(m) {
			tb.Fatalf("not a single-alert file: %v", err)
		}
		id, ok := ids[string(h.Schema())]
		if !ok {
			id = int32(len(ids) + 1)
			ids[string(h.Schema())] = id
			schemas[id] = h.Schema()
		}
		f := binary.BigEndian.AppendUint32([]byte{0}, uint32(id))
		frames = append(frames, append(f, blk.Data...))
	}
	return frames, schemas
}

func lookupIn(schemas map[int32][]byte) SchemaLookup {
	return func(id int32) ([]byte, error) {
		if s, ok := schemas[id]; ok {
			return s, nil
		}
		return nil, fmt.Errorf("%w: %d", ErrUnknownSchema, id)
	}
}

func TestMemberConfluentFrame(t *testing.T) {
	msgs := sampleMessages(t)
	frames, schemas := confluentFrames(t, msgs)
	cr := newCandidReader()
	cr.schemas = lookupIn(schemas)
	for i, f := range frames {
		member, candid, err := cr.Member(f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		want, err := decodeAlerts(msgs[i])
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeAlerts(member)
		if err != nil || len(got) != 1 {
			t.Fatalf("frame %d: member decodes to %d alerts, %v", i, len(got), err)
		}
		if candid != want[0]["candid"].(int64) || got[0]["candid"] != want[0]["candid"] {
			t.Fatalf("frame %d: candid %d, member %v, original %v", i, candid, got[0]["candid"], want[0]["candid"])
		}
		h, _, _ := avrofile.ParseHeader(member)
		if !bytes.Equal(h.Schema(), schemas[int32(binary.BigEndian.Uint32(f[1:5]))]) {
			t.Fatalf("frame %d: member does not carry the schema of its id", i)
		}
		// The same frame always gives the same member.
		again, _, _ := newCandidReaderWith(cr.schemas).Member(f)
		if !bytes.Equal(again, member) {
			t.Fatalf("frame %d: two readers give different members", i)
		}
	}

	// Container files go through untouched.
	if m, _, err := cr.Member(msgs[0]); err != nil || &m[0] != &msgs[0][0] {
		t.Fatalf("a container file is not kept as it is: %v", err)
	}
	unknown := binary.BigEndian.AppendUint32([]byte{0}, 999)
	unknown = append(unknown, frames[0][5:]...)
	for name, v := range map[string][]byte{
		"unknown id": unknown,
		"short":      {0, 0, 0},
		"truncated":  frames[0][:len(frames[0])/2],
		"trailing":   append(bytes.Clone(frames[0]), 0, 0, 0),
	} {
		m, _, err := cr.Member(v)
		if !errors.Is(err, ErrNoCandid) || !bytes.Equal(m, v) {
			t.Errorf("%s: %v, want ErrNoCandid and the value kept", name, err)
		}
	}
	down := errors.New("registry unreachable")
	cr2 := newCandidReaderWith(func(int32) ([]byte, error) { return nil, down })
	if _, _, err := cr2.Member(frames[0]); !errors.Is(err, down) || errors.Is(err, ErrNoCandid) {
		t.Errorf("registry down: %v, want its error", err)
	}
	if _, _, err := newCandidReader().Member(frames[0]); !errors.Is(err, ErrNoCandid) {
		t.Errorf("no lookup: %v, want ErrNoCandid", err)
	}
}

func newCandidReaderWith(l SchemaLookup) *candidReader {
	cr := newCandidReader()
	cr.schemas = l
	return cr
}

// TestConfluentNight archives a Confluent-framed topic of the 38 real
// alerts (19 writer schemas, 0.x to 4.02): every member is a container file
// with its schema, named by candid, readable by python3-avro.
func TestConfluentNight(t *testing.T) {
	msgs := sampleMessages(t)
	frames, schemas := confluentFrames(t, msgs)
	bad := binary.BigEndian.AppendUint32([]byte{0}, 4242) // an id nobody registered
	bad = append(bad, frames[0][5:]...)
	topic := Topic(testNight, Public)
	c := newCluster(t, 2, topic)
	produce(t, c.ListenAddrs(), topic, 2, append(frames, bad), testNight.t.Add(4*time.Hour))
	out := t.TempDir()
	lookups := 0
	lookup := lookupIn(schemas)
	job := Job{Bootstrap: c.ListenAddrs(), Night: testNight, Program: Public, OutDir: out,
		Schemas: func(id int32) ([]byte, error) { lookups++; return lookup(id) }}
	res, err := Build(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	if res.Members != int64(len(frames)+1) || res.NoCandid != 1 {
		t.Fatalf("result %+v, want %d members, 1 without candid", res, len(frames)+1)
	}
	if lookups != len(schemas)+1 {
		t.Errorf("%d schema lookups for %d ids", lookups, len(schemas)+1)
	}
	dir := t.TempDir()
	mustRun(t, dir, "tar", "-xzf", res.Path)
	mustRun(t, dir, "md5sum", "-c", "--strict", "--quiet", "MD5SUMS")
	names, _ := filepath.Glob(filepath.Join(dir, "*.avro"))
	var alerts []string
	for _, n := range names {
		base := filepath.Base(n)
		if strings.HasPrefix(base, "-") {
			t.Errorf("member %s starts with '-'", base)
		}
		if strings.HasPrefix(base, "nocandid_") {
			continue
		}
		alerts = append(alerts, n)
	}
	if len(alerts) != len(frames) {
		t.Fatalf("%d alert members, want %d", len(alerts), len(frames))
	}
	if !slicesContain(names, "n87704463155000.avro") {
		t.Errorf("no member n87704463155000.avro among %d", len(names))
	}

	// python3-avro (what CI installs) reads each member with the schema it
	// carries; its candid is the member's name.
	// A missing client fails the test: CI installs python3-avro.
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Fatal("python3 not installed (Debian: apt-get install -y python3-avro)")
	}
	if exec.Command(py, "-c", "import avro.datafile").Run() != nil {
		t.Fatal("python3 module avro not installed (Debian: apt-get install -y python3-avro)")
	}
	script := `
import sys, avro.datafile, avro.io
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        alerts = list(avro.datafile.DataFileReader(f, avro.io.DatumReader()))
    print(path.rsplit("/", 1)[-1], len(alerts), alerts[0]["candid"])
`
	outp, err := exec.Command(py, append([]string{"-c", script}, alerts...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python3-avro: %v\n%s", err, outp)
	}
	lines := strings.Split(strings.TrimSpace(string(outp)), "\n")
	if len(lines) != len(alerts) {
		t.Fatalf("python3-avro read %d members of %d:\n%s", len(lines), len(alerts), outp)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		candid, _ := strconv.ParseInt(f[2], 10, 64)
		base, _, _ := strings.Cut(strings.TrimSuffix(f[0], ".avro"), "_")
		if f[1] != "1" || base != MemberBase(candid) {
			t.Errorf("python3-avro: %s", l)
		}
	}
	if _, err := os.Stat(res.Path); err != nil {
		t.Fatal(err)
	}
}

func slicesContain(paths []string, base string) bool {
	for _, p := range paths {
		if filepath.Base(p) == base {
			return true
		}
	}
	return false
}

// FuzzMember: a message value from the topic, Confluent frame or not, is
// archived or kept verbatim, never a panic, and a member it makes is one
// alert that reads back with the same candid.
func FuzzMember(f *testing.F) {
	msgs := sampleMessages(f)
	frames, schemas := confluentFrames(f, msgs)
	for _, fr := range frames[:8] {
		f.Add(fr)
	}
	f.Add(msgs[0])
	f.Add([]byte{0, 0, 0, 0, 1})
	lookup := lookupIn(schemas)
	f.Fuzz(func(t *testing.T, b []byte) {
		cr := newCandidReaderWith(lookup)
		m, c, err := cr.Member(b)
		if err != nil {
			if !errors.Is(err, ErrNoCandid) || !bytes.Equal(m, b) {
				t.Fatalf("error %v, value kept %v", err, bytes.Equal(m, b))
			}
			return
		}
		if got, err := newCandidReader().Candid(m); err != nil || got != c {
			t.Fatalf("member reads back as candid %d, %v; want %d", got, err, c)
		}
	})
}

// BenchmarkMemberConfluent: turning a Confluent frame of a real alert into
// its member (schema looked up once, body checked and wrapped).
func BenchmarkMemberConfluent(b *testing.B) {
	msgs := sampleMessages(b)
	frames, schemas := confluentFrames(b, msgs)
	cr := newCandidReaderWith(lookupIn(schemas))
	var size int64
	for _, f := range frames {
		size += int64(len(f))
	}
	b.SetBytes(size / int64(len(frames)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := cr.Member(frames[i%len(frames)]); err != nil {
			b.Fatal(err)
		}
	}
}
