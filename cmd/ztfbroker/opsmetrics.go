package main

import (
	"context"
	"crypto/x509"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztfbroker/ztfbroker/archive"
	"github.com/ztfbroker/ztfbroker/broker"
	"github.com/ztfbroker/ztfbroker/protocol"
)

// opsCollector exports what an operator's alert rules and dashboard need
// beside the packages' own metrics (configs/prometheus, configs/grafana):
// each partition's offsets (alerts per night), the memory budget the
// process is held to, the certificates' expiry and the archive's state,
// all read at scrape time.
type opsCollector struct {
	b       *broker.Broker
	budget  int64
	certs   []namedCertificate
	archive archive.Config // Dir, Programs, Lookback, Idle; Enabled false: no archive series
	now     func() time.Time
}

// namedCertificate is a listener's certificate: a Kafka listener's name, or http.
type namedCertificate struct {
	listener string
	cert     *protocol.Certificate
}

var (
	descLogStart = prometheus.NewDesc("ztfbroker_log_start_offset",
		"A partition's log start offset (its first record still stored).", []string{"topic", "partition"}, nil)
	descLogEnd = prometheus.NewDesc("ztfbroker_log_end_offset",
		"A partition's high watermark (the offset its next record gets); end minus start is the records stored.", []string{"topic", "partition"}, nil)
	descBudget = prometheus.NewDesc("ztfbroker_memory_budget_bytes",
		"memory.budget.bytes: what the whole process may hold (compare process_resident_memory_bytes).", nil, nil)
	descCertExpiry = prometheus.NewDesc("ztfbroker_tls_certificate_expiry_timestamp_seconds",
		"When the certificate a listener serves now expires (Unix time; reloaded on SIGHUP).", []string{"listener"}, nil)
	descArchiveLast = prometheus.NewDesc("ztfbroker_archive_last_build_timestamp_seconds",
		"When the newest night's archive of a program was finished (its tarball's modification time; absent before the first).", []string{"program"}, nil)
	descArchiveMissing = prometheus.NewDesc("ztfbroker_archive_missing_nights",
		"Ended nights within archive.lookback.nights, past archive.idle.ms, whose topic holds alerts and that have no archive.", []string{"program"}, nil)
)

func (c *opsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLogStart, descLogEnd, descBudget, descCertExpiry, descArchiveLast, descArchiveMissing} {
		ch <- d
	}
}

func (c *opsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx := context.Background()
	ch <- prometheus.MustNewConstMetric(descBudget, prometheus.GaugeValue, float64(c.budget))
	for _, nc := range c.certs {
		if at, ok := certificateExpiry(nc.cert); ok {
			ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(at.Unix()), nc.listener)
		}
	}
	stored := map[string]bool{} // topics holding records
	for _, topic := range c.b.TopicNames(ctx) {
		_, parts, err := c.b.Topic(ctx, topic, false)
		if err != nil {
			continue
		}
		for i := range parts {
			start, end, err := c.b.Offsets(ctx, topic, i)
			if err != nil {
				continue // offline: ztfbroker_partitions_offline counts it
			}
			idx := strconv.Itoa(int(i))
			ch <- prometheus.MustNewConstMetric(descLogStart, prometheus.GaugeValue, float64(start), topic, idx)
			ch <- prometheus.MustNewConstMetric(descLogEnd, prometheus.GaugeValue, float64(end), topic, idx)
			if end > start {
				stored[topic] = true
			}
		}
	}
	if !c.archive.Enabled {
		return
	}
	now := c.now()
	today := archive.NightOf(now)
	for _, p := range c.archive.Programs {
		prog := archive.Program(p)
		label := strconv.Itoa(p)
		entries, err := archive.List(c.archive.Dir, prog)
		if err != nil {
			continue
		}
		built := map[string]bool{}
		for _, e := range entries {
			built[e.Night] = true
		}
		if len(entries) > 0 {
			ch <- prometheus.MustNewConstMetric(descArchiveLast, prometheus.GaugeValue, float64(entries[0].Modified.Unix()), label)
		}
		missing := 0
		for d := 1; d <= c.archive.Lookback; d++ {
			n := today.AddDays(-d)
			if stored[archive.Topic(n, prog)] && !built[n.String()] && !now.Before(n.End().Add(c.archive.Idle)) {
				missing++
			}
		}
		ch <- prometheus.MustNewConstMetric(descArchiveMissing, prometheus.GaugeValue, float64(missing), label)
	}
}

// certificateExpiry is the NotAfter of the certificate c serves now.
func certificateExpiry(c *protocol.Certificate) (time.Time, bool) {
	kp, err := c.TLSConfig().GetCertificate(nil)
	if err != nil || kp == nil {
		return time.Time{}, false
	}
	leaf := kp.Leaf
	if leaf == nil && len(kp.Certificate) > 0 {
		if leaf, err = x509.ParseCertificate(kp.Certificate[0]); err != nil {
			return time.Time{}, false
		}
	}
	if leaf == nil {
		return time.Time{}, false
	}
	return leaf.NotAfter, true
}
