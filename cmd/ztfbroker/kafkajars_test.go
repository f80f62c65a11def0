package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// kafkaVersion is the Apache Kafka whose broker and tools the tests run.
const kafkaVersion = "4.1.1"

// kafkaJars returns the folder of Apache Kafka's broker and tools jars
// (kafka_2.13, kafka-tools, log4j), fetched with Maven the first time into
// the cache scripts/vs-kafka.sh uses, so the script and the tests share one
// download.
func kafkaJars(t *testing.T, ctx context.Context) string {
	t.Helper()
	home, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(home, "ztfbroker-vs-kafka", kafkaVersion)
	libs := filepath.Join(cache, "libs")
	if _, err := os.Stat(filepath.Join(cache, "done")); err == nil {
		return libs
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	pom := `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ztfbroker</groupId><artifactId>vs-kafka</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>` + kafkaVersion + `</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>` + kafkaVersion + `</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
`
	if err := os.WriteFile(filepath.Join(cache, "pom.xml"), []byte(pom), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "dependency:copy-dependencies", "-DoutputDirectory="+libs)
	cmd.Dir = cache
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fetch Kafka's jars with Maven: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(cache, "done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return libs
}

// javaQuiet is a log4j2 configuration that keeps Kafka's tools to warnings.
func javaQuiet(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "log4j2.yaml")
	conf := "Configuration:\n  Appenders:\n    Console: {name: STDERR, target: SYSTEM_ERR, PatternLayout: {pattern: \"%d %p %c{1} %m%n\"}}\n" +
		"  Loggers:\n    Root: {level: warn, AppenderRef: {ref: STDERR}}\n"
	if err := os.WriteFile(f, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}
