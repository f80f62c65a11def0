package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
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

// kafkaProc is an Apache Kafka broker (KRaft, one node, broker and
// controller in one JVM) run from kafkaJars, as scripts/vs-kafka.sh runs it.
type kafkaProc struct {
	t     *testing.T
	Kafka string // host:port of its PLAINTEXT listener
	dir   string
	jars  string
	cmd   *exec.Cmd
	log   *os.File
}

// startKafka formats a fresh log directory and starts Kafka on free
// loopback ports, waiting until it answers metadata.
func startKafka(t *testing.T, ctx context.Context) *kafkaProc {
	t.Helper()
	k := &kafkaProc{t: t, Kafka: freeAddr(t), dir: t.TempDir(), jars: kafkaJars(t, ctx)}
	ctl := freeAddr(t)
	props := filepath.Join(k.dir, "server.properties")
	conf := "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.bootstrap.servers=" + ctl + "\n" +
		"listeners=PLAINTEXT://" + k.Kafka + ",CONTROLLER://" + ctl + "\nadvertised.listeners=PLAINTEXT://" + k.Kafka + "\n" +
		"controller.listener.names=CONTROLLER\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n" +
		"log.dirs=" + filepath.Join(k.dir, "data") + "\noffsets.topic.replication.factor=1\n" +
		"transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n" +
		"share.coordinator.state.topic.replication.factor=1\nshare.coordinator.state.topic.min.isr=1\n" +
		"group.initial.rebalance.delay.ms=0\n" +
		// A restarted broker registers again once its last session ends.
		"broker.session.timeout.ms=1500\nbroker.heartbeat.interval.ms=200\n"
	if err := os.WriteFile(props, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var id [16]byte
	rand.Read(id[:])
	format := exec.CommandContext(ctx, "java", "-Xmx256m", "-Dlog4j2.configurationFile="+javaQuiet(t), "-cp", filepath.Join(k.jars, "*"),
		"kafka.tools.StorageTool", "format", "--standalone", "--cluster-id="+base64.RawURLEncoding.EncodeToString(id[:]), "-c", props)
	if out, err := format.CombinedOutput(); err != nil {
		t.Fatalf("format Kafka's log dir: %v\n%s", err, out)
	}
	k.start()
	t.Cleanup(k.kill)
	return k
}

func (k *kafkaProc) start() {
	k.t.Helper()
	log, err := os.OpenFile(filepath.Join(k.dir, "kafka.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		k.t.Fatal(err)
	}
	k.log = log
	k.cmd = exec.Command("java", "-Xmx512m", "-XX:+UseG1GC", "-Dlog4j2.configurationFile="+javaQuiet(k.t),
		"-cp", filepath.Join(k.jars, "*"), "kafka.Kafka", filepath.Join(k.dir, "server.properties"))
	k.cmd.Stdout, k.cmd.Stderr = log, log
	if err := k.cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(k.Kafka), kgo.DialTimeout(time.Second))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			brokers, err := kadm.NewClient(cl).ListBrokers(ctx)
			cancel()
			cl.Close()
			if err == nil && len(brokers) == 1 {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, _ := os.ReadFile(filepath.Join(k.dir, "kafka.log"))
	k.t.Fatalf("Kafka not ready after 60 s:\n%s", out)
}

// kill sends SIGKILL and waits for the JVM to be gone.
func (k *kafkaProc) kill() {
	if k.cmd != nil && k.cmd.ProcessState == nil {
		k.cmd.Process.Signal(syscall.SIGKILL)
		k.cmd.Wait()
		k.log.Close()
	}
}
