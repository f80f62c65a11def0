package protocol

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDeleteTopicDropsSeries: a deleted topic's per-topic series leave the
// scrape, and the other topics' stay.
func TestDeleteTopicDropsSeries(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	const gone, kept = "ztf_20260101_programid1", "ztf_20260102_programid1"
	cl := newClient(t, ts.addr, kgo.AllowAutoTopicCreation(), kgo.ConsumeTopics(gone, kept),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(time.Second))
	ctx := ctxT(t, 20*time.Second)
	for _, topic := range []string{gone, kept} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("alert")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	consume(t, cl, 2, 20*time.Second)
	families := []string{"ztfbroker_kafka_topic_bytes_in_total", "ztfbroker_kafka_topic_bytes_out_total",
		"ztfbroker_kafka_topic_records_in_total", "ztfbroker_kafka_topic_records_out_total"}
	// series counts, per family, the series labelled topic.
	series := func(topic string) map[string]int {
		t.Helper()
		mfs, err := ts.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "topic" && l.GetValue() == topic {
						n[mf.GetName()]++
					}
				}
			}
		}
		return n
	}
	for _, topic := range []string{gone, kept} {
		n := series(topic)
		for _, f := range families {
			if n[f] != 1 {
				t.Fatalf("before the delete: %d series of %s{topic=%q}", n[f], f, topic)
			}
		}
	}

	cl.PurgeTopicsFromClient(gone) // stop fetching it: a Fetch may not bring a series back
	resp, err := kadm.NewClient(cl).DeleteTopics(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Error(); err != nil {
		t.Fatal(err)
	}
	if n := series(gone); len(n) != 0 {
		t.Errorf("after the delete, series of %s: %v", gone, n)
	}
	n := series(kept)
	for _, f := range families {
		if n[f] != 1 {
			t.Errorf("after deleting another topic: %d series of %s{topic=%q}", n[f], f, kept)
		}
	}
}
