package broker

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestProduceTimestampBounds: a batch whose timestamps lie further from the
// broker's clock than message.timestamp.before.max.ms / after.max.ms is
// refused with INVALID_TIMESTAMP and writes nothing (issue 11: one-record
// batches 8 days apart rolled a segment each).
func TestProduceTimestampBounds(t *testing.T) {
	day := int64(24 * time.Hour / time.Millisecond)
	cases := map[string]struct {
		ts        int64 // from the clock
		overrides map[string]string
		want      error
	}{
		"now":                 {ts: 0},
		"no timestamp":        {ts: math.MinInt64},
		"6 days old":          {ts: -6 * day},
		"8 days old":          {ts: -8 * day, want: kerr.InvalidTimestamp},
		"59 min ahead":        {ts: 59 * 60 * 1000},
		"61 min ahead":        {ts: 61 * 60 * 1000, want: kerr.InvalidTimestamp},
		"8 days old allowed":  {ts: -8 * day, overrides: map[string]string{"message.timestamp.before.max.ms": "9223372036854775807"}},
		"a day ahead allowed": {ts: day, overrides: map[string]string{"message.timestamp.after.max.ms": "9223372036854775807"}},
		"year 1970":           {ts: -1_532_500_000_000 + 1, want: kerr.InvalidTimestamp},
		"tighter":             {ts: -2000, overrides: map[string]string{"message.timestamp.before.max.ms": "1000"}, want: kerr.InvalidTimestamp},
	}
	e := newEnv(t, nil)
	e.cfg.MessageTimestampBeforeMaxMs = defaultTimestampBeforeMaxMs
	b := e.open()
	i := 0
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			i++
			topic := "ts" + string(rune('a'+i))
			configs := map[string]*string{}
			for k, v := range c.overrides {
				configs[k] = &v
			}
			if err := b.CreateTopic(context.Background(), topic, 1, configs, false); err != nil {
				t.Fatal(err)
			}
			ts := e.clock.Now().UnixMilli() + c.ts
			if c.ts == math.MinInt64 {
				ts = -1
			}
			bt := makeBatch(t, testBatch{baseTS: ts, tsDeltas: deltas(1, 1), valueSize: 10})
			_, _, err := b.Produce(context.Background(), topic, 0, bt)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("produce at clock%+d ms: %v, want %v", c.ts, err, c.want)
			}
			if c.want != nil && b.topics[topic].partitions[0].log.HighWatermark() != 0 {
				t.Fatal("refused batch written")
			}
		})
	}
}

func TestTimestampBoundSettings(t *testing.T) {
	c := DefaultConfig()
	if c.MessageTimestampBeforeMaxMs != 7*24*3600*1000 || c.MessageTimestampAfterMaxMs != 3600*1000 {
		t.Fatalf("defaults %d, %d", c.MessageTimestampBeforeMaxMs, c.MessageTimestampAfterMaxMs)
	}
	err := c.ApplySettings(map[string]string{
		"log.message.timestamp.before.max.ms": "86400000",
		"log.message.timestamp.after.max.ms":  "60000",
	})
	if err != nil || c.MessageTimestampBeforeMaxMs != 86400000 || c.MessageTimestampAfterMaxMs != 60000 {
		t.Fatalf("apply: %v, %d, %d", err, c.MessageTimestampBeforeMaxMs, c.MessageTimestampAfterMaxMs)
	}
	if err := c.ApplySettings(map[string]string{"log.message.timestamp.after.max.ms": "-1"}); err == nil {
		t.Fatal("negative bound accepted")
	}
}
