package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJavaAdminConfigs runs Kafka's own Java AdminClient 4.1.1 against the
// broker: incrementalAlterConfigs then describeConfigs (the change in force,
// as a dynamic topic config), a refused out-of-range value, describeProducers
// after an idempotent producer's sends, describeLogDirs, listGroups; then
// Kafka's kafka-configs --alter and --describe --all (ConfigCommand from the
// kafka_2.13 jar) on the topic, and a restart that keeps the altered config.
func TestJavaAdminConfigs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	clients := javaAdminJars(t, ctx)
	kafka := kafkaJars(t, ctx)
	classes := t.TempDir()
	runTool(t, ctx, nil, "javac", "-cp", filepath.Join(clients, "*"), "-d", classes, filepath.Join("testdata", "java", "AdminConfigs.java"))
	b := startBroker(t, "")
	const topic = "ztf_20260101_programid1"
	java := func(cp string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "java", append([]string{"-Dlog4j2.configurationFile=" + javaQuiet(t), "-cp", cp}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("java %v: %v\n%s\nbroker log:\n%s", args, err, out, b.Logs())
		}
		return string(out)
	}
	out := java(classes+string(os.PathListSeparator)+filepath.Join(clients, "*"), "AdminConfigs", b.Kafka, topic)
	for _, step := range []string{"ok incrementalAlterConfigs retention.ms=3600000 source=DYNAMIC_TOPIC_CONFIG",
		"ok describeConfigs entries=35 min.insync.replicas=1 readOnly=true", "ok refused segment.bytes=1000: ",
		"ok describeProducers", "lastSequence=9", "ok describeLogDirs partitions=", "ok listGroups"} {
		if !strings.Contains(out, step) {
			t.Errorf("Java AdminClient did not print %q:\n%s", step, out)
		}
	}

	configs := func(args ...string) string {
		return java(filepath.Join(kafka, "*"), append([]string{"kafka.admin.ConfigCommand", "--bootstrap-server", b.Kafka,
			"--entity-type", "topics", "--entity-name", topic}, args...)...)
	}
	if out := configs("--alter", "--add-config", "retention.ms=7200000,segment.bytes=2097152", "--delete-config", "max.message.bytes"); !strings.Contains(out, "Completed updating config") {
		t.Errorf("kafka-configs --alter:\n%s", out)
	}
	b.Stop()
	b.Restart()
	out = configs("--describe", "--all")
	for _, want := range []string{"retention.ms=7200000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=7200000",
		"segment.bytes=2097152 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:segment.bytes=2097152",
		"max.message.bytes=10485760 sensitive=false synonyms={DEFAULT_CONFIG:message.max.bytes=10485760}",
		"unclean.leader.election.enable=false"} {
		if !strings.Contains(out, want) {
			t.Errorf("kafka-configs --describe --all after a restart lacks %q:\n%s", want, out)
		}
	}
}
