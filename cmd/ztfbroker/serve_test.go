package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/avrofile"
	"github.com/ztfbroker/ztfbroker/packager"
)

// firstExposure is how many alerts serve's default simulated exposure makes,
// all public.
var firstExposure = int64(packager.DefaultConfig().Source.Simulate.Alerts)

// TestServeDefaultsFillTonightsTopic is the README's first experience: serve
// with its defaults simulates a night, so tonight's topic fills with ZTF
// alerts at once, with the schema and the archive listing on the HTTP port.
func TestServeDefaultsFillTonightsTopic(t *testing.T) {
	b := startBroker(t, "", "--packager=true")
	topic := "ztf_" + time.Now().UTC().Format("20060102") + "_programid1"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	waitFilled(ctx, t, b, topic, firstExposure)

	cl := newClient(t, b.Kafka, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}}))
	fs := cl.PollFetches(ctx)
	recs := fs.Records()
	if len(recs) == 0 {
		t.Fatalf("no alert fetched: %v", fs.Errors())
	}
	r := recs[0]
	if !bytes.HasPrefix(r.Value, []byte("Obj\x01")) || !strings.HasPrefix(string(r.Key), "ZTF") {
		t.Fatalf("first message is not a ZTF alert container file keyed by objectId: key %q, %d bytes", r.Key, len(r.Value))
	}
	if len(r.Value) < 30_000 {
		t.Fatalf("simulated alert of %d bytes; ZTF alerts with cutouts are ~60 kB", len(r.Value))
	}

	// The portal shows them within the same minute (issue 15).
	for {
		resp, err := http.Get("http://" + b.HTTP + "/api/v1/index/status")
		var st struct {
			Alerts int64 `json:"alerts_indexed"`
		}
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if st.Alerts >= firstExposure {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the portal's index holds %d alerts a minute after start, want the first exposure's %d", st.Alerts, firstExposure)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for path, want := range map[string]string{
		"/":               `id="alerts-indexed"`,
		"/schemas/ids/1":  `\"version\":\"4.02\"`, // the schema is a JSON string inside the answer
		"/alerts/public/": "<html",
		"/healthz":        "ok",
		"/metrics":        "ztfbroker_packager_alerts_total",
	} {
		resp, err := http.Get("http://" + b.HTTP + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body without %q", path, resp.StatusCode, want)
		}
	}
}

// TestServeAdminListenerHoldsPprof: profiles and goroutine dumps are for
// operators, on the admin listener; the public one answers 404 for them and
// serves the page index, the archive and /healthz.
func TestServeAdminListenerHoldsPprof(t *testing.T) {
	admin := freeAddr(t)
	b := startBroker(t, "", "--admin-http", admin)
	for _, tc := range []struct {
		method, url string
		code        int
		body        string
	}{
		{"GET", "http://" + b.HTTP + "/debug/pprof/", 404, ""},
		{"GET", "http://" + b.HTTP + "/debug/pprof/goroutine?debug=2", 404, ""},
		{"GET", "http://" + admin + "/debug/pprof/", 200, "goroutine"},
		{"GET", "http://" + b.HTTP + "/", 200, `href="/search"`}, // the portal's status page
		{"GET", "http://" + b.HTTP + "/pages", 200, `href="/alerts/"`},
		{"GET", "http://" + b.HTTP + "/alerts/public/", 200, "<html"},
		{"POST", "http://" + b.HTTP + "/healthz", 405, ""},
	} {
		req, _ := http.NewRequest(tc.method, tc.url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s %s: %d, want %d with %q", tc.method, tc.url, resp.StatusCode, tc.code, tc.body)
		}
	}
}

// TestInProcessClientsLogIn: with loopback no longer a superuser (the
// production setting), the packager still fills tonight's topic: it logs in
// over its own loopback listener as ztfbroker-packager, and an anonymous
// reader of the public stream sees the alerts.
func TestInProcessClientsLogIn(t *testing.T) {
	b := startBroker(t, "", "--packager=true", "--set", "authz.loopback.superuser=false")
	topic := "ztf_" + time.Now().UTC().Format("20060102") + "_programid1"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitFilled(ctx, t, b, topic, firstExposure)
	if strings.Contains(b.Logs(), "AUTHORIZATION_FAILED") {
		t.Errorf("an in-process client was refused:\n%s", b.Logs())
	}
}

// waitFilled waits until the partitions of topic hold n records or more: the first
// simulated exposure is in.
func waitFilled(ctx context.Context, t *testing.T, b *serveProc, topic string, n int64) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, b.Kafka))
	for {
		// The packager's topics have several partitions: count them all.
		ends, err := adm.ListEndOffsets(ctx, topic)
		var sum int64
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err == nil {
				sum += o.Offset
			}
		})
		if err == nil && sum >= n {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("topic %s did not reach %d records: %v\n%s", topic, n, err, b.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestServeSimulationKeepsToTheClock: the simulated night's sky time is the
// wall clock's, so every alert's candidate.jd falls within the run and every
// alert lands on tonight's topic, however many exposures are taken (here one
// every 2 s instead of 40 s, so a minute holds what 20 minutes would; the
// old simulation moved its sky clock 45 min an exposure and left tonight's
// topic within minutes).
func TestServeSimulationKeepsToTheClock(t *testing.T) {
	begin := time.Now()
	b := startBroker(t, "", "--packager=true", "--set", "packager.source.simulate.interval.ms=2000",
		"--set", "packager.source.simulate.alerts=20")
	topic := "ztf_" + begin.UTC().Format("20060102") + "_programid1"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const exposures = 20
	waitFilled(ctx, t, b, topic, exposures*20)
	end := time.Now()

	adm := kadm.NewClient(newClient(t, b.Kafka))
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, "ztf_") && name != topic && begin.UTC().Format("20060102") == end.UTC().Format("20060102") {
			t.Errorf("alerts on %s besides tonight's %s", name, topic)
		}
	}
	cl := newClient(t, b.Kafka, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	schemas := avrofile.NewSchemas(4)
	seen := 0
	for seen < exposures*20 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("after %d alerts: %v", seen, err)
		}
		for _, r := range fs.Records() {
			as, err := packager.SplitAlerts(r.Value, schemas)
			if err != nil || len(as) != 1 {
				t.Fatalf("offset %d: %d alerts, %v", r.Offset, len(as), err)
			}
			sky := packager.JDTime(as[0].JD)
			if sky.Before(begin.Add(-time.Minute)) || sky.After(end.Add(time.Minute)) {
				t.Fatalf("alert %d observed at %s on the sky, outside the run's %s to %s", as[0].Candid,
					sky.Format(time.RFC3339), begin.Format(time.RFC3339), end.Format(time.RFC3339))
			}
			seen++
		}
	}
}
