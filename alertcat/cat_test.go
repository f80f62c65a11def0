package alertcat

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

const boom402 = alertsDir + "/other-sources/boom/2695378462115010012.avro"

// What boom402 holds: its objectId and candidate.jd.
const (
	boom402Object = "ZTF18abudxnw"
	boom402JD     = 2460449.8784606
)

func cluster(t *testing.T, topics ...string) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(3, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

func run(t *testing.T, cfg Config) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cfg.Stdout, cfg.Stderr = &out, &errb
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, cfg)
	return out.String(), err
}

// The round trip: file -> kafka -> json -> avro -> file, for the
// 4.02 alert and for every other sample, each back to its exact bytes.
func TestCatRoundTripThroughKafka(t *testing.T) {
	addrs := cluster(t, "alerts")
	dir := t.TempDir()
	files := sampleFiles(t)
	// Single-alert files only: a multi-alert file comes back as the same
	// alerts in one file per alert.
	var singles []string
	for _, f := range files {
		if !strings.Contains(f, "multi") {
			singles = append(singles, f)
		}
	}
	if _, err := run(t, Config{Sources: singles, Dest: "kafka://" + addrs + "/alerts"}); err != nil {
		t.Fatal(err)
	}
	jsonl := filepath.Join(dir, "alerts.jsonl")
	if _, err := run(t, Config{Sources: []string{"kafka://" + addrs + "/alerts"}, Dest: jsonl, EOF: true}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out") + "/"
	if _, err := run(t, Config{Sources: []string{jsonl}, Dest: out}); err != nil {
		t.Fatal(err)
	}
	// File names are candids; some samples share a candid across schema
	// versions, so compare by content: every input file must come back.
	got := map[string]bool{}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(out, e.Name()))
		got[string(b)] = true
	}
	if len(entries) == 0 {
		t.Fatal("no files written")
	}
	missing := 0
	for _, f := range singles {
		b, _ := os.ReadFile(f)
		if !got[string(b)] {
			// Same candid in several history folders overwrote each other.
			missing++
		}
	}
	// The 4.02 alert must be exact by name.
	want, _ := os.ReadFile(boom402)
	b, err := os.ReadFile(filepath.Join(out, "2695378462115010012.avro"))
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("4.02 alert not byte-identical after file -> kafka -> json -> avro -> file (%v)", err)
	}
	if missing > len(singles)-len(entries) {
		t.Fatalf("%d of %d alerts did not come back byte-identical", missing, len(singles))
	}

	// Straight to one .avro file per single file, too.
	one := filepath.Join(dir, "one.avro")
	if _, err := run(t, Config{Sources: []string{jsonl}, Dest: one, Count: 1}); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(one)
	found := false
	for _, f := range singles {
		found = found || bytes.Equal(first, mustRead(t, f))
	}
	if !found {
		t.Fatal("one.avro (--count 1) is not byte-identical to any input file")
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The multi-alert file goes to Kafka as one message per alert and comes
// back as the same file.
func TestCatMultiAlertFile(t *testing.T) {
	addrs := cluster(t, "multi")
	src := alertsDir + "/other-sources/fink-client/avro_multi_alerts_other.avro"
	if _, err := run(t, Config{Sources: []string{src}, Dest: "kafka://" + addrs + "/multi"}); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "back.avro")
	// One partition keeps order only within itself; read with --eof and
	// compare as a set of alerts by re-reading.
	if _, err := run(t, Config{Sources: []string{"kafka://" + addrs + "/multi"}, Dest: dst, EOF: true}); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, Config{Sources: []string{dst}, Dest: "-"})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "\n"); n != 3 {
		t.Fatalf("%d alerts back, want 3", n)
	}
}

func TestCatGroupResumesAndCommits(t *testing.T) {
	addrs := cluster(t, "g")
	files := sampleFiles(t)[:6]
	if _, err := run(t, Config{Sources: files, Dest: "kafka://" + addrs + "/g"}); err != nil {
		t.Fatal(err)
	}
	src := "kafka://night@" + addrs + "/g"
	out, err := run(t, Config{Sources: []string{src}, Dest: "-", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "\n"); n != 2 {
		t.Fatalf("first run: %d alerts, want 2", n)
	}
	out, err = run(t, Config{Sources: []string{src}, Dest: "-", EOF: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "\n"); n != 4 {
		t.Fatalf("resumed run: %d alerts, want the other 4", n)
	}
	out, err = run(t, Config{Sources: []string{src}, Dest: "-", EOF: true})
	if err != nil || out != "" {
		t.Fatalf("third run: %q, %v; want nothing left", out, err)
	}
}

func TestCatRegexTopicsAndProgress(t *testing.T) {
	addrs := cluster(t, "ztf_20261128_programid1", "ztf_20261129_programid1", "other")
	for i, topic := range []string{"ztf_20261128_programid1", "ztf_20261129_programid1", "other"} {
		if _, err := run(t, Config{Sources: []string{boom402}, Dest: "kafka://" + addrs + "/" + topic}); err != nil {
			t.Fatal(i, err)
		}
	}
	var errb bytes.Buffer
	var out bytes.Buffer
	err := Run(context.Background(), Config{Sources: []string{"kafka://" + addrs + "/^ztf_.*_programid1$"}, Dest: "-",
		EOF: true, Progress: true, Stdout: &out, Stderr: &errb, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Fatalf("%d alerts from the pattern, want 2", n)
	}
	if !strings.Contains(errb.String(), "2 alerts") {
		t.Fatalf("progress: %q", errb.String())
	}
	// The same topics by glob, as authz.public.topics writes them.
	for _, glob := range []string{"ztf_*_programid1", "ztf_2026112?_programid1", "ztf_2026112[89]_programid1"} {
		got, err := run(t, Config{Sources: []string{"kafka://" + addrs + "/" + glob}, Dest: "-", EOF: true})
		if n := strings.Count(got, "\n"); err != nil || n != 2 {
			t.Fatalf("%s: %d alerts, %v; want 2", glob, n, err)
		}
	}
	// Without --eof a glob is followed as a regular expression
	// (ConsumeRegex), which picks up topics created later.
	got, err := run(t, Config{Sources: []string{"kafka://" + addrs + "/ztf_*_programid1"}, Dest: "-", Count: 2})
	if n := strings.Count(got, "\n"); err != nil || n != 2 {
		t.Fatalf("followed glob: %d alerts, %v; want 2", n, err)
	}
}

// Under --timestamp jd an alert copied from a file is stamped with its
// observation time, so --start seeks by when it was observed.
func TestCatStartTime(t *testing.T) {
	addrs := cluster(t, "s")
	if _, err := run(t, Config{Sources: []string{boom402}, Dest: "kafka://" + addrs + "/s", Timestamps: TimestampsJD}); err != nil {
		t.Fatal(err)
	}
	observed := JDTime(boom402JD)
	out, err := run(t, Config{Sources: []string{"kafka://" + addrs + "/s"}, Dest: "-", EOF: true, Start: observed.Add(time.Hour)})
	if err != nil || out != "" {
		t.Fatalf("start an hour after the observation: %q, %v", out, err)
	}
	out, err = run(t, Config{Sources: []string{"kafka://" + addrs + "/s"}, Dest: "-", EOF: true, Start: observed.Add(-time.Hour)})
	if err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("start an hour before the observation: %d alerts, %v", strings.Count(out, "\n"), err)
	}
}

func TestCatErrors(t *testing.T) {
	addrs := cluster(t, "junk")
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(addrs, ",")...), kgo.DefaultProduceTopic("junk"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("hello, not avro")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	for name, tc := range map[string]struct {
		cfg  Config
		is   error
		text string
	}{
		"unreachable":        {Config{Sources: []string{"kafka://127.0.0.1:1/x"}, Dest: "-", Timeout: time.Second}, ErrUnreachable, "127.0.0.1:1"},
		"unknown topic":      {Config{Sources: []string{"kafka://" + addrs + "/nope"}, Dest: "-", EOF: true}, ErrUnknownTopic, `"nope"`},
		"unknown dest topic": {Config{Sources: []string{boom402}, Dest: "kafka://" + addrs + "/nope"}, ErrUnknownTopic, `"nope"`},
		"non-avro message":   {Config{Sources: []string{"kafka://" + addrs + "/junk"}, Dest: "-", EOF: true}, ErrNotAvro, "junk["},
		"non-avro file":      {Config{Sources: []string{"cat_test.go"}, Dest: "-", From: "avro"}, ErrNotAvro, "cat_test.go"},
		"no pattern match":   {Config{Sources: []string{"kafka://" + addrs + "/ztf_*"}, Dest: "-", EOF: true}, ErrUnknownTopic, "ztf_*"},
		"no regex match":     {Config{Sources: []string{"kafka://" + addrs + "/^ztf_.*"}, Dest: "-", EOF: true}, ErrUnknownTopic, "^ztf_.*"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := run(t, tc.cfg)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v; want %v mentioning %s", err, tc.is, tc.text)
			}
		})
	}
}

// Confluent framing: schema from the registry's /schemas/ids/<id>.
func TestCatFramedWithRegistry(t *testing.T) {
	raw := mustRead(t, boom402)
	c := &Codec{Schemas: avrofile.NewSchemas(0)}
	alerts, err := c.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	srv := registryServer(t, map[int]string{7: alerts[0].SchemaText})
	framed := append([]byte{0, 0, 0, 0, 7}, alerts[0].Body...)
	c.Registry = &Registry{URL: srv}
	got, err := c.Decode(framed)
	if err != nil {
		t.Fatal(err)
	}
	js, err := c.AppendJSON(nil, got[0])
	if err != nil || !bytes.Contains(js, []byte(`"schema_id":7`)) || !bytes.Contains(js, []byte(`"candid":2695378462115010012`)) {
		t.Fatalf("framed to JSON: %v %.200s", err, js)
	}
	if _, err := (&Codec{Schemas: avrofile.NewSchemas(0)}).Decode(framed); err == nil || !strings.Contains(err.Error(), "--registry") {
		t.Fatalf("framed without a registry: %v", err)
	}
}

// Confluent-framed messages through Kafka: to JSON with the registry's
// schema, back to Kafka framed with the same id, and to a container file.
func TestCatFramedThroughKafka(t *testing.T) {
	addrs := cluster(t, "framed", "again")
	c := &Codec{Schemas: avrofile.NewSchemas(0)}
	alerts, err := c.Decode(mustRead(t, boom402))
	if err != nil {
		t.Fatal(err)
	}
	framed := append([]byte{0, 0, 0, 0, 9}, alerts[0].Body...)
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(addrs, ",")...), kgo.DefaultProduceTopic("framed"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: framed}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reg := registryServer(t, map[int]string{9: alerts[0].SchemaText})
	src := "kafka://" + addrs + "/framed"
	if _, err := run(t, Config{Sources: []string{src}, Dest: "-", EOF: true}); err == nil || !strings.Contains(err.Error(), "--registry") {
		t.Fatalf("without --registry: %v", err)
	}
	js, err := run(t, Config{Sources: []string{src}, Dest: "-", EOF: true, Registry: reg})
	if err != nil || !strings.Contains(js, `"schema_id":9`) {
		t.Fatalf("%v %.200s", err, js)
	}
	jsonl := filepath.Join(t.TempDir(), "framed.jsonl")
	if err := os.WriteFile(jsonl, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, Config{Sources: []string{jsonl}, Dest: "kafka://" + addrs + "/again", Registry: reg}); err != nil {
		t.Fatal(err)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(addrs, ",")...), kgo.ConsumeTopics("again"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := cons.PollFetches(ctx)
	if recs := fs.Records(); len(recs) != 1 || !bytes.Equal(recs[0].Value, framed) {
		t.Fatalf("re-framed message differs (%d records, %v)", len(recs), fs.Errors())
	}
	out := filepath.Join(t.TempDir(), "framed.avro")
	if _, err := run(t, Config{Sources: []string{src}, Dest: out, EOF: true, Registry: reg}); err != nil {
		t.Fatal(err)
	}
	back, err := (&Codec{Schemas: avrofile.NewSchemas(0)}).Decode(mustRead(t, out))
	if err != nil || len(back) != 1 || !bytes.Equal(back[0].Body, alerts[0].Body) {
		t.Fatalf("framed to a container file: %v", err)
	}
}
