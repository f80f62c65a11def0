package filter

import "github.com/prometheus/client_golang/prometheus"

// metrics are the runner's, per filter where they can be.
type metrics struct {
	evaluated, matched, errors *prometheus.CounterVec
	seconds                    *prometheus.CounterVec
	paused                     *prometheus.GaugeVec
	lag                        prometheus.Gauge
	undecodable, skipped       prometheus.Counter
}

// filterMetrics are one filter's series.
type filterMetrics struct {
	evaluated, matched, errors, seconds prometheus.Counter
	paused                              prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	per := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ztfbroker_filter_" + name, Help: help}, []string{"filter"})
	}
	m := &metrics{
		evaluated: per("alerts_evaluated_total", "Alerts a filter evaluated."),
		matched:   per("matches_total", "Alerts a filter selected (produced to its topic)."),
		errors:    per("errors_total", "Evaluations that failed (the alert is skipped for that filter)."),
		seconds:   per("evaluation_seconds_total", "Time spent evaluating a filter's expression."),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ztfbroker_filter_paused",
			Help: "1 while a filter is paused (see ztfbroker filter list for why)."}, []string{"filter"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ztfbroker_filter_lag_records",
			Help: "Alerts behind the high watermarks of the source partitions this runner reads, as of its last fetch."}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztfbroker_filter_undecodable_total",
			Help: "Records of source topics that are not alerts a filter can read (skipped)."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "ztfbroker_filter_recovered_skips_total",
			Help: "Evaluations skipped after a restart because the match was already in the filter topic."}),
	}
	if reg != nil {
		reg.MustRegister(m.evaluated, m.matched, m.errors, m.seconds, m.paused, m.lag, m.undecodable, m.skipped)
	}
	return m
}

func (m *metrics) of(name string) filterMetrics {
	return filterMetrics{evaluated: m.evaluated.WithLabelValues(name), matched: m.matched.WithLabelValues(name),
		errors: m.errors.WithLabelValues(name), seconds: m.seconds.WithLabelValues(name), paused: m.paused.WithLabelValues(name)}
}

// forget drops a removed filter's series.
func (m *metrics) forget(name string) {
	for _, v := range []*prometheus.CounterVec{m.evaluated, m.matched, m.errors, m.seconds} {
		v.DeleteLabelValues(name)
	}
	m.paused.DeleteLabelValues(name)
}
