package broker

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ztfbroker/ztfbroker/log"
)

// TestRetentionTotalBytes fills three nights' topics of two partitions each
// on disk past a small log.retention.total.bytes and checks that one
// retention pass deletes the oldest sealed segments first, over every topic,
// until the files on disk fit; that no active segment goes; and that the
// deletions are counted and logged.
func TestRetentionTotalBytes(t *testing.T) {
	const bound = 8 << 20
	e := newEnv(t, func(c *Config) {
		c.RetentionTotalBytes = bound
		c.Topic.SegmentBytes = 1 << 20
	})
	b := e.open()
	nights := []string{"ztf_20180725_programid1", "ztf_20180726_programid1", "ztf_20180727_programid1"}
	for _, night := range nights {
		if err := b.CreateTopic(context.Background(), night, 2, nil, false); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 40; i++ { // 40 x 64 KiB a partition: two sealed segments and an active one
			for p := int32(0); p < 2; p++ {
				produce(t, b, night, p, e.batch(1, 0, 64<<10))
			}
			e.clock.Advance(time.Minute)
		}
		e.clock.Advance(20 * time.Hour)
	}

	type seg struct {
		where string
		log.SegmentInfo
	}
	segments := func() map[string]seg {
		out := map[string]seg{}
		for _, night := range nights {
			for _, p := range b.partitionsOf(t, night) {
				for _, s := range p.log.SegmentInfos() {
					where := fmt.Sprintf("%s-%d@%d", night, p.index, s.Base)
					out[where] = seg{where, s}
				}
			}
		}
		return out
	}
	before := segments()
	var used int64
	for _, s := range before {
		used += s.Bytes
	}
	if used < bound+bound/2 {
		t.Fatalf("the nights hold %d bytes; the test wants well over the bound %d", used, bound)
	}
	// The files on disk, what the bound is for, are what the logs count
	// (but index entries still in memory).
	diskBefore := diskBytes(t, e.dir)
	if diskBefore < used-used/100 || diskBefore > used {
		t.Fatalf("%d bytes of segment files on disk, the logs say %d", diskBefore, used)
	}

	b.EnforceRetention()

	after := segments()
	var deleted []seg
	var deletedBytes int64
	for where, s := range before {
		if _, ok := after[where]; !ok {
			deleted = append(deleted, s)
			deletedBytes += s.Bytes
		}
	}
	if len(deleted) == 0 {
		t.Fatal("nothing deleted")
	}
	var kept int64
	for _, s := range after {
		kept += s.Bytes
		if s.Active {
			continue
		}
		for _, d := range deleted {
			if d.MaxTimestamp > s.MaxTimestamp {
				t.Errorf("deleted %s (newest batch %d) before the older %s (%d)", d.where, d.MaxTimestamp, s.where, s.MaxTimestamp)
			}
		}
	}
	dayAgo := e.clock.Now().Add(-24 * time.Hour).UnixMilli()
	for where, s := range before {
		if s.Active && s.MaxTimestamp >= dayAgo {
			if a, ok := after[where]; !ok || !a.Active {
				t.Errorf("active segment %s deleted, its newest batch less than a day old", where)
			}
		}
	}
	if kept > bound {
		t.Errorf("logs hold %d bytes after retention, bound %d", kept, bound)
	}
	if got := diskBytes(t, e.dir); got > bound {
		t.Errorf("%d bytes of segment files on disk after retention, bound %d", got, bound)
	}
	// Oldest first: the first night has lost everything, its idle active
	// segments included, tonight (the third) nothing.
	for _, s := range after {
		if strings.HasPrefix(s.where, nights[0]) && s.Bytes > 0 {
			t.Errorf("%s kept while newer nights lost data", s.where)
		}
	}
	for where := range before {
		if _, ok := after[where]; !ok && strings.HasPrefix(where, nights[2]) {
			t.Errorf("tonight's %s deleted", where)
		}
	}

	// The count is what left the disk, but for the zeros preallocated
	// after an active segment, which its seal cut before the deletion.
	freed := diskBefore - diskBytes(t, e.dir)
	var sealed int64
	for _, d := range deleted {
		if d.Active {
			sealed++
		}
	}
	got := counted(t, b.retention.deletedBytes.WithLabelValues(reasonTotalBytes))
	if got > float64(freed+64<<10) || got < float64(freed-sealed*e.cfg.Topic.SegmentBytes) {
		t.Errorf("ztfbroker_log_retention_deleted_bytes_total{reason=total_bytes} = %v, %d bytes left the disk", got, freed)
	}
	if got := counted(t, b.retention.deletedSegments.WithLabelValues(reasonTotalBytes)); got != float64(len(deleted)) {
		t.Errorf("ztfbroker_log_retention_deleted_segments_total{reason=total_bytes} = %v, want %d", got, len(deleted))
	}
	logged := 0
	for _, l := range e.logs.FilterMessageSnippet("retention deleted segments").All() {
		if l.ContextMap()["reason"] == "log.retention.total.bytes" {
			logged += int(l.ContextMap()["segments"].(int64))
		}
	}
	if logged != len(deleted) {
		t.Errorf("%d segments logged as deleted for log.retention.total.bytes, %d deleted", logged, len(deleted))
	}
	if n := b.EnforceRetention(); n != 0 {
		t.Errorf("a second pass deleted %d segments under the bound", n)
	}
	t.Logf("%d of %d bytes deleted (%d segments) to fit %d; %d on disk after", deletedBytes, used, len(deleted), bound, diskBytes(t, e.dir))
}

// TestRetentionTotalBytesSparesActive: a bound the active segments alone
// exceed deletes every sealed segment, no active one, and warns once.
func TestRetentionTotalBytesSparesActive(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RetentionTotalBytes = 1
		c.Topic.SegmentBytes = 1 << 20
	})
	b := e.open()
	for _, night := range []string{"a", "b"} {
		if err := b.CreateTopic(context.Background(), night, 1, nil, false); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			produce(t, b, night, 0, e.batch(1, 0, 64<<10))
		}
		e.clock.Advance(time.Hour)
	}
	b.EnforceRetention()
	b.EnforceRetention()
	for _, night := range []string{"a", "b"} {
		p := b.partitionsOf(t, night)[0]
		segs := p.log.SegmentInfos()
		if len(segs) != 1 || !segs[0].Active || segs[0].Bytes == 0 {
			t.Errorf("%s: segments %+v, want its active one only", night, segs)
		}
		if got := fetchAll(t, b, night, 0, p.log.LogStartOffset()); len(got) == 0 {
			t.Errorf("%s: the active segment's batches are not served", night)
		}
	}
	if n := e.logs.FilterMessageSnippet("only active segments").Len(); n != 1 {
		t.Errorf("%d warnings that only active segments are left, want 1", n)
	}
	if e.logs.FilterMessageSnippet("less than a day old").Len() == 0 {
		t.Error("no warning that data less than a day old was deleted")
	}
}

// TestRetentionTotalBytesSealsIdleNight: a past night's partition whose
// last segment is still active (idle for two days, segment.ms not reached)
// loses it, sealed then deleted, before tonight loses anything sealed; the
// partition still takes writes.
func TestRetentionTotalBytesSealsIdleNight(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RetentionTotalBytes = 3 << 20
		c.Topic.SegmentBytes = 1 << 20
	})
	b := e.open()
	ctx := context.Background()
	for _, night := range []string{"old", "tonight"} {
		if err := b.CreateTopic(ctx, night, 1, nil, false); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 12; i++ { // 0.75 MiB, all in the active segment
		produce(t, b, "old", 0, e.batch(1, 0, 64<<10))
	}
	e.clock.Advance(48 * time.Hour)
	for i := 0; i < 40; i++ { // two sealed segments and an active one
		produce(t, b, "tonight", 0, e.batch(1, 0, 64<<10))
	}
	old, tonight := b.partitionsOf(t, "old")[0], b.partitionsOf(t, "tonight")[0]
	tonightBefore := tonight.log.SegmentInfos()
	if n := len(old.log.SegmentInfos()); n != 1 {
		t.Fatalf("the old night has %d segments, want its active one", n)
	}
	b.EnforceRetention()
	if segs := old.log.SegmentInfos(); len(segs) != 1 || segs[0].Bytes != 0 {
		t.Errorf("the idle night's segments after retention: %+v, want one empty active segment", segs)
	}
	if ls, hw := old.log.LogStartOffset(), old.log.HighWatermark(); ls != hw || hw != 12 {
		t.Errorf("the idle night: log start %d, high watermark %d; want 12, 12", ls, hw)
	}
	if got := tonight.log.SegmentInfos(); len(got) != len(tonightBefore) {
		t.Errorf("tonight lost segments (%d -> %d) though the idle night's sufficed", len(tonightBefore), len(got))
	}
	if base := produce(t, b, "old", 0, e.batch(1, 0, 100)); base != 12 {
		t.Errorf("a write after the idle segment went got offset %d, want 12", base)
	}
}

// TestRetentionCountsByReason: retention.ms and retention.bytes deletions
// are counted under their own reasons.
func TestRetentionCountsByReason(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Topic.SegmentBytes = 1 << 20 })
	b := e.open()
	s := func(v string) *string { return &v }
	ctx := context.Background()
	if err := b.CreateTopic(ctx, "old", 1, map[string]*string{"retention.ms": s("3600000")}, false); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateTopic(ctx, "big", 1, map[string]*string{"retention.bytes": s("1048576"), "retention.ms": s("-1")}, false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		produce(t, b, "old", 0, e.batch(1, 0, 64<<10))
		produce(t, b, "big", 0, e.batch(1, 0, 64<<10))
	}
	e.clock.Advance(2 * time.Hour)
	b.EnforceRetention()
	for _, reason := range []string{reasonTime, reasonSize} {
		if got := counted(t, b.retention.deletedSegments.WithLabelValues(reason)); got < 1 {
			t.Errorf("ztfbroker_log_retention_deleted_segments_total{reason=%q} = %v, want >= 1", reason, got)
		}
		if got := counted(t, b.retention.deletedBytes.WithLabelValues(reason)); got < 512<<10 {
			t.Errorf("ztfbroker_log_retention_deleted_bytes_total{reason=%q} = %v, want a segment's", reason, got)
		}
	}
	if got := counted(t, b.retention.deletedSegments.WithLabelValues(reasonTotalBytes)); got != 0 {
		t.Errorf("total_bytes deleted %v segments on a mostly empty disk", got)
	}
}

func TestDerivedTotalBytes(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		name             string
		used, free, mark int64
		want             int64
	}{
		{"empty 100 GiB disk", 0, 100 * gib, gib, 89 * gib},
		{"the logs grow into the free space, the bound stays", 40 * gib, 60 * gib, gib, 89 * gib},
		{"others take space: the logs shrink", 40 * gib, 20 * gib, gib, 53 * gib},
		{"no mark (log.dir.free.min.bytes -1)", 0, 100 * gib, 0, 90 * gib},
		{"full of others' files", 0, gib, gib, 0},
		{"statfs failed", 10 * gib, -1, gib, 8 * gib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := derivedTotalBytes(tc.used, tc.free, tc.mark); got != tc.want {
				t.Errorf("derivedTotalBytes = %d GiB, want %d GiB", got/gib, tc.want/gib)
			}
		})
	}
}

// TestRetentionTotalBytesMetrics: the logs' size and the bound in effect
// are exported.
func TestRetentionTotalBytesMetrics(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RetentionTotalBytes = 123 << 20 })
	b := e.open()
	produce(t, b, mustTopic(t, b, "m"), 0, e.batch(2, 1, 100))
	found := metricSums(t, e.reg)
	if found["ztfbroker_log_dir_size_bytes"] <= 0 || found["ztfbroker_log_retention_total_bytes"] != 123<<20 {
		t.Errorf("metrics %v", found)
	}
	if _, ok := found["ztfbroker_log_retention_deleted_bytes_total"]; !ok {
		t.Errorf("ztfbroker_log_retention_deleted_bytes_total not exported: %v", found)
	}
}

// diskBytes is the size of every segment's files under dir, as on disk.
func diskBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(path) {
		case ".log", ".index", ".timeindex", ".deleted":
			if strings.Contains(path, "__consumer_offsets") {
				return nil
			}
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func counted(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// BenchmarkTotalBytesCheck is the 10-second check of a derived bound that
// finds the logs under it: every partition's segment sizes and one statfs.
// 50-62 us for 100 partitions, 0.35-0.87 ms for 1,000 (2 shared EPYC cores).
func BenchmarkTotalBytesCheck(b *testing.B) {
	for _, parts := range []int32{100, 1000} {
		// One broker for all of b.Run's rounds: opening and closing
		// 1,000 partitions takes seconds.
		cfg := DefaultConfig()
		cfg.DataDir = b.TempDir()
		cfg.RetentionCheckInterval = time.Hour
		br, err := Open(cfg, nil, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := br.CreateTopic(context.Background(), "night", parts, nil, false); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("partitions=%d", parts), func(b *testing.B) {
			for range b.N {
				if n := br.enforceTotalBytes(); n != 0 {
					b.Fatalf("deleted %d segments", n)
				}
			}
		})
		br.Close()
	}
}
