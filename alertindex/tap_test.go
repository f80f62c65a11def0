package alertindex_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ztfbroker/ztfbroker/alertindex"
	"github.com/ztfbroker/ztfbroker/avrofile"
	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/packager"
	"github.com/ztfbroker/ztfbroker/protocol"
)

// tapStack is what serve runs for the index: a broker with its Kafka
// listener in this process, a packager producing simulated exposures to it
// (zstd batches), and the index's follower, fed by a Tap on the broker.
type tapStack struct {
	t     *testing.T
	dir   string
	b     *broker.Broker
	addr  string
	p     *packager.Packager
	sim   *packager.Simulation
	made  int // exposures packaged
	topic string
	idx   *alertindex.Index
	cfg   alertindex.Config
}

func newTapStack(t *testing.T, alerts int) *tapStack {
	t.Helper()
	s := &tapStack{t: t, dir: t.TempDir()}
	bc := broker.DefaultConfig()
	bc.DataDir = filepath.Join(s.dir, "data")
	var err error
	if s.b, err = broker.Open(bc, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	gc, err := broker.OpenGroupCoordinator(s.b, broker.DefaultGroupConfig(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	gc.SetClientInfo(protocol.ClientInfo)
	srv, err := protocol.NewServer(protocol.DefaultConfig(), s.b, gc, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		gc.Close()
		if err := s.b.Close(); err != nil {
			t.Error(err)
		}
	})

	prod, err := packager.NewKafkaProducer(packager.KafkaOptions{Bootstrap: []string{s.addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	pc := packager.DefaultConfig()
	pc.HistoryDir, pc.RejectDir = filepath.Join(s.dir, "history"), filepath.Join(s.dir, "rejects")
	if s.p, err = packager.New(pc, prod, nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.p.Close() })
	start := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	if s.sim, err = packager.NewSimulation(packager.SimulateConfig{Alerts: alerts, Start: start}, nil); err != nil {
		t.Fatal(err)
	}
	s.topic = packager.NightTopic(packager.TimeJD(start), 1)

	s.cfg = alertindex.DefaultConfig()
	s.cfg.Bootstrap, s.cfg.Dir, s.cfg.MetadataMaxAge = []string{s.addr}, filepath.Join(s.dir, "index"), time.Second
	if s.idx, err = alertindex.Open(s.cfg.Dir, 0, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.idx.Close() })
	return s
}

// exposure packages the next exposure.
func (s *tapStack) exposure() {
	s.t.Helper()
	if _, err := s.p.Package(context.Background(), s.sim.Exposure(s.made)); err != nil {
		s.t.Fatal(err)
	}
	s.made++
}

// follower is a running Follower and its metrics.
type follower struct {
	f    *alertindex.Follower
	tap  *alertindex.Tap
	reg  *prometheus.Registry
	stop func()
}

// follow starts a follower on the index, with a Tap of tapBytes installed
// on the broker (0: none).
func (s *tapStack) follow(tapBytes int64) *follower {
	s.t.Helper()
	if tapBytes == 0 {
		return s.followTap(nil)
	}
	cfg := s.cfg
	cfg.TapBytes = tapBytes
	tap, err := alertindex.NewTap(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.b.SetTap(tap)
	return s.followTap(tap)
}

// followTap starts a follower on the index reading from tap (nil: none).
func (s *tapStack) followTap(tap *alertindex.Tap) *follower {
	s.t.Helper()
	reg := prometheus.NewRegistry()
	f, err := alertindex.NewFollower(s.cfg, s.idx, nil, reg)
	if err != nil {
		s.t.Fatal(err)
	}
	fl := &follower{f: f, reg: reg, tap: tap}
	if tap != nil {
		f.UseTap(tap)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	fl.stop = func() {
		s.b.SetTap(nil)
		cancel()
		if err := <-done; err != nil {
			s.t.Error(err)
		}
		f.Close()
	}
	s.t.Cleanup(func() {
		if fl.stop != nil {
			fl.stop()
		}
	})
	return fl
}

func (fl *follower) halt() {
	fl.stop()
	fl.stop = nil
}

func (fl *follower) counter(name string) float64 {
	mfs, err := fl.reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			if c := mf.Metric[0].GetCounter(); c != nil {
				return c.GetValue()
			}
			return mf.Metric[0].GetGauge().GetValue()
		}
	}
	return 0
}

// waitIndexed waits until the group has committed the end of every
// partition of the topic, then checks that every alert of the topic is in
// the index once, at its place, and that nothing else is.
func (s *tapStack) waitIndexed(fl *follower) {
	s.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.addr))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, s.topic)
	if err != nil {
		s.t.Fatal(err)
	}
	var total int64
	parts := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		total += o.Offset
		parts[o.Partition] = kgo.NewOffset().At(0)
	})
	for {
		committed, err := adm.FetchOffsets(ctx, s.cfg.Group)
		behind := err != nil
		ends.Each(func(o kadm.ListedOffset) {
			if c, ok := committed.Lookup(o.Topic, o.Partition); !ok || c.At < o.Offset {
				behind = true
			}
		})
		if !behind {
			break
		}
		if ctx.Err() != nil {
			s.t.Fatalf("the index's group did not commit the end of %s within 60 s: %v", s.topic, committed)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every alert at its place, read back by a consumer of its own.
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{s.topic: parts})
	dec := alertindex.Decoder{Schemas: avrofile.NewSchemas(0)}
	var read int64
	for read < total {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			s.t.Fatalf("read %d of %d alerts back", read, total)
		}
		for _, r := range fs.Records() {
			read++
			sum, err := dec.Decode(r.Value)
			if err != nil {
				s.t.Fatal(err)
			}
			got, err := s.idx.Get(sum.Candid)
			if err != nil || got.Topic != r.Topic || got.Partition != r.Partition || got.Offset != r.Offset ||
				got.ObjectID != sum.ObjectID || got.RA != sum.RA || got.MagPSF != sum.MagPSF {
				s.t.Fatalf("alert %d at %s/%d@%d: index has %+v, %v", sum.Candid, r.Topic, r.Partition, r.Offset, got, err)
			}
		}
	}
	if n := s.idx.Count(); n != total {
		s.t.Fatalf("index holds %d alerts, the topic %d", n, total)
	}
	if n := fl.counter("ztfbroker_portal_alerts_undecodable_total"); n != 0 {
		s.t.Fatalf("%v alerts did not decode", n)
	}
}

// TestTapFeedsIndex: with a Tap, the exposures after the first are read
// from it, not fetched, and every alert is indexed once at its place.
func TestTapFeedsIndex(t *testing.T) {
	s := newTapStack(t, 100)
	fl := s.follow(64 << 20)
	s.exposure()
	s.waitIndexed(fl)
	first := fl.counter("ztfbroker_portal_tap_records_total")
	for range 3 {
		s.exposure()
	}
	s.waitIndexed(fl)
	tapped := fl.counter("ztfbroker_portal_tap_records_total") - first
	t.Logf("tapped %v of the last 300, %v before; fallbacks %v, dropped %v", tapped, first,
		fl.counter("ztfbroker_portal_tap_fallbacks_total"), fl.counter("ztfbroker_portal_tap_dropped"))
	if tapped != 300 {
		t.Fatalf("%v of the 300 alerts after the first exposure came from the tap", tapped)
	}
}

// TestTapRestartAndLag: an index restarted (its offsets committed, a new
// Tap that holds nothing of what was produced meanwhile) and an index that
// starts late, behind a Tap that holds the newest alerts, fetch what the
// Tap does not continue and end with every alert indexed once.
func TestTapRestartAndLag(t *testing.T) {
	s := newTapStack(t, 60)
	fl := s.follow(64 << 20)
	s.exposure()
	s.exposure()
	s.waitIndexed(fl)
	fl.halt()
	s.exposure() // nobody follows
	fl = s.follow(64 << 20)
	s.exposure()
	s.waitIndexed(fl)
	before := fl.counter("ztfbroker_portal_tap_records_total")
	s.exposure()
	s.waitIndexed(fl)
	if n := fl.counter("ztfbroker_portal_tap_records_total") - before; n != 60 {
		t.Errorf("after the restart, caught up, %v alerts of the next 60 came from the tap", n)
	}
	fl.halt()

	// Late: the Tap fills (and overflows) while the index is stopped;
	// the follower starts behind it.
	tap, err := alertindex.NewTap(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.b.SetTap(tap)
	s.exposure()
	s.exposure()
	fl = s.followTap(tap)
	s.exposure()
	s.waitIndexed(fl)
	// Caught up, it reads the next exposure from the tap.
	before = fl.counter("ztfbroker_portal_tap_records_total")
	s.exposure()
	s.waitIndexed(fl)
	if n := fl.counter("ztfbroker_portal_tap_records_total") - before; n != 60 {
		t.Errorf("once caught up, the follower read %v alerts of 60 from the tap", n)
	}
}

// TestTapOverflow: a Tap too small for an exposure drops what does not
// fit, never blocking the broker, and the follower fetches what it dropped:
// nothing is lost.
func TestTapOverflow(t *testing.T) {
	s := newTapStack(t, 150)
	fl := s.follow(1 << 20) // ~17 whole alerts, ~35 prefixes
	s.exposure()
	s.waitIndexed(fl)
	for range 2 {
		s.exposure()
	}
	s.waitIndexed(fl)
	dropped, fallbacks := fl.counter("ztfbroker_portal_tap_dropped"), fl.counter("ztfbroker_portal_tap_fallbacks_total")
	t.Logf("dropped %v, fallbacks %v, tapped %v", dropped, fallbacks, fl.counter("ztfbroker_portal_tap_records_total"))
	if dropped == 0 || fallbacks == 0 || dropped != float64(fl.tap.Dropped()) {
		t.Fatalf("a 1 MiB tap dropped %v alerts of 300 (%d), and the follower fell back %v times", dropped, fl.tap.Dropped(), fallbacks)
	}
}
