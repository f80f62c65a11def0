package broker

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// collector reads every partition's size and segment count at scrape time,
// so that no gauge has to be kept up to date on the write path and deleted
// topics simply stop being reported.
type collector struct{ b *Broker }

var (
	descLogSize = prometheus.NewDesc("ztfbroker_log_size_bytes",
		"Bytes of a partition's log on disk (every segment).", []string{"topic", "partition"}, nil)
	descSegments = prometheus.NewDesc("ztfbroker_log_segments",
		"Segment files of a partition's log.", []string{"topic", "partition"}, nil)
	descTopics = prometheus.NewDesc("ztfbroker_topics",
		"Topics on this broker.", nil, nil)
	descPartitions = prometheus.NewDesc("ztfbroker_partitions",
		"Partitions on this broker.", nil, nil)
	descReadOnly = prometheus.NewDesc("ztfbroker_partitions_read_only",
		"Partitions a failed write or fsync made read-only (they refuse produce until reopened once the disk takes writes).", nil, nil)
	descDirFree = prometheus.NewDesc("ztfbroker_log_dir_free_bytes",
		"Free bytes of the data directory's file system (statfs, at most a second old).", nil, nil)
	descDirWritable = prometheus.NewDesc("ztfbroker_log_dir_writable",
		"1 while produce, topic creation and offset commits are taken; 0 while free space is under log.dir.free.min.bytes (or the metadata store failed a write).", nil, nil)
	descDirSize = prometheus.NewDesc("ztfbroker_log_dir_size_bytes",
		"Bytes of every partition log together (log and index files), what log.retention.total.bytes bounds.", nil, nil)
	descRetentionTotal = prometheus.NewDesc("ztfbroker_log_retention_total_bytes",
		"The bound on ztfbroker_log_dir_size_bytes now: log.retention.total.bytes, or when it is 0 nine tenths of the space open to "+
			"the logs (their bytes plus the free space) less the log.dir.free.min.bytes mark; -1: no bound.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLogSize
	ch <- descSegments
	ch <- descTopics
	ch <- descPartitions
	ch <- descReadOnly
	ch <- descDirFree
	ch <- descDirWritable
	ch <- descDirSize
	ch <- descRetentionTotal
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.b.mu.RLock()
	topics := len(c.b.topics)
	c.b.mu.RUnlock()
	parts := c.b.allPartitions()
	ch <- prometheus.MustNewConstMetric(descTopics, prometheus.GaugeValue, float64(topics))
	ch <- prometheus.MustNewConstMetric(descPartitions, prometheus.GaugeValue, float64(len(parts)))
	sp := c.b.space()
	free, _, _ := sp.check()
	writable := 0.0
	if sp.writable() {
		writable = 1
	}
	ch <- prometheus.MustNewConstMetric(descDirFree, prometheus.GaugeValue, float64(free))
	ch <- prometheus.MustNewConstMetric(descDirWritable, prometheus.GaugeValue, writable)
	var used int64
	for _, p := range parts {
		for _, s := range p.log.SegmentInfos() {
			used += s.Bytes
		}
	}
	ch <- prometheus.MustNewConstMetric(descDirSize, prometheus.GaugeValue, float64(used))
	readOnly := 0
	for _, p := range parts {
		if p.log.Err() != nil {
			readOnly++
		}
	}
	ch <- prometheus.MustNewConstMetric(descReadOnly, prometheus.GaugeValue, float64(readOnly))
	ch <- prometheus.MustNewConstMetric(descRetentionTotal, prometheus.GaugeValue, float64(c.b.totalBound(used)))
	for _, p := range parts {
		idx := strconv.Itoa(int(p.index))
		ch <- prometheus.MustNewConstMetric(descLogSize, prometheus.GaugeValue, float64(p.log.Size()), p.topic, idx)
		ch <- prometheus.MustNewConstMetric(descSegments, prometheus.GaugeValue, float64(p.log.Segments()), p.topic, idx)
	}
}

// registerMetrics adds cs to reg, all or none; a nil reg exports nothing.
// A name already registered, as by a second instance on one registry, is
// an error, never a panic, and the old collector is not adopted: it would
// report the other instance. This function is repeated word for word in
// every package with metrics (log, broker, protocol, packager, archive).
func registerMetrics(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, added := range cs[:i] {
				reg.Unregister(added)
			}
			return err
		}
	}
	return nil
}
