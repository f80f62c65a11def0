package packager

import (
	"bytes"
	"context"
	"github.com/twmb/franz-go/pkg/kgo"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ztfbroker/ztfbroker/avrofile"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pebble's and franz-go's background goroutines end shortly after Close.
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble.(*tableCacheShard).releaseLoop"),
		goleak.IgnoreTopFunction("github.com/cockroachdb/pebble.(*DB).maybeScheduleCompactionPicker.func1"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// TestPackageRunSimulate is serve's path: Run on the configured simulation,
// an exposure every Interval, until the context ends.
func TestPackageRunSimulate(t *testing.T) {
	cfg := testConfig(t)
	cfg.Source.Kind = SourceSimulate
	cfg.Source.Simulate.Alerts = 10
	cfg.Source.Simulate.Interval = 200 * time.Millisecond
	// A fixed sky time and a short cadence keep every exposure in one
	// night whatever the hour the test runs (near midnight UTC the clock's
	// night would end after the first exposure).
	cfg.Source.Simulate.Start = nightStart
	cfg.Source.Simulate.Cadence = time.Minute
	c := newCluster(t, 1)
	p := newTestPackager(t, cfg, newProducer(t, c))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()
	topic := NightTopic(TimeJD(nightStart), 1)
	// At least two exposures of 10 alerts (the first comes at once), made
	// while Run goes on (under -race on a loaded machine, an exposure can
	// take longer to make than its interval).
	// The topic may not exist yet: look for it every 100 ms.
	consume(t, c.ListenAddrs(), "^"+topic+"$", 20, kgo.MetadataMinAge(100*time.Millisecond), kgo.MetadataMaxAge(100*time.Millisecond))
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
}

// TestPackageIngestFollow: with a poll interval the ingest source waits for
// READY and skips exposures already DONE after a restart.
func TestPackageIngestFollow(t *testing.T) {
	schema, err := LoadSchema()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sim, _ := NewSimulation(SimulateConfig{Alerts: 2, Start: nightStart}, nil)
	if err := WriteIngestExposure(dir, "e1", sim.Exposure(0).Detections, nil, nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "e1", IngestDone), nil, 0o644)
	in := NewIngest(dir, 20*time.Millisecond, nil, schema)
	go func() {
		time.Sleep(100 * time.Millisecond)
		WriteIngestExposure(dir, "e2", sim.Exposure(1).Detections, nil, nil)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	exp, err := in.Next(ctx)
	if err != nil || exp.ID != "e2" || len(exp.Detections) != 2 || len(exp.Rejects) != 0 {
		t.Fatalf("%v %+v", err, exp)
	}
}

// FuzzPackageSplitAlerts: replay reads container files from outside; any
// bytes must give alerts or an error, never a panic.
func FuzzPackageSplitAlerts(f *testing.F) {
	for _, p := range []string{"other-sources/fink-client/avro_multi_alerts_other.avro", "other-sources/boom/2695378462115010012.avro"} {
		b, err := os.ReadFile(filepath.Join(sampleDir(f), p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte("Obj\x01\x02"))
	schemas := avrofile.NewSchemas(0)
	f.Fuzz(func(t *testing.T, b []byte) {
		alerts, err := SplitAlerts(b, schemas)
		if err == nil && len(alerts) == 0 && len(b) > 0 {
			_ = alerts
		}
	})
}

// FuzzPackageCheckStamp: cutouts come from outside too.
func FuzzPackageCheckStamp(f *testing.F) {
	f.Add(MakeStamp(StampSpec{Noise: 1, FWHM: 2, Seed: 1, Kind: "sci"}))
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, b []byte) { _ = CheckStamp(b) })
}

type captureProducer struct {
	mu   sync.Mutex
	recs []*kgo.Record
}

func (c *captureProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
	promise(r, nil)
}

// TestPackageReplayBadFile: a file that is not a container is refused and
// kept in the reject folder; the good files still go out.
func TestPackageReplayBadFile(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(filepath.Join(sampleDir(t), "other-sources/boom/2695378462115010012.avro"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "a.avro"), []byte("not avro at all"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.avro"), good, 0o644)
	os.WriteFile(filepath.Join(dir, "c.avro"), good[:len(good)-100], 0o644)
	cfg := testConfig(t)
	prod := &captureProducer{}
	p := newTestPackager(t, cfg, prod)
	src, err := NewReplay([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RunSource(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if len(prod.recs) != 1 || !bytes.Equal(prod.recs[0].Value, good) || prod.recs[0].Topic != "ztf_20240519_programid1" {
		t.Fatalf("%d records, topic %s", len(prod.recs), prod.recs[0].Topic)
	}
	for _, f := range []string{"a.avro", "c.avro"} {
		reason, err := os.ReadFile(filepath.Join(cfg.RejectDir, safeName(filepath.Join(dir, f)), "-.reason"))
		if err != nil || !strings.Contains(string(reason), "candidate - field file: ") {
			t.Errorf("%s: reason %q %v", f, reason, err)
		}
		if _, err := os.Stat(filepath.Join(cfg.RejectDir, safeName(filepath.Join(dir, f)), f)); err != nil {
			t.Errorf("%s not kept: %v", f, err)
		}
	}
}
