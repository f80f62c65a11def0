package packager

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	alerts   prometheus.Counter
	bytes    prometheus.Counter
	failed   prometheus.Counter
	rejected *prometheus.CounterVec
	latency  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		alerts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztfbroker_packager_alerts_total",
			Help: "Alerts packaged and acknowledged; its rate is alerts packaged per second.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztfbroker_packager_alert_bytes_total",
			Help: "Bytes of acknowledged alert messages.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztfbroker_packager_produce_failures_total",
			Help: "Alerts the producer could not deliver.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztfbroker_packager_rejected_total",
			Help: "Inputs refused and written to the reject folder, by field.",
		}, []string{"field"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ztfbroker_packager_exposure_latency_seconds",
			Help:    "Time from an exposure's arrival to the acknowledgement of its last alert.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 4, 6, 10, 20, 30, 60, 120},
		}),
	}
	if err := registerMetrics(reg, m.alerts, m.bytes, m.failed, m.rejected, m.latency); err != nil {
		return nil, fmt.Errorf("packager: register metrics: %w", err)
	}
	return m, nil
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
