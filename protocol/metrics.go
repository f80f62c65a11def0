package protocol

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the listener's Prometheus series. With a nil registerer they
// are still updated, just never exported.
type metrics struct {
	requests        *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	connsOpen       prometheus.Gauge
	connsTotal      prometheus.Counter
	clientErrors    *prometheus.CounterVec
	bytesRead       prometheus.Counter
	bytesWritten    prometheus.Counter
	sendfileBytes   prometheus.Counter
	topicBytesIn    *prometheus.CounterVec
	topicBytesOut   *prometheus.CounterVec
	topicRecordsIn  *prometheus.CounterVec
	topicRecordsOut *prometheus.CounterVec
	// users are the per-user series and quotas the client quotas measured
	// over the same bytes (quota.go).
	users  *userMetrics
	quotas *quotas
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "ztfbroker", "kafka"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "requests_total", Help: "Requests decoded, per API key."}, []string{"api"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "request_duration_seconds", Help: "Time from a request read to its response written, per API key.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"api"}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "connections_open", Help: "Client connections open."}),
		connsTotal: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "connections_total", Help: "Client connections accepted."}),
		clientErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "client_errors_total", Help: "Protocol errors by clients, by reason."}, []string{"reason"}),
		bytesRead: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "network_read_bytes_total", Help: "Request bytes read, framing included."}),
		bytesWritten: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "network_written_bytes_total", Help: "Response bytes written, framing included."}),
		sendfileBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "sendfile_bytes_total", Help: "Fetched record bytes sent from segment files to sockets with sendfile, never copied through the broker (part of network_written_bytes_total)."}),
		topicBytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "topic_bytes_in_total", Help: "Record batch bytes produced, per topic."}, []string{"topic"}),
		topicBytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "topic_bytes_out_total", Help: "Record batch bytes fetched, per topic."}, []string{"topic"}),
		topicRecordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "topic_records_in_total", Help: "Records produced, per topic (from batch headers)."}, []string{"topic"}),
		topicRecordsOut: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "topic_records_out_total", Help: "Records fetched, per topic (from batch headers)."}, []string{"topic"}),
		users:  newUserMetrics(),
		quotas: newQuotas(),
	}
	if err := registerMetrics(reg, append([]prometheus.Collector{m.requests, m.latency, m.connsOpen, m.connsTotal, m.clientErrors,
		m.bytesRead, m.bytesWritten, m.sendfileBytes, m.topicBytesIn, m.topicBytesOut, m.topicRecordsIn, m.topicRecordsOut}, m.users.collectors()...)...); err != nil {
		return nil, err
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

func (m *metrics) request(api string) { m.requests.WithLabelValues(api).Inc() }

func (m *metrics) observe(api string, d time.Duration) {
	m.latency.WithLabelValues(api).Observe(d.Seconds())
}

func (m *metrics) produced(topic string, bytes int, records int64) {
	m.topicBytesIn.WithLabelValues(topic).Add(float64(bytes))
	m.topicRecordsIn.WithLabelValues(topic).Add(float64(records))
}

func (m *metrics) fetched(topic string, bytes int, records int64) {
	m.topicBytesOut.WithLabelValues(topic).Add(float64(bytes))
	m.topicRecordsOut.WithLabelValues(topic).Add(float64(records))
}

// dropTopic removes a deleted topic's series, so that nightly topics do not
// pile up in every scrape. A Fetch answered while the topic was being
// deleted can leave one behind until restart: rare, and one per topic.
func (m *metrics) dropTopic(topic string) {
	for _, v := range []*prometheus.CounterVec{m.topicBytesIn, m.topicBytesOut, m.topicRecordsIn, m.topicRecordsOut} {
		v.DeleteLabelValues(topic)
	}
}
