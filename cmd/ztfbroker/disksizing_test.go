package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDefaultsNeverFillTheDisk writes three nights, half as much again as
// a 64 MiB disk, into a broker with the default log.retention.total.bytes
// (0: derived from the file system): every record is acknowledged (writes
// are never refused for space), the oldest night loses its oldest records
// and tonight none, and the deletions are counted and logged.
func TestDefaultsNeverFillTheDisk(t *testing.T) {
	disk := smallDisk(t, 64<<20)
	b := startBroker(t, filepath.Join(disk, "data"),
		"--set", "log.segment.bytes=1048576", "--set", "log.retention.check.interval.ms=250")
	cl := newClient(t, b.Kafka, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	adm := kadm.NewClient(newClient(t, b.Kafka))
	nights := []string{"ztf_20180725_programid1", "ztf_20180726_programid1", "ztf_20180727_programid1"}
	value := make([]byte, 40<<10) // a 40 kB alert, as incompressible as cutouts
	rand.Read(value)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const perNight = 32 << 20
	acked := map[string]int64{}
	for _, night := range nights {
		for sent := 0; sent < perNight; {
			// 1.2 MiB, then a pause: about 10 MiB/s, which a retention
			// check every 0.25 s keeps under the derived bound.
			var rs []*kgo.Record
			for range 30 {
				rs = append(rs, &kgo.Record{Topic: night, Value: value})
				sent += len(value)
			}
			if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
				t.Fatalf("%s: produce refused after %d records with the default disk bounds: %v\n%s", night, acked[night], err, b.Logs())
			}
			acked[night] += int64(len(rs))
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(time.Second) // one more retention check

	if got := metric(t, b, "ztfbroker_log_dir_writable"); got != "1" {
		t.Errorf("ztfbroker_log_dir_writable %s, want 1: the disk reached the free-space mark", got)
	}
	deleted, _ := strconv.ParseFloat(metric(t, b, `ztfbroker_log_retention_deleted_bytes_total{reason="total_bytes"}`), 64)
	if deleted < perNight/2 {
		t.Errorf("ztfbroker_log_retention_deleted_bytes_total{reason=\"total_bytes\"} = %v, want at least a night's %d", deleted, perNight)
	}
	size, _ := strconv.ParseFloat(metric(t, b, "ztfbroker_log_dir_size_bytes"), 64)
	bound, _ := strconv.ParseFloat(metric(t, b, "ztfbroker_log_retention_total_bytes"), 64)
	free, _ := strconv.ParseFloat(metric(t, b, "ztfbroker_log_dir_free_bytes"), 64)
	t.Logf("64 MiB disk, %d MiB written: logs %.1f MiB, bound %.1f MiB, free %.1f MiB, deleted %.1f MiB",
		3*perNight>>20, size/(1<<20), bound/(1<<20), free/(1<<20), deleted/(1<<20))
	if bound <= 0 || bound > 64<<20 {
		t.Errorf("ztfbroker_log_retention_total_bytes %v: want the derived bound, under the disk's size", bound)
	}

	starts, err := adm.ListStartOffsets(ctx, nights...)
	if err != nil {
		t.Fatal(err)
	}
	for i, night := range nights {
		o, _ := starts.Lookup(night, 0)
		switch {
		case i == 0 && o.Offset == 0:
			t.Errorf("the oldest night %s kept its first record while the disk overflowed", night)
		case i == len(nights)-1 && o.Offset != 0:
			t.Errorf("tonight's %s lost records (log start %d) while older nights had some", night, o.Offset)
		}
		t.Logf("%s: log start offset %d of %d", night, o.Offset, acked[night])
	}
	if !strings.Contains(b.Logs(), `"reason":"log.retention.total.bytes"`) {
		t.Errorf("no log line for a deletion by log.retention.total.bytes:\n%s", lastLines(b.Logs(), 20))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n") + fmt.Sprintf("\n(%d lines)", len(lines))
}
