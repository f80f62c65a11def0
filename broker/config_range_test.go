package broker

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// badNumbers are values out of range for each numeric setting, keyed by the
// name ApplySettings takes (the broker-wide one); each must be refused with
// an error naming the setting and its range. A value past what a
// time.Duration holds (292 years of ms) would wrap around, so it is out of
// range too.
var badNumbers = map[string][]string{
	"log.retention.ms":                    {"-5", "-2", "9223372036855"},
	"log.retention.minutes":               {"-5", "153722867281"},
	"log.retention.hours":                 {"-2", "2562048"},
	"log.retention.bytes":                 {"-2"},
	"log.retention.total.bytes":           {"-2"},
	"log.retention.check.interval.ms":     {"0", "-1", "9223372036855"},
	"log.dir.free.min.bytes":              {"-2"},
	"log.scrub.bytes.per.second":          {"-2"},
	"log.journal.bytes":                   {"-2", "1000"},
	"log.segment.bytes":                   {"1048575", "-1", "2147483648"},
	"log.roll.ms":                         {"0", "-1", "9223372036855"},
	"log.cleaner.delete.retention.ms":     {"-1", "9223372036855"},
	"log.cleaner.backoff.ms":              {"0", "-1"},
	"log.cleaner.max.compaction.lag.ms":   {"0", "-1", "9223372036855"},
	"log.cleaner.min.compaction.lag.ms":   {"-1", "9223372036855"},
	"log.index.interval.bytes":            {"0", "2147483648"},
	"log.flush.interval.ms":               {"-1", "9223372036855"},
	"message.max.bytes":                   {"60", "-1", "2147483648"},
	"log.message.timestamp.before.max.ms": {"-1", "9223372036854775808"},
	"log.message.timestamp.after.max.ms":  {"-1"},
	"num.partitions":                      {"0", "10001", "4294967297"},
}

func TestNumericSettingsRangeChecked(t *testing.T) {
	for name, values := range badNumbers {
		for _, v := range values {
			c := DefaultConfig()
			err := c.ApplySettings(map[string]string{name: v})
			if err == nil {
				t.Errorf("%s: %s accepted", name, v)
				continue
			}
			if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, "out of range: ") {
				t.Errorf("%s: %s: the error does not name the setting and its range: %v", name, v, err)
			}
		}
	}
	// Each setting's good edge is accepted.
	for name, v := range map[string]string{
		"log.retention.ms": "-1", "log.retention.bytes": "-1", "log.retention.total.bytes": "-1",
		"log.dir.free.min.bytes": "-1", "log.flush.interval.ms": "0", "log.segment.bytes": "2147483647",
		"log.message.timestamp.before.max.ms": "9223372036854775807", "log.retention.hours": "-1",
	} {
		c := DefaultConfig()
		if err := c.ApplySettings(map[string]string{name: v}); err != nil {
			t.Errorf("%s: %s refused: %v", name, v, err)
		}
	}
}

// TestTopicConfigsRangeChecked: a topic's configs (CreateTopics) have the
// ranges of their broker-wide defaults.
func TestTopicConfigsRangeChecked(t *testing.T) {
	for _, k := range topicKeys {
		if k.broker == "" || (k.typ != kmsg.ConfigTypeInt && k.typ != kmsg.ConfigTypeLong) {
			continue
		}
		values, ok := badNumbers[k.broker]
		if !ok {
			t.Errorf("%s (%s): numeric, but no out-of-range value in badNumbers", k.name, k.broker)
			continue
		}
		for _, v := range values {
			_, err := DefaultConfig().resolveTopic(map[string]string{k.name: v})
			if err == nil {
				t.Errorf("topic config %s: %s accepted", k.name, v)
				continue
			}
			if msg := err.Error(); !strings.Contains(msg, k.name) || !strings.Contains(msg, "out of range: ") {
				t.Errorf("topic config %s: %s: the error does not name the setting and its range: %v", k.name, v, err)
			}
		}
	}
	if _, err := DefaultConfig().resolveTopic(map[string]string{"ztf.alert.schema.id": "-1"}); err == nil ||
		!strings.Contains(err.Error(), "ztf.alert.schema.id") {
		t.Errorf("ztf.alert.schema.id -1: %v", err)
	}
}

// TestBadNumbersCoverEverySetting: every numeric broker setting has a
// value in badNumbers.
func TestBadNumbersCoverEverySetting(t *testing.T) {
	for _, name := range NumericSettings() {
		if _, ok := badNumbers[name]; !ok {
			t.Errorf("%s: numeric, but no out-of-range value in badNumbers", name)
		}
	}
}
