package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClientQuotaThrottlesOneFetcher sets consumer_byte_rate 2 MB/s on client
// id "slow" through AlterClientQuotas and has "slow" and "fast" read one
// 40 MB topic at the same time: slow is held to 2 MB/s within 20%, fast
// reads at its own pace (over 4x that). DescribeClientQuotas answers the
// quota; the per-user series and `user stats` count the bytes (issue 12).
func TestClientQuotaThrottlesOneFetcher(t *testing.T) {
	b := startBroker(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const topic, quota, recordSize, records = "quota-e2e", 2e6, 100_000, 400 // 40 MB

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Kafka), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.ProducerBatchCompression(kgo.NoCompression())) // the quota counts bytes as stored
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	value := []byte(strings.Repeat("z", recordSize))
	for i := 0; i < records; i++ {
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	slow := "slow"
	altered, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{{
		Entity: kadm.ClientQuotaEntity{{Type: "client-id", Name: &slow}},
		Ops:    []kadm.AlterClientQuotaOp{{Key: "consumer_byte_rate", Value: quota}},
	}})
	if err != nil || len(altered) != 1 || altered[0].Err != nil {
		t.Fatalf("AlterClientQuotas: %v %+v", err, altered)
	}
	described, err := adm.DescribeClientQuotas(ctx, false, []kadm.DescribeClientQuotaComponent{{Type: "client-id", MatchName: &slow}})
	if err != nil || len(described) != 1 || len(described[0].Values) != 1 ||
		described[0].Values[0].Key != "consumer_byte_rate" || described[0].Values[0].Value != quota {
		t.Fatalf("DescribeClientQuotas: %v %+v", err, described)
	}

	// Each consumer counts the bytes it got over time; slow reads for
	// 12 s, its rate taken from 2 s on (the first second's worth comes
	// at once), fast until it has the whole topic.
	type result struct {
		rate  float64
		bytes int
	}
	consume := func(clientID string, window time.Duration) result {
		c, err := kgo.NewClient(kgo.SeedBrokers(b.Kafka), kgo.ClientID(clientID), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(256<<10), kgo.FetchMaxPartitionBytes(256<<10))
		if err != nil {
			t.Error(err)
			return result{}
		}
		defer c.Close()
		start := time.Now()
		var total, fromMark int
		var mark time.Time
		for total < records*recordSize && time.Since(start) < window {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			fs := c.PollFetches(pctx)
			pcancel()
			fs.EachRecord(func(r *kgo.Record) { total += len(r.Value) })
			if window < time.Minute && mark.IsZero() && time.Since(start) >= 2*time.Second {
				mark, fromMark = time.Now(), total
			}
		}
		if mark.IsZero() {
			mark, fromMark = start, 0
		}
		return result{rate: float64(total-fromMark) / time.Since(mark).Seconds(), bytes: total}
	}
	var wg sync.WaitGroup
	var slowRes, fastRes result
	wg.Add(2)
	go func() { defer wg.Done(); slowRes = consume("slow", 12*time.Second) }()
	go func() { defer wg.Done(); fastRes = consume("fast", time.Hour) }()
	wg.Wait()
	t.Logf("slow: %.2f MB/s (%d bytes); fast: %.2f MB/s (%d bytes); quota %.2f MB/s",
		slowRes.rate/1e6, slowRes.bytes, fastRes.rate/1e6, fastRes.bytes, quota/1e6)
	if slowRes.rate < 0.8*quota || slowRes.rate > 1.2*quota {
		t.Errorf("slow consumer at %.0f B/s, want %.0f within 20%%", slowRes.rate, quota)
	}
	if fastRes.bytes != records*recordSize || fastRes.rate < 4*quota {
		t.Errorf("fast consumer read %d bytes at %.0f B/s, want all %d at over 4x the quota", fastRes.bytes, fastRes.rate, records*recordSize)
	}

	// Everyone is ANONYMOUS without SASL: the fetched bytes of both
	// consumers are counted there, and throttled time too.
	out, err := runBinary(t, "user", "stats", "--http", b.HTTP)
	if err != nil {
		t.Fatalf("user-stats: %v\n%s", err, out)
	}
	t.Logf("user-stats:\n%s", out)
	if !strings.Contains(out, "fetched_bytes") || !strings.Contains(out, "ANONYMOUS") {
		t.Errorf("user-stats lacks the ANONYMOUS row or fetched_bytes column:\n%s", out)
	}
	st, err := parseUserMetricsFrom(b.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	got := st.values["ANONYMOUS"]
	if want := float64(slowRes.bytes + fastRes.bytes); got["fetched_bytes"] < want {
		t.Errorf("ztfbroker_user_fetched_bytes_total{user=ANONYMOUS} %v, want at least the %v bytes consumed", got["fetched_bytes"], want)
	}
	if got["produced_bytes"] < records*recordSize || got["throttle_seconds"] < 5 {
		t.Errorf("produced_bytes %v (want >= %d), throttle_seconds %v (want >= 5)", got["produced_bytes"], records*recordSize, got["throttle_seconds"])
	}
}

func parseUserMetricsFrom(addr string) (userStats, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return userStats{}, err
	}
	defer resp.Body.Close()
	return parseUserMetrics(resp.Body)
}
