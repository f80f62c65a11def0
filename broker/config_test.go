package broker

import (
	"strings"
	"testing"
	"time"

	"github.com/ztfbroker/ztfbroker/log"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestApplySettings(t *testing.T) {
	c := DefaultConfig()
	err := c.ApplySettings(map[string]string{
		"log.dirs":                        "/srv/ztf",
		"num.partitions":                  "4",
		"auto.create.topics.enable":       "false",
		"message.max.bytes":               "2097152",
		"retention.ms":                    "3600000",
		"log.retention.bytes":             "1073741824",
		"segment.bytes":                   "1048576",
		"log.roll.ms":                     "600000",
		"index.interval.bytes":            "8192",
		"flush.ms":                        "1000",
		"log.retention.check.interval.ms": "1000",
		"cluster.id":                      "ztf-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		DataDir: "/srv/ztf", ClusterID: "ztf-test", NumPartitions: 4, AutoCreateTopics: false,
		MessageMaxBytes:             2 << 20,
		MessageTimestampBeforeMaxMs: defaultTimestampBeforeMaxMs, MessageTimestampAfterMaxMs: defaultTimestampAfterMaxMs,
		Topic: log.Config{
			SegmentBytes: 1 << 20, SegmentAge: 10 * time.Minute, RetentionAge: time.Hour,
			RetentionBytes: 1 << 30, IndexIntervalBytes: 8192, Flush: log.FlushInterval, FlushInterval: time.Second,
			PreallocateBytes: log.DefaultPreallocateBytes,
			Cleanup:          log.CleanupDelete, DeleteRetention: log.DefaultDeleteRetention,
			MinCleanableDirtyRatio: log.DefaultMinCleanableDirtyRatio,
		},
		RetentionCheckInterval: time.Second,
		MetaCacheBytes:         DefaultMetaCacheBytes,
		CleanerInterval:        defaultCleanerInterval,
	}
	if c != want {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}

	c = DefaultConfig()
	if err := c.ApplySettings(map[string]string{"flush.ms": "0", "log.retention.hours": "48"}); err != nil {
		t.Fatal(err)
	}
	if c.Topic.Flush != log.FlushAlways || c.Topic.RetentionAge != 48*time.Hour {
		t.Fatalf("flush %v retention %v", c.Topic.Flush, c.Topic.RetentionAge)
	}
}

// Every bad key or value is named, and the Config is left untouched.
func TestApplySettingsNamesEveryProblem(t *testing.T) {
	c := DefaultConfig()
	err := c.ApplySettings(map[string]string{
		"num.partitions":            "0",
		"auto.create.topics.enable": "yes please",
		"retention.ms":              "a week",
		"segment.bytes":             "100",
		"log.segment.bytes":         "2097152", // synonym: set twice
		"flush.ms":                  "-5",
		"max.message.bytes":         "10",
		"log.dirs":                  "a,b",
		"cleanup.policy":            "shred",
		"replication.factor":        "3",
		"num.partitons":             "3",
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"num.partitions", "auto.create.topics.enable", "retention.ms",
		"segment.bytes", "flush.ms", "max.message.bytes", "log.dirs", "cleanup.policy",
		"replication.factor: unknown", "num.partitons: unknown", "set twice"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %q:\n%v", key, err)
		}
	}
	if c != DefaultConfig() {
		t.Errorf("config changed by a refused ApplySettings: %+v", c)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	c := DefaultConfig()
	c.DataDir = ""
	c.NumPartitions = -1
	c.MessageMaxBytes = 0
	c.RetentionCheckInterval = 0
	c.Topic.SegmentBytes = 10
	c.Topic.IndexIntervalBytes = 0
	c.Topic.RetentionBytes = -7
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"log.dirs", "num.partitions", "max.message.bytes",
		"log.retention.check.interval.ms", "segment.bytes", "index.interval.bytes", "retention.bytes"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %q:\n%v", key, err)
		}
	}
}

func TestTopicNameRules(t *testing.T) {
	for name, ok := range map[string]bool{
		"ztf_20180725_programid1": true,
		"a.b-C_9":                 true,
		strings.Repeat("x", 249):  true,
		strings.Repeat("x", 250):  false,
		"":                        false,
		".":                       false,
		"..":                      false,
		"...":                     true,
		"a b":                     false,
		"a/b":                     false,
		"ztf:1":                   false,
		"é":                       false,
	} {
		if err := validTopicName(name); (err == nil) != ok {
			t.Errorf("%q: err = %v, want ok=%v", name, err, ok)
		}
	}
}

// log.preallocate (Kafka's name; topic config preallocate) turns the
// log's preallocation off and on.
func TestPreallocateSetting(t *testing.T) {
	c := DefaultConfig()
	if c.Topic.PreallocateBytes != log.DefaultPreallocateBytes {
		t.Fatalf("default preallocation %d", c.Topic.PreallocateBytes)
	}
	if err := c.ApplySettings(map[string]string{"log.preallocate": "false"}); err != nil {
		t.Fatal(err)
	}
	if c.Topic.PreallocateBytes >= 0 {
		t.Fatalf("log.preallocate=false left %d", c.Topic.PreallocateBytes)
	}
	if err := c.ApplySettings(map[string]string{"log.preallocate": "maybe"}); err == nil || !strings.Contains(err.Error(), "log.preallocate") {
		t.Fatalf("log.preallocate=maybe: %v", err)
	}
}
