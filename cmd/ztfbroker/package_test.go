package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func packageCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func packageConsume(t *testing.T, addrs []string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeRegex(), kgo.ConsumeTopics("^ztf_"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		out = append(out, cl.PollFetches(ctx).Records()...)
	}
	if len(out) != n {
		t.Fatalf("consumed %d records, want %d", len(out), n)
	}
	return out
}

func TestPackageCommandSimulate(t *testing.T) {
	c := packageCluster(t)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := runPackage(context.Background(), []string{"--bootstrap", strings.Join(c.ListenAddrs(), ","),
		"--simulate", "15", "--exposures", "2", "--interval", "0",
		"--history", filepath.Join(dir, "h"), "--rejects", filepath.Join(dir, "r")}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "total: 2 exposures, 30 alerts, 0 rejected") {
		t.Errorf("output:\n%s", out.String())
	}
	recs := packageConsume(t, c.ListenAddrs(), 30)
	for _, r := range recs {
		if !bytes.HasPrefix(r.Value, []byte("Obj\x01")) || len(r.Key) != 12 {
			t.Fatalf("record %s: not a container file keyed by objectId", r.Key)
		}
	}
}

func TestPackageCommandReplay(t *testing.T) {
	samples := "../../../shared/data/ztf/alerts" // the shared folder beside the project root
	c := packageCluster(t)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := runPackage(context.Background(), []string{"--bootstrap", c.ListenAddrs()[0],
		"--history", filepath.Join(dir, "h"), "--rejects", filepath.Join(dir, "r"),
		"--replay", filepath.Join(samples, "ztf-avro-alert"), filepath.Join(samples, "other-sources")}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	// Programid 0 (5 alerts) and the prototypes (6, programid 64) are
	// refused, not sent to a public topic (issue 13).
	if !strings.Contains(out.String(), "total: 1 exposures, 27 alerts, 11 rejected") { // the 36 files fit in one
		t.Errorf("output:\n%s", out.String())
	}
	packageConsume(t, c.ListenAddrs(), 27)
}

func TestPackageCommandUsage(t *testing.T) {
	var out, errb bytes.Buffer
	for _, args := range [][]string{
		{},
		{"--simulate", "5", "--ingest", "x"},
		{"--simulate", "5", "--format", "xml"},
	} {
		if err := runPackage(context.Background(), args, &out, &errb); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	if !strings.Contains(errb.String(), "usage: ztfbroker package") {
		t.Errorf("no usage text:\n%s", errb.String())
	}
}

// A topic the packager creates on a real `ztfbroker serve` states its format
// in its config, and keeps stating it after the broker restarts.
func TestPackageRecordsFormatOnServe(t *testing.T) {
	b := startBroker(t, "")
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--simulate", "5"},
		{"--simulate", "3", "--format", "confluent", "--schema-id", "9", "--topic", "alerts_confluent"},
	} {
		out, err := runBinary(t, append([]string{"package", "--bootstrap", b.Kafka, "--exposures", "1", "--interval", "0",
			"--history", filepath.Join(dir, "h"), "--rejects", filepath.Join(dir, "r")}, args...)...)
		if err != nil {
			t.Fatalf("package %q: %v\n%s", args, err, out)
		}
	}

	check := func() {
		t.Helper()
		adm := kadm.NewClient(newClient(t, b.Kafka))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tds, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var night string
		for _, name := range tds.Names() {
			if strings.HasPrefix(name, "ztf_") {
				night = name
			}
		}
		if night == "" {
			t.Fatalf("no nightly topic among %q", tds.Names())
		}
		want := map[string]map[string]string{
			night:              {"ztf.alert.format": "ocf", "ztf.alert.schema.id": "0"},
			"alerts_confluent": {"ztf.alert.format": "confluent", "ztf.alert.schema.id": "9"},
		}
		rcs, err := adm.DescribeTopicConfigs(ctx, night, "alerts_confluent")
		if err != nil {
			t.Fatal(err)
		}
		for topic, keys := range want {
			rc, err := rcs.On(topic, nil)
			if err != nil {
				t.Fatalf("%s: %v", topic, err)
			}
			got := map[string]kadm.Config{}
			for _, c := range rc.Configs {
				got[c.Key] = c
			}
			for key, value := range keys {
				c, ok := got[key]
				if !ok || c.MaybeValue() != value {
					t.Errorf("%s: %s = %q (listed %v), want %q", topic, key, c.MaybeValue(), ok, value)
				}
				// The schema id of an ocf topic is the default, not stated.
				wantSrc := kmsg.ConfigSourceDynamicTopicConfig
				if value == "0" {
					wantSrc = kmsg.ConfigSourceDefaultConfig
				}
				if c.Source != wantSrc {
					t.Errorf("%s: %s source %v, want %v", topic, key, c.Source, wantSrc)
				}
			}
		}
		packageConsume(t, []string{b.Kafka}, 5)
	}
	check()
	b.Kill()
	b.Restart()
	check()
}
