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

// kafkaClientsVersion is the Apache Kafka Java client the admin test runs.
const kafkaClientsVersion = "4.1.1"

// javaAdminJars fetches kafka-clients and slf4j-api (and the extra
// artifacts, group:name:version) with Maven into a cache folder shared by
// runs (Maven's own repository makes a second fetch local).
func javaAdminJars(t *testing.T, ctx context.Context, extra ...string) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "ztfbroker-test-jars-"+kafkaClientsVersion)
	for _, artifact := range append([]string{"org.apache.kafka:kafka-clients:" + kafkaClientsVersion, "org.slf4j:slf4j-api:1.7.36"}, extra...) {
		parts := strings.Split(artifact, ":")
		if _, err := os.Stat(filepath.Join(dir, parts[1]+"-"+parts[2]+".jar")); err == nil {
			continue
		}
		runTool(t, ctx, nil, "mvn", "-q", "-B", "dependency:copy", "-Dartifact="+artifact, "-DoutputDirectory="+dir)
	}
	return dir
}

// TestJavaAdminClientACLsAndSCRAM runs Kafka's own Java AdminClient (what
// kafka-acls.sh and kafka-configs.sh use) against the broker: createAcls,
// describeAcls, deleteAcls, alterUserScramCredentials and
// describeUserScramCredentials, as a superuser from loopback.
func TestJavaAdminClientACLsAndSCRAM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	jars := javaAdminJars(t, ctx)
	classes := t.TempDir()
	runTool(t, ctx, nil, "javac", "-cp", filepath.Join(jars, "*"), "-d", classes, filepath.Join("testdata", "java", "AdminAcls.java"))
	b := startBroker(t, "")
	if _, err := exec.LookPath("java"); err != nil {
		t.Fatalf("java is needed by this test and is not installed (.ci/run installs it): %v", err)
	}
	cmd := exec.CommandContext(ctx, "java", "-cp", classes+string(os.PathListSeparator)+filepath.Join(jars, "*"), "AdminAcls", b.Kafka)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Java AdminClient: %v\n%s\nbroker log:\n%s", err, out, b.Logs())
	}
	for _, step := range []string{"ok createAcls", "ok describeAcls", "ok deleteAcls", "ok alterUserScramCredentials", "ok describeUserScramCredentials"} {
		if !strings.Contains(string(out), step) {
			t.Errorf("Java AdminClient did not reach %q:\n%s", step, out)
		}
	}
}
