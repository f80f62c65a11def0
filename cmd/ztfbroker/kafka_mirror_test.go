package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestMirrorWithApacheKafka runs `ztfbroker mirror` both ways between
// Apache Kafka 4.1.1 (its own jars, KRaft) and ztfbroker while producers
// write to both upstreams: Kafka into ztfbroker and ztfbroker into Kafka,
// across a SIGKILL of both mirrors and of both destinations (Kafka is also
// the first mirror's upstream). Every record arrives once, in order, with
// its key, value, timestamp and headers.
func TestMirrorWithApacheKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	k := startKafka(t, ctx)
	zdown, zup := startBroker(t, ""), startBroker(t, "")
	const fromKafka, toKafka = "ztf_20260104_programid1", "ztf_20260104_programid2"
	if _, err := kadm.NewClient(newClient(t, k.Kafka)).CreateTopic(ctx, 3, 1, nil, fromKafka); err != nil {
		t.Fatal(err)
	}
	// ztfbroker's own topic config, which Kafka refuses: the mirror
	// creates the topic in Kafka without it.
	format := map[string]*string{"ztf.alert.format": kmsg.StringPtr("ocf")}
	if _, err := kadm.NewClient(newClient(t, zup.Kafka)).CreateTopic(ctx, 2, 1, format, toKafka); err != nil {
		t.Fatal(err)
	}
	p1, p2 := produceAlerts(t, k.Kafka, fromKafka), produceAlerts(t, zup.Kafka, toKafka)
	m1 := startMirror(t, "kafka://"+k.Kafka+"/ztf_*_programid1", "kafka://"+zdown.Kafka+"/")
	m2 := startMirror(t, "kafka://"+zup.Kafka+"/ztf_*_programid2", "kafka://"+k.Kafka+"/")
	waitRecords(t, ctx, zdown.Kafka, fromKafka, 100)
	waitRecords(t, ctx, k.Kafka, toKafka, 100)
	m1.kill()
	m2.kill()
	m1.start()
	m2.start()
	waitRecords(t, ctx, zdown.Kafka, fromKafka, 200)
	waitRecords(t, ctx, k.Kafka, toKafka, 200)
	zdown.Kill()
	k.kill()
	zdown.Restart()
	k.start()
	waitRecords(t, ctx, zdown.Kafka, fromKafka, 400)
	waitRecords(t, ctx, k.Kafka, toKafka, 400)
	n1, n2 := p1.halt(t), p2.halt(t)
	sameMirrored(t, k.Kafka, zdown.Kafka, fromKafka, int64(n1), m1)
	sameMirrored(t, zup.Kafka, k.Kafka, toKafka, int64(n2), m2)
	if !strings.Contains(m2.logs(), "destination refused the upstream topic's configs") {
		t.Errorf("the mirror into Kafka does not say Kafka refused ztf.alert.format:\n%s", m2.logs())
	}
}
