package alertcat

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

// consume reads want records of topic from the start, in no set order.
func consume(t *testing.T, addrs, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(addrs, ",")...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		out = append(out, fs.Records()...)
	}
	if len(out) != want {
		t.Fatalf("%s: %d records, want %d", topic, len(out), want)
	}
	return out
}

func produce(t *testing.T, addrs string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(addrs, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestTopicPattern(t *testing.T) {
	topics := []string{"ztf_20261128_programid1", "ztf_20261129_programid1", "ztf_20261129_programid2", "ztf_.x_programid1", "other"}
	for name, tc := range map[string]struct {
		topic string
		want  []string // nil: a plain name
		err   string
	}{
		"name":           {topic: "ztf_20261128_programid1"},
		"name with dots": {topic: "a.b-c_d"},
		"glob *":         {topic: "ztf_*_programid1", want: []string{"ztf_.x_programid1", "ztf_20261128_programid1", "ztf_20261129_programid1"}},
		"glob ?":         {topic: "ztf_2026112?_programid1", want: []string{"ztf_20261128_programid1", "ztf_20261129_programid1"}},
		"glob ! literal": {topic: "ztf_2026112[!8]_programid[12]", want: []string{"ztf_20261128_programid1"}},
		"glob negated":   {topic: "ztf_2026112[^8]_programid[12]", want: []string{"ztf_20261129_programid1", "ztf_20261129_programid2"}},
		"glob range":     {topic: "ztf_202611[0-2][0-8]_*", want: []string{"ztf_20261128_programid1"}},
		"glob . literal": {topic: "ztf_.*", want: []string{"ztf_.x_programid1"}},
		"regex":          {topic: "^ztf_.*_programid1$", want: []string{"ztf_.x_programid1", "ztf_20261128_programid1", "ztf_20261129_programid1"}},
		"regex prefix":   {topic: "^ztf_2026", want: []string{"ztf_20261128_programid1", "ztf_20261129_programid1", "ztf_20261129_programid2"}},
		"bad regex":      {topic: "^ztf_(", err: "topic pattern"},
		"bad glob":       {topic: "ztf_[", err: "topic glob"},
		"not a name":     {topic: "a|b", err: "not a topic name"},
	} {
		t.Run(name, func(t *testing.T) {
			re, err := topicPattern(tc.topic)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v; want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if re != nil {
					t.Fatalf("%q is a name, compiled to %v", tc.topic, re)
				}
				return
			}
			got := []string{}
			for _, tp := range topics {
				if re.MatchString(tp) {
					got = append(got, tp)
				}
				// A glob matches exactly what path.Match (authz) matches.
				if !strings.HasPrefix(tc.topic, "^") {
					if ok, _ := path.Match(tc.topic, tp); ok != re.MatchString(tp) {
						t.Errorf("%s on %s: regexp %v, path.Match %v", tc.topic, tp, re.MatchString(tp), ok)
					}
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("%s matches %v, want %v", tc.topic, got, tc.want)
			}
		})
	}
}

// An alert from a file is keyed by its objectId and stamped with the send
// time, or with candidate.jd under --timestamp jd; an alert from Kafka keeps
// its record's key, timestamp and headers, directly and through JSON, and
// --timestamp now restamps it.
func TestCatKeysAndTimestamps(t *testing.T) {
	addrs := cluster(t, "files", "jd", "src", "dst", "viajson", "now")
	var files []string
	for _, f := range sampleFiles(t) {
		if !strings.Contains(f, "multi") && len(files) < 8 {
			files = append(files, f)
		}
	}
	files = append(files, boom402)
	before := time.Now().Truncate(time.Millisecond)
	if _, err := run(t, Config{Sources: files, Dest: "kafka://" + addrs + "/files"}); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if _, err := run(t, Config{Sources: files, Dest: "kafka://" + addrs + "/jd", Timestamps: TimestampsJD}); err != nil {
		t.Fatal(err)
	}
	c := &Codec{Schemas: avrofile.NewSchemas(0)}
	decode := func(rec *kgo.Record) *Alert {
		as, err := c.Decode(rec.Value)
		if err != nil || len(as) != 1 {
			t.Fatalf("%v, %d alerts", err, len(as))
		}
		return as[0]
	}
	for _, rec := range consume(t, addrs, "files", len(files)) {
		a := decode(rec)
		if a.ObjectID == "" || string(rec.Key) != a.ObjectID {
			t.Errorf("candid %d: key %q, objectId %q", a.Candid, rec.Key, a.ObjectID)
		}
		if rec.Timestamp.Before(before) || rec.Timestamp.After(after) {
			t.Errorf("candid %d: timestamp %v, not the send time (%v to %v)", a.Candid, rec.Timestamp, before, after)
		}
	}
	sawBoom := false
	for _, rec := range consume(t, addrs, "jd", len(files)) {
		a := decode(rec)
		if want := JDTime(a.JD).Truncate(time.Millisecond); string(rec.Key) != a.ObjectID || !a.HasJD || !rec.Timestamp.Equal(want) {
			t.Errorf("candid %d: key %q, timestamp %v, want %s, %v (jd %v)", a.Candid, rec.Key, rec.Timestamp, a.ObjectID, want, a.JD)
		}
		if a.Candid == 2695378462115010012 {
			sawBoom = true
			if string(rec.Key) != boom402Object || rec.Timestamp.UTC().Format(time.RFC3339Nano) != "2024-05-19T09:04:58.995Z" {
				t.Errorf("4.02 alert: key %q, timestamp %v", rec.Key, rec.Timestamp.UTC())
			}
		}
	}
	if !sawBoom {
		t.Fatal("the 4.02 alert did not arrive")
	}

	// Records with their own key (or none), timestamp and headers.
	value := mustRead(t, boom402)
	ts := time.Date(2026, 11, 29, 3, 4, 5, 678e6, time.UTC)
	headers := []kgo.RecordHeader{{Key: "origin", Value: []byte("ipac")}, {Key: "empty", Value: []byte{}}}
	produce(t, addrs,
		&kgo.Record{Topic: "src", Key: []byte("key-1"), Value: value, Timestamp: ts, Headers: headers},
		&kgo.Record{Topic: "src", Value: value, Timestamp: ts.Add(time.Second)},
	)
	check := func(topic string) {
		t.Helper()
		recs := consume(t, addrs, topic, 2)
		sort.Slice(recs, func(i, j int) bool { return recs[i].Timestamp.Before(recs[j].Timestamp) })
		if string(recs[0].Key) != "key-1" || !recs[0].Timestamp.Equal(ts) || len(recs[0].Headers) != 2 ||
			recs[0].Headers[0].Key != "origin" || string(recs[0].Headers[0].Value) != "ipac" || recs[0].Headers[1].Key != "empty" {
			t.Errorf("%s: key %q, timestamp %v, headers %v; want key-1, %v, the two headers", topic, recs[0].Key, recs[0].Timestamp, recs[0].Headers, ts)
		}
		if recs[1].Key != nil || !recs[1].Timestamp.Equal(ts.Add(time.Second)) || len(recs[1].Headers) != 0 {
			t.Errorf("%s: key %q, timestamp %v; want no key (as read), %v", topic, recs[1].Key, recs[1].Timestamp, ts.Add(time.Second))
		}
	}
	if _, err := run(t, Config{Sources: []string{"kafka://" + addrs + "/src"}, Dest: "kafka://" + addrs + "/dst", EOF: true}); err != nil {
		t.Fatal(err)
	}
	check("dst")
	jsonl := filepath.Join(t.TempDir(), "src.jsonl")
	if _, err := run(t, Config{Sources: []string{"kafka://" + addrs + "/src"}, Dest: jsonl, EOF: true}); err != nil {
		t.Fatal(err)
	}
	if js := mustRead(t, jsonl); !bytes.Contains(js, []byte(`"key":"a2V5LTE=","headers":[["origin","aXBhYw=="],["empty",""]]`)) {
		t.Fatalf("JSON lacks the key and headers: %.300s", js)
	}
	if _, err := run(t, Config{Sources: []string{jsonl}, Dest: "kafka://" + addrs + "/viajson"}); err != nil {
		t.Fatal(err)
	}
	check("viajson")
	before = time.Now().Truncate(time.Millisecond)
	if _, err := run(t, Config{Sources: []string{"kafka://" + addrs + "/src"}, Dest: "kafka://" + addrs + "/now", EOF: true, Timestamps: TimestampsNow}); err != nil {
		t.Fatal(err)
	}
	for _, rec := range consume(t, addrs, "now", 2) {
		if rec.Timestamp.Before(before) || rec.Timestamp.After(time.Now()) {
			t.Errorf("--timestamp now: %v", rec.Timestamp)
		}
	}
	if _, err := run(t, Config{Sources: []string{boom402}, Dest: "-", Timestamps: "observed"}); err == nil || !strings.Contains(err.Error(), "--timestamp must be") {
		t.Fatalf("bad --timestamp: %v", err)
	}
}

// A pattern copies every matching topic under its own name, to a cluster
// (kafka://host:port/) or into one subfolder per topic.
func TestCatPatternKeepsTopicNames(t *testing.T) {
	nights := []string{"ztf_20261128_programid1", "ztf_20261129_programid1"}
	from := cluster(t, append(nights, "ztf_20261129_programid2")...)
	to := cluster(t)
	files := sampleFiles(t)
	for i, topic := range append(nights, "ztf_20261129_programid2") {
		if _, err := run(t, Config{Sources: []string{files[i], boom402}, Dest: "kafka://" + from + "/" + topic}); err != nil {
			t.Fatal(err)
		}
	}
	src := "kafka://" + from + "/ztf_*_programid1"
	_, err := run(t, Config{Sources: []string{src}, Dest: "kafka://" + to + "/", EOF: true})
	if !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("to missing topics without --create: %v; want ErrUnknownTopic", err)
	}
	if _, err := run(t, Config{Sources: []string{src}, Dest: "kafka://" + to + "/", EOF: true, Create: true}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(to, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := td.Names(); !slices.Equal(got, nights) {
		t.Fatalf("destination topics %v, want %v", got, nights)
	}
	for _, topic := range nights {
		for _, rec := range consume(t, to, topic, 2) {
			if len(rec.Key) == 0 {
				t.Errorf("%s: record without its key", topic)
			}
		}
	}

	dir := filepath.Join(t.TempDir(), "out") + "/"
	if _, err := run(t, Config{Sources: []string{src}, Dest: dir, EOF: true}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range nights {
		if b, err := os.ReadFile(filepath.Join(dir, topic, "2695378462115010012.avro")); err != nil || !bytes.Equal(b, mustRead(t, boom402)) {
			t.Errorf("%s/2695378462115010012.avro: %v", topic, err)
		}
		if es, _ := os.ReadDir(filepath.Join(dir, topic)); len(es) != 2 {
			t.Errorf("%s holds %d files, want 2", topic, len(es))
		}
	}
	if es, _ := os.ReadDir(dir); len(es) != 2 {
		t.Errorf("%s holds %d entries, want one folder per topic", dir, len(es))
	}

	// Alerts from files have no topic to keep.
	if _, err := run(t, Config{Sources: []string{boom402}, Dest: "kafka://" + to + "/"}); err == nil || !strings.Contains(err.Error(), "name the destination topic") {
		t.Fatalf("file to kafka://host/: %v", err)
	}
	if _, err := run(t, Config{Sources: []string{"kafka://" + to + "/"}, Dest: "-"}); err == nil || !strings.Contains(err.Error(), "name a topic or a pattern") {
		t.Fatalf("source without a topic: %v", err)
	}
}

// Alerts that share a candid are all kept, named as the nightly archive
// names them: <candid>.avro, <candid>_2.avro, ...; nor does a second run
// overwrite the first.
func TestCatFolderNeverOverwrites(t *testing.T) {
	for _, format := range []string{"avro", "json"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			for range 2 {
				if _, err := run(t, Config{Sources: []string{boom402, boom402}, Dest: dir, To: format}); err != nil {
					t.Fatal(err)
				}
			}
			var names []string
			es, _ := os.ReadDir(dir)
			for _, e := range es {
				names = append(names, e.Name())
				if format == "avro" && !bytes.Equal(mustRead(t, filepath.Join(dir, e.Name())), mustRead(t, boom402)) {
					t.Errorf("%s differs from the source", e.Name())
				}
			}
			const c = "2695378462115010012"
			want := []string{c + "." + format, c + "_2." + format, c + "_3." + format, c + "_4." + format}
			if !slices.Equal(names, want) {
				t.Fatalf("files %v, want %v", names, want)
			}
		})
	}
	if got := uniqueName("nocandid", 1, "avro") + " " + uniqueName("42", 12, "json"); got != "nocandid.avro 42_12.json" {
		t.Fatal(got)
	}
}

// A destination that takes no records fails the run after --timeout,
// though alert timestamps are years old (franz-go's RecordDeliveryTimeout
// would have failed them at once, and nothing at all would never return).
func TestCatDeliveryStall(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "stuck"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, errors.New("dropped"), true
	})
	start := time.Now()
	_, err = run(t, Config{Sources: []string{boom402}, Dest: "kafka://" + c.ListenAddrs()[0] + "/stuck", Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "nothing delivered for 1s") {
		t.Fatalf("got %v; want a stall error", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("took %v", el)
	}
}
