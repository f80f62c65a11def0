package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ztfbroker/ztfbroker/packager"
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

const catSamples = "../../../shared/data/ztf/alerts/"

// catExpect reads, through `cat FILE -`, the objectId and candidate.jd
// of an alert file: the key and timestamp (ms, as the packager converts
// JDs) a copy to Kafka must carry.
func catExpect(t *testing.T, file string) string {
	t.Helper()
	out := runTool(t, context.Background(), nil, binary, "cat", file, "-")
	var a struct {
		ObjectID  string `json:"objectId"`
		Candidate struct {
			JD json.Number `json:"jd"`
		} `json:"candidate"`
	}
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	jd, err := strconv.ParseFloat(string(a.Candidate.JD), 64)
	if err != nil || a.ObjectID == "" {
		t.Fatalf("%s: objectId %q, jd %q: %v", file, a.ObjectID, a.Candidate.JD, err)
	}
	return a.ObjectID + " " + strconv.FormatInt(packager.JDTime(jd).UnixMilli(), 10)
}

// kcatLines consumes a whole topic with kcat, one formatted line per
// record, sorted.
func kcatLines(t *testing.T, addr, topic, format string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := runTool(t, ctx, nil, "kcat", "-C", "-q", "-b", addr, "-t", topic, "-o", "beginning", "-e", "-f", format)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	sort.Strings(lines)
	return lines
}

// catFill copies each topic's files into addr with `cat --create`.
func catFill(t *testing.T, addr string, topics map[string][]string, flags ...string) {
	t.Helper()
	for topic, files := range topics {
		args := append(append(append([]string{"cat", "--create"}, flags...), files...), "kafka://"+addr+"/"+topic)
		if out, err := runBinary(t, args...); err != nil {
			t.Fatalf("cat to %s: %v\n%s", topic, err, out)
		}
	}
}

var catNights = map[string][]string{
	"ztf_20261128_programid1": {catSamples + "other-sources/fink-client/ZTF19acihgng.avro", catSample402},
	"ztf_20261129_programid1": {catSamples + "other-sources/fink-client/ZTF19acyfkzd.avro", catSamples + "ztf-avro-alert/history/v3.0/472263571115115008.avro"},
	"ztf_20261129_programid2": {catSamples + "other-sources/fink-client/ZTF19acxxwrs.avro"},
}

// Issue 13, with the real binary and kcat: alerts from files are keyed by
// objectId and stamped with the send time, or candidate.jd (--timestamp
// jd, into a broker that takes old timestamps); a topic copied to another
// broker keeps its records' keys, timestamps and headers.
func TestCatBinaryKeysAndTimestamps(t *testing.T) {
	old := filepath.Join(t.TempDir(), "old.yaml")
	if err := os.WriteFile(old, []byte("log.message.timestamp.before.max.ms: 9223372036854775807\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := startBroker(t, ""), startBroker(t, "", "--config", old)
	for topic, files := range catNights {
		before := time.Now().UnixMilli()
		catFill(t, a.Kafka, map[string][]string{topic: files})
		after := time.Now().UnixMilli()
		var keys, jd []string
		for _, f := range files {
			e := catExpect(t, f)
			jd = append(jd, e)
			keys = append(keys, strings.Fields(e)[0])
		}
		sort.Strings(keys)
		sort.Strings(jd)
		var gotKeys []string
		for _, l := range kcatLines(t, a.Kafka, topic, "%k %T\n") {
			k, ts, _ := strings.Cut(l, " ")
			gotKeys = append(gotKeys, k)
			if ms, err := strconv.ParseInt(ts, 10, 64); err != nil || ms < before || ms > after {
				t.Errorf("%s: %q: timestamp not the send time (%d to %d)", topic, l, before, after)
			}
		}
		if !slices.Equal(gotKeys, keys) {
			t.Fatalf("%s: kcat reads keys %q, want the objectIds %q", topic, gotKeys, keys)
		}
		// The observation time, where the broker takes it.
		catFill(t, b.Kafka, map[string][]string{"jd_" + topic: files}, "--timestamp", "jd")
		if got := kcatLines(t, b.Kafka, "jd_"+topic, "%k %T\n"); !slices.Equal(got, jd) {
			t.Fatalf("jd_%s: kcat '%%k %%T' reads %q, want objectId and candidate.jd %q", topic, got, jd)
		}
	}
	// The default broker refuses timestamps over 7 days old, and says so.
	if out, err := runBinary(t, "cat", "--timestamp", "jd", catSample402, "kafka://"+a.Kafka+"/ztf_20261129_programid2"); err == nil ||
		!strings.Contains(out, "INVALID_TIMESTAMP") || !strings.Contains(out, "--timestamp now") {
		t.Fatalf("a 2024 timestamp into a broker that keeps 7 days: %v\n%s", err, out)
	}

	// A record with its own key, headers and produce time, copied to
	// another broker under another name.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runTool(t, ctx, nil, "kcat", "-P", "-q", "-b", a.Kafka, "-t", "ztf_20261128_programid1", "-k", "my-key", "-H", "origin=ipac", catSample402)
	src := kcatLines(t, a.Kafka, "ztf_20261128_programid1", "%k %T %h\n")
	if out, err := runBinary(t, "cat", "--eof", "--create", "kafka://"+a.Kafka+"/ztf_20261128_programid1", "kafka://"+b.Kafka+"/copy"); err != nil {
		t.Fatalf("cat topic to topic: %v\n%s", err, out)
	}
	if got := kcatLines(t, b.Kafka, "copy", "%k %T %h\n"); !slices.Equal(got, src) || len(got) != 3 || !slices.ContainsFunc(got, func(l string) bool {
		return strings.HasPrefix(l, "my-key ") && strings.HasSuffix(l, " origin=ipac")
	}) {
		t.Fatalf("copy reads %q, source %q", got, src)
	}
}

// Two nights by glob to another broker, names kept (kafka://host:port/),
// programid2 left alone; the same into a folder, one subfolder per topic.
func TestCatBinaryTopicGlob(t *testing.T) {
	a, b := startBroker(t, ""), startBroker(t, "")
	catFill(t, a.Kafka, catNights)
	if out, err := runBinary(t, "cat", "--eof", "--create", "kafka://"+a.Kafka+"/ztf_*_programid1", "kafka://"+b.Kafka+"/"); err != nil {
		t.Fatalf("cat by glob: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	meta := string(runTool(t, ctx, nil, "kcat", "-L", "-b", b.Kafka))
	for topic := range catNights {
		if want := !strings.HasSuffix(topic, "2"); strings.Contains(meta, `topic "`+topic+`"`) != want {
			t.Errorf("topic %s on the destination: %v, want %v\n%s", topic, !want, want, meta)
		}
	}
	dir := t.TempDir() + "/"
	if out, err := runBinary(t, "cat", "--eof", "kafka://"+a.Kafka+"/ztf_*_programid1", dir); err != nil {
		t.Fatalf("cat by glob to a folder: %v\n%s", err, out)
	}
	for _, topic := range []string{"ztf_20261128_programid1", "ztf_20261129_programid1"} {
		if got, want := kcatLines(t, b.Kafka, topic, "%k %T %h\n"), kcatLines(t, a.Kafka, topic, "%k %T %h\n"); !slices.Equal(got, want) {
			t.Errorf("%s copied as %q, source %q", topic, got, want)
		}
		if es, err := os.ReadDir(filepath.Join(dir, topic)); err != nil || len(es) != 2 {
			t.Errorf("folder %s: %d files, %v; want 2", topic, len(es), err)
		}
	}
}

// One candid, two schema versions: two files, neither overwritten, named
// as the nightly archive names them.
func TestCatBinaryFolderSameCandid(t *testing.T) {
	dir := t.TempDir() + "/"
	same := []string{catSamples + "ztf-avro-alert/history/v3.0/472263571115115008.avro", catSamples + "ztf-avro-alert/history/v3.1/472263571115115008.avro"}
	if out, err := runBinary(t, append(append([]string{"cat"}, same...), dir)...); err != nil {
		t.Fatalf("cat to a folder: %v\n%s", err, out)
	}
	for i, name := range []string{"472263571115115008.avro", "472263571115115008_2.avro"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		want, _ := os.ReadFile(same[i])
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v, or not the bytes of %s", name, err, same[i])
		}
	}
}
