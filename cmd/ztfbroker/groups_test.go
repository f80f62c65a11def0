package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kcatMember is one `kcat -G` balanced consumer process.
type kcatMember struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	seen map[string]bool // "partition/offset"
	vals map[string]bool // values consumed
	done chan struct{}
}

func startKcatMember(t *testing.T, addr, group, topic string) *kcatMember {
	t.Helper()
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is needed by this test and is not installed: %v", err)
	}
	m := &kcatMember{seen: map[string]bool{}, vals: map[string]bool{}, done: make(chan struct{})}
	m.cmd = exec.Command("kcat", "-b", addr, "-G", group, "-q", "-u", "-f", "%p %o %s\n",
		"-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500",
		"-X", "auto.offset.reset=earliest", "-X", "auto.commit.interval.ms=200", topic)
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(m.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), " ", 3)
			if len(f) != 3 {
				continue
			}
			m.mu.Lock()
			m.seen[f[0]+"/"+f[1]] = true
			m.vals[f[2]] = true
			m.mu.Unlock()
		}
		m.cmd.Wait()
	}()
	t.Cleanup(func() { m.kill() })
	return m
}

func (m *kcatMember) kill() {
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
}

func (m *kcatMember) partitions() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := map[string]bool{}
	for k := range m.seen {
		ps[strings.SplitN(k, "/", 2)[0]] = true
	}
	return ps
}

// waitConsumed waits until the members together have consumed every value.
func waitConsumed(t *testing.T, want []string, members ...*kcatMember) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		missing := 0
		for _, v := range want {
			found := false
			for _, m := range members {
				m.mu.Lock()
				found = found || m.vals[v]
				m.mu.Unlock()
			}
			if !found {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages never consumed by the group", missing, len(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStableGroup waits until the group is stable with n members, each
// assigned at least one partition, as kadm describes it.
func waitStableGroup(t *testing.T, addr, group string, n int) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, addr))
	deadline := time.Now().Add(60 * time.Second)
	for {
		described, err := adm.DescribeGroups(context.Background(), group)
		if err == nil {
			g := described[group]
			ok := g.State == "Stable" && len(g.Members) == n
			for _, m := range g.Members {
				c, isConsumer := m.Assigned.AsConsumer()
				ok = ok && isConsumer && len(c.Topics) > 0 && len(c.Topics[0].Partitions) > 0
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s never became stable with %d members: %+v, %v", group, n, described, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func produceValues(t *testing.T, addr, topic, prefix string, n int) []string {
	t.Helper()
	cl := newClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	var vals []string
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("%s-%05d", prefix, i)
		vals = append(vals, v)
		cl.Produce(context.Background(), &kgo.Record{Value: []byte(v)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return vals
}

func createTopic(t *testing.T, addr, topic string, partitions int32) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, addr))
	resp, err := adm.CreateTopics(context.Background(), partitions, 1, nil, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
}

// TestKcatBalancedConsumers: three `kcat -G` members share six partitions;
// one is killed, the other two take over its partitions and nothing is skipped.
func TestKcatBalancedConsumers(t *testing.T) {
	b := startBroker(t, "")
	const topic, group = "balanced", "kcat-group"
	createTopic(t, b.Kafka, topic, 6)
	members := []*kcatMember{
		startKcatMember(t, b.Kafka, group, topic),
		startKcatMember(t, b.Kafka, group, topic),
		startKcatMember(t, b.Kafka, group, topic),
	}
	waitStableGroup(t, b.Kafka, group, 3)
	first := produceValues(t, b.Kafka, topic, "first", 600)
	waitConsumed(t, first, members...)
	owned := map[string]int{}
	for i, m := range members {
		ps := m.partitions()
		if len(ps) == 0 {
			t.Fatalf("member %d got no partition of six", i)
		}
		for p := range ps {
			owned[p]++
		}
	}
	if len(owned) != 6 {
		t.Fatalf("the members consumed from %d partitions, want 6", len(owned))
	}

	members[0].kill()
	second := produceValues(t, b.Kafka, topic, "second", 600)
	waitConsumed(t, second, members[1], members[2])
}

const confluentGroupScript = `
import sys, threading
from confluent_kafka import Producer, Consumer
addr, topic, phase = sys.argv[1], sys.argv[2], sys.argv[3]
n = 400 if phase == "1" else 100
members = 2 if phase == "1" else 1

total, lock = [], threading.Lock()
assigned = [threading.Event() for _ in range(members)]
outs = [[] for _ in range(members)]

def member(i):
    c = Consumer({"bootstrap.servers": addr, "group.id": "py-group", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000})
    def on_assign(consumer, parts):
        if parts:
            assigned[i].set()
    c.subscribe([topic], on_assign=on_assign)
    while True:
        with lock:
            if len(total) >= n:
                break
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        outs[i].append((m.partition(), m.offset(), m.value().decode()))
        with lock:
            total.append(1)
        c.commit(message=m, asynchronous=False)
    c.close()

threads = [threading.Thread(target=member, args=(i,)) for i in range(members)]
for th in threads: th.start()
# Produce once every member holds partitions, so that the group, not the
# first member to join, splits the topic.
for ev in assigned:
    assert ev.wait(60), "a member never got an assignment"

p = Producer({"bootstrap.servers": addr, "enable.idempotence": True, "acks": "all", "linger.ms": 2})
errs = []
for i in range(n):
    p.produce(topic, value=("%s-%05d" % (phase, i)).encode(), partition=i % 4,
              on_delivery=lambda err, msg: errs.append(err) if err else None)
    p.poll(0)
p.flush(60)
assert not errs, errs

for th in threads: th.join(120)
vals = sorted(v for o in outs for (_, _, v) in o)
assert vals == sorted("%s-%05d" % (phase, i) for i in range(n)), "got %d values, want %d exactly once" % (len(vals), n)
if phase == "1":
    parts = [set(pp for (pp, _, _) in o) for o in outs]
    assert parts[0] and parts[1], "a member got no partition: %r" % parts
    assert not (parts[0] & parts[1]), "members share partitions: %r" % parts
print("ok", phase, len(vals))
`

// TestConfluentKafkaGroupResumesAfterRestart: two librdkafka members split a
// topic (idempotent producer, synchronous commits); after a broker restart
// the group resumes exactly after its committed offsets.
func TestConfluentKafkaGroupResumesAfterRestart(t *testing.T) {
	b := startBroker(t, "")
	const topic = "py-groups"
	createTopic(t, b.Kafka, topic, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out := runTool(t, ctx, nil, "/usr/bin/python3", "-c", confluentGroupScript, b.Kafka, topic, "1")
	if !strings.HasPrefix(string(out), "ok 1 400") {
		t.Fatalf("phase 1: %s", out)
	}
	b.Kill() // SIGKILL: committed offsets and producer state must be durable
	b.Restart()
	// Phase 2 produces 100 more; the group must read exactly those: a
	// message of phase 1 read again fails the script's exactly-once check.
	out = runTool(t, ctx, nil, "/usr/bin/python3", "-c", confluentGroupScript, b.Kafka, topic, "2")
	if !strings.HasPrefix(string(out), "ok 2 100") {
		t.Fatalf("phase 2: %s", out)
	}
}
