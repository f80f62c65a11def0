package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/mirror"
)

// mirrorProc is a running `ztfbroker mirror` process.
type mirrorProc struct {
	t       *testing.T
	args    []string
	cmd     *exec.Cmd
	mu      sync.Mutex
	out     bytes.Buffer
	metrics string
}

func startMirror(t *testing.T, args ...string) *mirrorProc {
	t.Helper()
	m := &mirrorProc{t: t, metrics: freeAddr(t)}
	m.args = append([]string{"mirror", "--refresh", "200ms", "--metrics", m.metrics}, args...)
	m.start()
	t.Cleanup(m.kill)
	return m
}

func (m *mirrorProc) start() {
	m.cmd = exec.Command(binary, m.args...)
	m.cmd.Stdout, m.cmd.Stderr = m, m
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
}

func (m *mirrorProc) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.Write(p)
}

func (m *mirrorProc) logs() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (m *mirrorProc) kill() {
	if m.cmd.ProcessState == nil {
		m.cmd.Process.Signal(syscall.SIGKILL)
		m.cmd.Wait()
	}
}

// alertProducer writes numbered records to its topics in the background,
// keyed like alerts (every tenth key null), with a header and a timestamp,
// in rounds of 20 every 20 ms, until stopped.
type alertProducer struct {
	n      int
	stop   chan struct{}
	done   chan error
	topics []string
}

func produceAlerts(t *testing.T, addr string, topics ...string) *alertProducer {
	return produceAlertsWith(t, newClient(t, addr, kgo.RecordPartitioner(kgo.RoundRobinPartitioner())), topics...)
}

func produceAlertsWith(t *testing.T, cl *kgo.Client, topics ...string) *alertProducer {
	p := &alertProducer{stop: make(chan struct{}), done: make(chan error, 1), topics: topics}
	go func() {
		value := bytes.Repeat([]byte("cutout"), 1000)
		for {
			select {
			case <-p.stop:
				p.done <- nil
				return
			case <-time.After(20 * time.Millisecond):
			}
			var recs []*kgo.Record
			for range 20 {
				i := p.n
				p.n++
				r := &kgo.Record{Topic: topics[i%len(topics)], Value: append([]byte(strconv.Itoa(i)), value...),
					Headers: []kgo.RecordHeader{{Key: "candid", Value: []byte(strconv.Itoa(i))}}}
				if i%10 != 0 {
					r.Key = fmt.Appendf(nil, "ZTF26a%06d", i)
				}
				recs = append(recs, r)
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				p.done <- err
				return
			}
		}
	}()
	return p
}

// halt stops the producer and returns how many records it wrote.
func (p *alertProducer) halt(t *testing.T) int {
	close(p.stop)
	if err := <-p.done; err != nil {
		t.Fatalf("producer: %v", err)
	}
	return p.n
}

// recordsIn returns the records of topic by partition once it holds want,
// within 30 s.
func recordsIn(t *testing.T, addr, topic string, want int64) map[int32][]*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitRecords(t, ctx, addr, topic, want)
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(100*time.Millisecond))
	out := map[int32][]*kgo.Record{}
	for n := int64(0); n < want; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d of %d records", topic, n, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], r)
			n++
		})
	}
	return out
}

// waitRecords waits until topic holds at least want records.
func waitRecords(t *testing.T, ctx context.Context, addr, topic string, want int64) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, addr, kgo.MetadataMinAge(100*time.Millisecond)))
	for {
		var n int64
		if ends, err := adm.ListEndOffsets(ctx, topic); err == nil {
			ends.Each(func(o kadm.ListedOffset) { n += max(o.Offset, 0) })
		}
		if n >= want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s at %s holds %d records, want %d", topic, addr, n, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestMirrorExactlyOnce runs `ztfbroker mirror` between two ztfbroker
// processes while a producer writes to the upstream, across a SIGKILL of
// the mirror and a SIGKILL of the destination (both started again), and a
// topic created midway: every upstream record is in the destination once,
// in order, partition i in partition i, with its key (null kept), value,
// timestamp and headers, plus the header naming its upstream offset.
func TestMirrorExactlyOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	up, down := startBroker(t, ""), startBroker(t, "")
	const a, b = "ztf_20260101_programid1", "ztf_20260101_programid2"
	adm := kadm.NewClient(newClient(t, up.Kafka))
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, a); err != nil {
		t.Fatal(err)
	}
	prod := produceAlerts(t, up.Kafka, a)
	mr := startMirror(t, "kafka://"+up.Kafka+"/ztf_*_programid?", "kafka://"+down.Kafka+"/")
	waitRecords(t, ctx, down.Kafka, a, 200)
	mr.kill()
	mr.start()
	waitRecords(t, ctx, down.Kafka, a, 400)
	n := prod.halt(t)

	// A new night's topic, while the destination is killed and back.
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, b); err != nil {
		t.Fatal(err)
	}
	prod = produceAlerts(t, up.Kafka, a, b)
	down.Kill()
	time.Sleep(300 * time.Millisecond)
	down.Restart()
	waitRecords(t, ctx, down.Kafka, b, 100)
	m := prod.halt(t)

	total := map[string]int64{a: int64(n + (m+1)/2), b: int64(m / 2)}
	for _, topic := range []string{a, b} {
		sameMirrored(t, up.Kafka, down.Kafka, topic, total[topic], mr)
	}
	// The mirror's own account: every record, no lag.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(mirrorMetrics(t, mr), "ztfbroker_mirror_lag_records 0") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if out := mirrorMetrics(t, mr); !strings.Contains(out, "ztfbroker_mirror_lag_records 0") || !strings.Contains(out, "ztfbroker_mirror_latency_seconds_count") {
		t.Errorf("mirror metrics:\n%s", out)
	}
}

func mirrorMetrics(t *testing.T, m *mirrorProc) string {
	t.Helper()
	resp, err := http.Get("http://" + m.metrics + "/metrics")
	if err != nil {
		t.Fatalf("mirror metrics: %v\n%s", err, m.logs())
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestServeMirrors: serve with a mirror: section copies the upstream's
// matching topics into itself (over its in-process login) and picks up a
// topic created while it runs. The upstream serves SASL_SSL only to known
// users (loopback superuser off): the mirror logs in with SCRAM-SHA-512 over
// TLS, trusting the upstream's CA.
func TestServeMirrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	up := startUsersBroker(t)
	producer := up.client(t, "operator", kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.AllowAutoTopicCreation())
	prod := produceAlertsWith(t, producer, "ztf_20260102_programid1")
	down := startBroker(t, "", "--set", "mirror.enabled=true", "--set", "mirror.bootstrap="+up.sasl,
		"--set", "mirror.topics=ztf_*", "--set", "mirror.refresh.ms=200", "--set", "mirror.tls.ca="+up.ca.pem,
		"--set", "mirror.sasl.mechanism=SCRAM-SHA-512", "--set", "mirror.sasl.user=operator", "--set", "mirror.sasl.password="+up.pw["operator"])
	waitRecords(t, ctx, down.Kafka, "ztf_20260102_programid1", 100)
	n := prod.halt(t)
	prod = produceAlertsWith(t, producer, "ztf_20260103_programid1")
	waitRecords(t, ctx, down.Kafka, "ztf_20260103_programid1", 40)
	m := prod.halt(t)
	recordsIn(t, down.Kafka, "ztf_20260102_programid1", int64(n))
	recordsIn(t, down.Kafka, "ztf_20260103_programid1", int64(m))
	if !down.waitLog(`"mirroring topic"`) {
		t.Errorf("serve's log does not say what it mirrors:\n%s", down.Logs())
	}
}

// sameMirrored checks that the destination's topic holds exactly the
// upstream's want records, partition by partition, in order: key (null
// kept), value, timestamp and headers, plus the header naming each one's
// upstream offset.
func sameMirrored(t *testing.T, upAddr, downAddr, topic string, want int64, mr *mirrorProc) {
	t.Helper()
	upr, downr := recordsIn(t, upAddr, topic, want), recordsIn(t, downAddr, topic, want)
	if len(downr) != len(upr) {
		t.Errorf("%s: %d partitions hold records downstream, %d upstream", topic, len(downr), len(upr))
	}
	for p, ur := range upr {
		dr := downr[p]
		if len(dr) != len(ur) {
			t.Fatalf("%s-%d: %d records upstream, %d downstream\nmirror log:\n%s", topic, p, len(ur), len(dr), mr.logs())
		}
		for i, u := range ur {
			d := dr[i]
			last := d.Headers[len(d.Headers)-1]
			switch {
			case last.Key != mirror.OffsetHeader || string(last.Value) != strconv.FormatInt(u.Offset, 10):
				t.Fatalf("%s-%d record %d: mirror header %s=%s, upstream offset %d", topic, p, i, last.Key, last.Value, u.Offset)
			case !bytes.Equal(u.Key, d.Key) || (u.Key == nil) != (d.Key == nil) || !bytes.Equal(u.Value, d.Value):
				t.Fatalf("%s-%d offset %d: key or value differs", topic, p, u.Offset)
			case !u.Timestamp.Equal(d.Timestamp):
				t.Fatalf("%s-%d offset %d: timestamp %v, downstream %v", topic, p, u.Offset, u.Timestamp, d.Timestamp)
			case !slices.EqualFunc(u.Headers, d.Headers[:len(d.Headers)-1], func(x, y kgo.RecordHeader) bool { return x.Key == y.Key && bytes.Equal(x.Value, y.Value) }):
				t.Fatalf("%s-%d offset %d: headers differ", topic, p, u.Offset)
			}
		}
	}
}
