package mm2_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// mm2Jars returns the folder of MirrorMaker 2's jars (connect-mirror and
// what it needs, log4j), fetched with Maven the first time into the cache
// cmd/ztfbroker's tests and scripts/vs-kafka.sh use, in a folder of their
// own: Maven fills a temporary folder that is renamed into place, so a
// fetch cut short or run twice at once never leaves half a classpath.
func mm2Jars(t *testing.T, ctx context.Context) string {
	t.Helper()
	home, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(home, "ztfbroker-vs-kafka", kafkaVersion)
	libs := filepath.Join(cache, "mm2-libs")
	if _, err := os.Stat(libs); err == nil {
		return libs
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp(cache, ".mm2-fetch-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	dep := func(group, artifact, version string) string {
		return "<dependency><groupId>" + group + "</groupId><artifactId>" + artifact + "</artifactId><version>" + version + "</version></dependency>\n"
	}
	pom := `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ztfbroker</groupId><artifactId>mm2</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
` + dep("org.apache.kafka", "connect-mirror", kafkaVersion) + dep("org.apache.kafka", "connect-mirror-client", kafkaVersion) +
		dep("org.apache.logging.log4j", "log4j-core", "2.24.3") + dep("org.apache.logging.log4j", "log4j-slf4j2-impl", "2.24.3") +
		// log4j's binding is for SLF4J 2; Kafka's jars ask for 1.7.
		dep("org.slf4j", "slf4j-api", "2.0.16") + `  </dependencies>
</project>
`
	if err := os.WriteFile(filepath.Join(work, "pom.xml"), []byte(pom), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "dependency:copy-dependencies", "-DoutputDirectory="+filepath.Join(work, "libs"))
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fetch MirrorMaker 2's jars with Maven: %v\n%s", err, out)
	}
	if err := os.Rename(filepath.Join(work, "libs"), libs); err != nil {
		if _, statErr := os.Stat(libs); statErr != nil {
			t.Fatal(err)
		}
	}
	return libs
}

// mm2Proc is Kafka's connect-mirror-maker (org.apache.kafka.connect.mirror.MirrorMaker)
// in dedicated mode.
type mm2Proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (m *mm2Proc) logs() string { b, _ := os.ReadFile(m.log); return string(b) }

func (m *mm2Proc) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// startMM2 runs MirrorMaker 2 copying topic from the cluster up to the
// cluster down, its flows, syncs and flushes made frequent so that the
// test is short: one task, topics and configs looked at every second,
// positions flushed every 200 ms. Connect's offsets topic is created with
// small segments and a low dirty ratio (offset.storage.* settings become
// the topic's configs) so that the cleaner compacts it while the test
// runs. It is killed at the test's end.
func startMM2(t *testing.T, jars, up, down, topic string) *mm2Proc {
	t.Helper()
	dir := t.TempDir()
	props := "clusters = up, down\n" +
		"up.bootstrap.servers = " + up + "\ndown.bootstrap.servers = " + down + "\n" +
		"up->down.enabled = true\nup->down.topics = " + topic + "\ndown->up.enabled = false\n" +
		"replication.factor = 1\ncheckpoints.topic.replication.factor = 1\nheartbeats.topic.replication.factor = 1\n" +
		"offset-syncs.topic.replication.factor = 1\noffset.storage.replication.factor = 1\n" +
		"status.storage.replication.factor = 1\nconfig.storage.replication.factor = 1\n" +
		"sync.topic.acls.enabled = false\ntasks.max = 1\n" +
		"refresh.topics.interval.seconds = 1\nrefresh.groups.interval.seconds = 1\n" +
		"emit.heartbeats.interval.seconds = 1\n" +
		"emit.checkpoints.interval.seconds = 1\nsync.group.offsets.interval.seconds = 1\n" +
		// A worker setting: MM2 takes it for the herder of flows into down.
		"down.offset.flush.interval.ms = 200\n" +
		"offset.storage.partitions = 1\noffset.storage.segment.ms = 200\noffset.storage.min.cleanable.dirty.ratio = 0.01\n" +
		// The producers MM2 makes send at once.
		"producer.linger.ms = 0\n"
	propsFile := filepath.Join(dir, "mm2.properties")
	// Warnings and errors only, in the properties format log4j reads
	// without more jars.
	log4j := filepath.Join(dir, "log4j2.properties")
	quiet := "rootLogger.level = warn\nrootLogger.appenderRef.stderr.ref = STDERR\n" +
		"appender.stderr.type = Console\nappender.stderr.name = STDERR\nappender.stderr.target = SYSTEM_ERR\n" +
		"appender.stderr.layout.type = PatternLayout\nappender.stderr.layout.pattern = %d %p %c{1} %m%n\n"
	for f, text := range map[string]string{propsFile: props, log4j: quiet} {
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := &mm2Proc{log: filepath.Join(dir, "mm2.log"), done: make(chan struct{})}
	log, err := os.Create(m.log)
	if err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command("java", "-Xmx512m", "-XX:TieredStopAtLevel=1", "-Dlog4j2.configurationFile="+log4j,
		"-cp", filepath.Join(jars, "*"), "org.apache.kafka.connect.mirror.MirrorMaker", propsFile, "--clusters", "down")
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.cmd.Wait(); log.Close(); close(m.done) }()
	m.t = t
	t.Cleanup(m.kill)
	return m
}

// kill sends SIGKILL and waits for the JVM to be gone.
func (m *mm2Proc) kill() {
	m.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		m.t.Errorf("MirrorMaker 2 (pid %d) still running 10 s after SIGKILL", m.cmd.Process.Pid)
	}
}
