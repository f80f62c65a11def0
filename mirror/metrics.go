package mirror

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the mirror's Prometheus series.
type metrics struct {
	records    prometheus.Counter
	bytes      prometheus.Counter
	restarts   prometheus.Counter
	lag        prometheus.Gauge
	partitions prometheus.Gauge
	latency    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztfbroker_mirror_records_total",
			Help: "Records copied from the upstream and acknowledged by the destination."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztfbroker_mirror_bytes_total",
			Help: "Key and value bytes of the records copied."}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztfbroker_mirror_restarts_total",
			Help: "Sessions ended by a failure and started again from the destination's positions."}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ztfbroker_mirror_lag_records",
			Help: "Records of the upstream not yet copied, over every mirrored partition (as of the last fetch)."}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ztfbroker_mirror_partitions",
			Help: "Upstream partitions being mirrored."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ztfbroker_mirror_latency_seconds",
			Help:    "From a record's upstream timestamp to its acknowledgement by the destination.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.records, m.bytes, m.restarts, m.lag, m.partitions, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("mirror: metrics: %w", err)
		}
	}
	return m, nil
}
