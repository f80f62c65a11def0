package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// End-to-end tests of issue 16: users' filters inside serve.

// filterCheckScript reads every alert of the ztf_ topics with
// python3-confluent-kafka, decodes it with python3-avro, selects with the
// three filters written in Python, and prints, per filter, what it selects
// and what the filter topic holds (by source topic/partition/offset), with
// the filter topic's values checked against the source's bytes.
const filterCheckScript = `
import io, json, sys
import avro.datafile, avro.io
from confluent_kafka import Consumer, TopicPartition

conf = {"bootstrap.servers": sys.argv[1], "group.id": "filtercheck", "enable.auto.commit": False, "fetch.wait.max.ms": 10}
c = Consumer(conf)
topics = c.list_topics(timeout=10).topics

def read(names):
    want, assign, out = {}, [], {n: [] for n in names}
    for topic in names:
        for p in topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                want[(topic, p)] = hi
                assign.append(TopicPartition(topic, p, lo))
    c.assign(assign)
    while want:
        m = c.poll(10)
        if m is None:
            raise SystemExit("timeout reading %s" % sorted(want))
        if m.error():
            raise SystemExit(str(m.error()))
        out[m.topic()].append(m)
        if m.offset() >= want.get((m.topic(), m.partition()), 0) - 1:
            want.pop((m.topic(), m.partition()), None)
    c.unassign()
    return out

def detections(a):
    return [p for p in (a.get("prv_candidates") or []) if p.get("candid") is not None]

def ndet(a):
    return 1 + len(detections(a))

def days_since_first(a):
    c = a["candidate"]
    return c["jd"] - min([p["jd"] for p in detections(a)] + [c["jd"]])

def mag_rate(a):
    c = a["candidate"]
    prev = [p for p in detections(a) if p.get("magpsf") is not None and p["fid"] == c["fid"] and p["jd"] < c["jd"]]
    if not prev:
        return float("nan")
    p = max(prev, key=lambda p: p["jd"])
    return (c["magpsf"] - p["magpsf"]) / (c["jd"] - p["jd"])

def bright(topic, a):
    c = a["candidate"]
    return topic.endswith("_programid1") and c["magpsf"] < 18.5 and c["isdiffpos"] in ("t", "1") \
        and c.get("rb") is not None and c["rb"] > 0.5

def history(topic, a):
    return ndet(a) >= 3 and days_since_first(a) > 1.0

def north(topic, a):
    c = a["candidate"]
    diff = (a.get("cutoutDifference") or {}).get("stampData") or b""
    return topic.endswith("_programid1") and ((c["dec"] > 30.0 and len(diff) > 0) or mag_rate(a) < -0.05)

filters = {"bright": bright, "history": history, "north": north}
want = {name: [] for name in filters}
values = {}
alerts = 0
alert_topics = read(sorted(t for t in topics if t.startswith("ztf_")))
for topic, msgs in sorted(alert_topics.items()):
    for m in msgs:
        where = "%s/%d/%d" % (topic, m.partition(), m.offset())
        values[where] = (m.value(), m.key())
        a = next(iter(avro.datafile.DataFileReader(io.BytesIO(m.value()), avro.io.DatumReader())))
        alerts += 1
        for name, f in filters.items():
            if f(topic, a):
                want[name].append(where)

got = {}
matches = read(["filter_" + name for name in filters])
for name in filters:
    got[name] = []
    for m in matches["filter_" + name]:
        h = dict(m.headers())
        where = "%s/%s/%s" % (h["ztf.source.topic"].decode(), h["ztf.source.partition"].decode(), h["ztf.source.offset"].decode())
        value, key = values[where]
        if m.key() != key:
            raise SystemExit("%s: key %r, source %r" % (name, m.key(), key))
        if name == "history":
            s = json.loads(m.value())
            if s["candid"] <= 0 or not s["objectId"]:
                raise SystemExit("history: summary %r" % s)
        elif m.value() != value:
            raise SystemExit("%s: the match is not the bytes received from %s" % (name, where))
        got[name].append(where)
print(json.dumps({"alerts": alerts, "want": want, "got": got}))
`

// TestFiltersOverReplayAndNight: three filters over a replay of the sample
// alerts and a simulated night, with serve killed (SIGKILL) mid-night and
// restarted: each filter topic holds every alert that the same selection
// written in Python over python3-avro picks, exactly once, as the bytes
// received; kcat reads the topics; an expression that is type-wrong or
// runaway is refused at save; one that errors at run time is paused
// while the others go on; a filter over partnership topics makes a topic
// only its owner may read; `filter test` over the last hour of the topics
// previews the same matches.
func TestFiltersOverReplayAndNight(t *testing.T) {
	t0 := time.Now()
	// The filters are saved before the night begins: a filter starts with
	// the alerts its runner has not read when the filter arrives, so one
	// saved during the night's first exposure may rightly miss it.
	b := startBroker(t, "")
	add := func(args ...string) (string, error) {
		return runBinary(t, append([]string{"filter", "add", "--bootstrap", b.Kafka}, args...)...)
	}
	for _, f := range [][]string{
		{"bright", "--topics", "ztf_*_programid1", "--expr",
			"candidate.magpsf < 18.5 && candidate.isdiffpos in ['t', '1'] && has(candidate.rb) && candidate.rb > 0.5"},
		{"history", "--topics", "ztf_*", "--owner", "alice", "--format", "summary", "--expr", "ndet() >= 3 && days_since_first() > 1.0"},
		{"north", "--topics", "ztf_*_programid1", "--expr",
			"candidate.dec > 30.0 && size(cutoutDifference.stampData) > 0 || mag_rate() < -0.05"},
		{"erring", "--topics", "ztf_*_programid1", "--expr", "prv_candidates[40].jd > 0.0"},
	} {
		if out, err := add(f...); err != nil {
			t.Fatalf("filter add %s: %v\n%s", f[0], err, out)
		}
	}
	// alice may read the partnership's topics, so her filter reads them
	// and its topic is hers alone.
	if out, err := runBinary(t, "acl", "add", "--bootstrap", b.Kafka, "--principal", "User:alice", "--operation", "READ",
		"--topic", "ztf_", "--prefixed"); err != nil {
		t.Fatalf("acl add: %v\n%s", err, out)
	}
	for expr, want := range map[string]string{
		"candidate.magpsf + 'x' > 1.0": "1:18: found no matching overload",
		"prv_candidates.all(a, prv_candidates.all(b, prv_candidates.all(c, a.jd <= b.jd || c.jd > 0.0)))": "too costly",
		"candidate.brightness < 18.0": "undefined field 'brightness'",
	} {
		out, err := add("refused", "--expr", expr)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("filter add --expr %q: %v, want a refusal saying %q:\n%s", expr, err, want, out)
		}
	}

	b.Stop()
	b = startBroker(t, b.DataDir, "--packager=true", "--set", "packager.source.simulate.interval.ms=250",
		"--set", "packager.source.simulate.alerts=6", "--set", "filter.max.poll.records=20")

	samples := "../../../shared/data/ztf/alerts"
	replay := []string{filepath.Join(samples, "other-sources"), filepath.Join(samples, "ztf-avro-alert", "2019_01_10_739260766315010006.avro")}
	for _, v := range []string{"v1.7", "v1.8", "v2.0", "v3.0", "v3.1", "v3.2"} {
		replay = append(replay, filepath.Join(samples, "ztf-avro-alert", "history", v))
	}
	state := t.TempDir()
	if out, err := runBinary(t, append([]string{"package", "--bootstrap", b.Kafka, "--history", filepath.Join(state, "h"),
		"--rejects", filepath.Join(state, "r"), "--replay"}, replay...)...); err != nil {
		t.Fatalf("package --replay: %v\n%s", err, out)
	}
	if !b.waitLog(`"topic":"filter_bright"`) {
		t.Fatalf("no filter topic made:\n%s", b.Logs())
	}
	time.Sleep(1500 * time.Millisecond) // a few exposures of the night
	b.Kill()
	b.Restart()
	t.Log("killed", time.Since(t0))
	if !b.waitLog(`"filter topics read back"`) {
		t.Fatalf("the restarted runner did not read its topics back:\n%s", b.Logs())
	}
	time.Sleep(1500 * time.Millisecond)
	b.Stop()
	// The night stops; the filters finish what it made.
	b = startBroker(t, b.DataDir)
	t.Log("restarted without the night", time.Since(t0))
	waitFiltersCaughtUp(t, b.Kafka)
	t.Log("caught up", time.Since(t0))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var res struct {
		Alerts    int
		Want, Got map[string][]string
	}
	out := runTool(t, ctx, nil, "/usr/bin/python3", "-c", filterCheckScript, b.Kafka)
	t.Log("python done", time.Since(t0))
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	for _, name := range []string{"bright", "history", "north"} {
		got, want := res.Got[name], res.Want[name]
		slices.Sort(got)
		slices.Sort(want)
		if len(want) == 0 {
			t.Fatalf("%s selects nothing of %d alerts: the test proves nothing", name, res.Alerts)
		}
		if dup := slices.Compact(slices.Clone(got)); len(dup) != len(got) {
			t.Errorf("%s: %d matches, %d distinct: a match produced twice", name, len(got), len(dup))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: the filter topic holds %d matches, the Python selection %d:\ngot  %v\nwant %v", name, len(got), len(want), got, want)
		}
		kcat := runTool(t, ctx, nil, "kcat", "-b", b.Kafka, "-C", "-t", "filter_"+name, "-o", "beginning", "-e", "-q", "-f", "%k\n")
		if n := strings.Count(string(kcat), "\n"); n != len(got) {
			t.Errorf("kcat read %d records of filter_%s, want %d", n, name, len(got))
		}
		t.Logf("%s: %d of %d alerts", name, len(got), res.Alerts)
	}

	// A filter added after the night with --start earliest backfills it:
	// its topic holds bright's matches, each once.
	if out, err := add("late", "--start", "earliest", "--topics", "ztf_*_programid1", "--expr",
		"candidate.magpsf < 18.5 && candidate.isdiffpos in ['t', '1'] && has(candidate.rb) && candidate.rb > 0.5"); err != nil {
		t.Fatalf("filter add --start earliest: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		list, err := runBinary(t, "filter", "list", "--bootstrap", b.Kafka)
		if err == nil && strings.Contains(list, "late ") && !strings.Contains(list, "backfilling") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("late was not backfilled in 20 s:\n%s\n%s", list, b.Logs())
		}
	}
	sources := func(topic string) []string {
		out := runTool(t, ctx, nil, "kcat", "-b", b.Kafka, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%h\n")
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		slices.Sort(lines)
		return lines
	}
	if late, bright := sources("filter_late"), sources("filter_bright"); !slices.Equal(late, bright) || len(late) != len(res.Want["bright"]) {
		t.Errorf("the backfill of late: %d matches, bright has %d, the Python selection %d", len(late), len(bright), len(res.Want["bright"]))
	}

	// The preview of a filter over the last hour selects what it did.
	preview, err := runBinary(t, "filter", "test", "--bootstrap", b.Kafka, "--topics", "ztf_*_programid1", "--since", "1h",
		"--expr", "candidate.magpsf < 18.5 && candidate.isdiffpos in ['t', '1'] && has(candidate.rb) && candidate.rb > 0.5")
	if n := strings.Count(preview, "match\t"); err != nil || n != len(res.Want["bright"]) {
		t.Errorf("filter test over the last hour: %d matches, want %d (%v):\n%s", n, len(res.Want["bright"]), err, preview)
	}

	list, err := runBinary(t, "filter", "list", "--bootstrap", b.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(list, "\n") {
		name, _, _ := strings.Cut(line, " ")
		if paused := strings.Contains(line, "paused: "); paused != (name == "erring") && name != "NAME" && name != "" {
			t.Errorf("filter list: %q", line)
		}
	}
	if !strings.Contains(list, "index out of bounds") {
		t.Errorf("filter list does not say why erring was paused:\n%s", list)
	}
	for topic, want := range map[string]struct {
		owner  string
		public bool
	}{"filter_bright": {"User:ANONYMOUS", true}, "filter_history": {"User:alice", false}} {
		acls, err := runBinary(t, "acl", "list", "--bootstrap", b.Kafka, "--topic", topic)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(acls, want.owner) || strings.Contains(acls, "User:*") != want.public {
			t.Errorf("%s: want READ for %s, and for everyone %v; ACLs:\n%s", topic, want.owner, want.public, acls)
		}
	}
}

// waitFiltersCaughtUp waits until the filter runners' group has committed
// the end of every partition of the alert topics.
func waitFiltersCaughtUp(t *testing.T, addr string) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		tds, err := adm.ListTopics(ctx)
		if err == nil {
			var names []string
			for _, n := range tds.Names() {
				if strings.HasPrefix(n, "ztf_") {
					names = append(names, n)
				}
			}
			ends, err := adm.ListEndOffsets(ctx, names...)
			if err == nil && len(names) > 0 && committedAtEnd(ctx, adm, "ztfbroker-filters", ends) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the filters did not catch up with the alert topics in 30 s")
}

// TestFiltersHTTPAPI: a user checks, saves, lists and removes its own
// filter over HTTP with its Kafka credentials; the filter's owner is that
// user; anonymous requests may not save and see none of its filters; a
// type-wrong expression is answered with its column.
func TestFiltersHTTPAPI(t *testing.T) {
	b, call := startWithBob(t)
	if code, out := call("POST", "/api/filters/check", "bob", `{"expression": "candidate.magpsf + 'x' > 1.0"}`); code != 400 || !strings.Contains(out, "1:18") {
		t.Errorf("check of a type-wrong expression: %d %s", code, out)
	}
	spec := `{"name": "bobs", "owner": "mallory", "topics": "ztf_*_programid1", "expression": "candidate.magpsf < 16.0"}`
	if code, out := call("POST", "/api/filters", "", spec); code != 401 {
		t.Errorf("anonymous save: %d %s", code, out)
	}
	if code, out := call("POST", "/api/filters", "bob", spec); code != 201 || !strings.Contains(out, `"owner":"bob"`) {
		t.Fatalf("save: %d %s", code, out)
	}
	if code, out := call("GET", "/api/filters", "bob", ""); code != 200 || !strings.Contains(out, `"name":"bobs"`) {
		t.Errorf("list: %d %s", code, out)
	}
	if code, out := call("GET", "/api/filters", "", ""); code != 200 || strings.Contains(out, "bobs") {
		t.Errorf("anonymous list: %d %s", code, out)
	}
	list, _ := runBinary(t, "filter", "list", "--bootstrap", b.Kafka)
	if !strings.Contains(list, "bobs  bob ") {
		t.Errorf("filter list:\n%s", list)
	}
	if code, out := call("DELETE", "/api/filters/bobs", "bob", ""); code != 204 {
		t.Errorf("remove: %d %s", code, out)
	}
	if list, _ := runBinary(t, "filter", "list", "--bootstrap", b.Kafka); strings.Contains(list, "bobs") {
		t.Errorf("removed, still listed:\n%s", list)
	}
}

// startWithBob starts serve with the user bob (password bobs-password), and
// returns it with a call of its web server as user ("" for anonymous).
func startWithBob(t *testing.T) (*serveProc, func(method, path, user, body string) (int, string)) {
	b := startBroker(t, "")
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("bobs-password\n"), 0o600)
	if out, err := runBinary(t, "user", "add", "--bootstrap", b.Kafka, "--password-file", pw, "bob"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	return b, func(method, path, user, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+b.HTTP+path, strings.NewReader(body))
		if user != "" {
			req.SetBasicAuth(user, "bobs-password")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
}
