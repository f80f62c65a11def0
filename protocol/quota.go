package protocol

import (
	"container/list"
	"errors"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// Client quotas (KIP-13, KIP-219, KIP-546) and per-user accounting.
//
// A quota is a byte rate, producer_byte_rate or consumer_byte_rate, set on a
// quota entity: a user, a client id, or both, each either named or the
// default (name null on the wire). A request is held to the first quota
// found in Kafka's order of precedence:
//
//	user/U/client-id/C, user/U/client-id/<default>, user/U,
//	user/<default>/client-id/C, user/<default>/client-id/<default>, user/<default>,
//	client-id/C, client-id/<default>
//
// An unauthenticated connection is user ANONYMOUS, as in Kafka. Bytes are
// counted per matched entity with the defaults filled in (so a default
// client-id quota holds each client id to the rate on its own, and a user
// quota holds all of that user's clients together), in quotaSamples windows
// of quotaWindow. A produce (request record bytes) or fetch (answered record
// bytes) that takes its entity over the quota is answered at once with
// throttle time = (observed - quota) / quota * elapsed, which is the time
// until the window's rate falls back to the quota, and the broker stops
// reading the connection for that long (KIP-219), so a client that ignores
// the throttle is slowed all the same. Nothing is refused or dropped.
//
// Unlike Kafka's Rate, elapsed is the window's real span (from the oldest
// sample, or the entity's first request if later) floored to one window,
// not to (samples-1) windows: Kafka's floor lets a new client take ten
// seconds' worth of bytes in one burst, which a 10-second measurement
// then sees as twice the quota; here a new client gets one second's worth.
const (
	quotaWindow  = time.Second
	quotaSamples = 11
	// maxQuotaMeters bounds the entities measured at once; the least
	// recently used is forgotten beyond it, so a flood of client ids under
	// a default quota cannot grow memory (a forgotten entity starts afresh).
	maxQuotaMeters = 10000
	// maxUserLabels bounds the user label of the ztfbroker_user_* series;
	// users past it are counted as "other". Users are configured, so the
	// bound is only a guard.
	maxUserLabels = 1000
	// anonymousUser is the quota and metric name of an unauthenticated
	// connection.
	anonymousUser = "ANONYMOUS"
)

// Quota names, as Kafka spells them.
const (
	producerByteRate = "producer_byte_rate"
	consumerByteRate = "consumer_byte_rate"
)

// Entity types, as Kafka spells them.
const (
	quotaUser     = "user"
	quotaClientID = "client-id"
)

// QuotaStore is optionally implemented by a Backend that keeps client
// quotas; without it DescribeClientQuotas answers nothing, AlterClientQuotas
// is refused and nothing is throttled. Entities are keys as quotaEntity.key
// spells them; values are quota name -> bytes per second.
type QuotaStore interface {
	// ClientQuotas returns every stored quota.
	ClientQuotas() (map[string]map[string]float64, error)
	// SetClientQuotas replaces an entity's quotas durably; no values
	// removes the entity.
	SetClientQuotas(entity string, values map[string]float64) error
}

// quotaEntity is a user, a client id or both; a nil name is the default.
type quotaEntity struct {
	hasUser, hasClient bool
	user, client       *string
}

// quotaDefault spells a default name in entity keys; path escaping turns
// '<' and '>' into %3C and %3E, so no real name can be it.
const quotaDefault = "<default>"

// key is the entity as stored: "user/<name>", "client-id/<name>" or
// "user/<name>/client-id/<name>", names path-escaped, <default> for a default.
func (e quotaEntity) key() string {
	part := func(typ string, name *string) string {
		if name == nil {
			return typ + "/" + quotaDefault
		}
		return typ + "/" + url.PathEscape(*name)
	}
	switch {
	case e.hasUser && e.hasClient:
		return part(quotaUser, e.user) + "/" + part(quotaClientID, e.client)
	case e.hasUser:
		return part(quotaUser, e.user)
	default:
		return part(quotaClientID, e.client)
	}
}

var errQuotaEntity = errors.New("protocol: bad quota entity")

// parseQuotaEntity reads a key written by key.
func parseQuotaEntity(k string) (quotaEntity, error) {
	f := strings.Split(k, "/")
	if len(f) != 2 && len(f) != 4 {
		return quotaEntity{}, errQuotaEntity
	}
	var e quotaEntity
	for i := 0; i < len(f); i += 2 {
		var name *string
		if f[i+1] != quotaDefault {
			n, err := url.PathUnescape(f[i+1])
			if err != nil {
				return quotaEntity{}, errQuotaEntity
			}
			name = &n
		}
		switch {
		case f[i] == quotaUser && i == 0 && !e.hasUser:
			e.hasUser, e.user = true, name
		case f[i] == quotaClientID && !e.hasClient:
			e.hasClient, e.client = true, name
		default:
			return quotaEntity{}, errQuotaEntity
		}
	}
	return e, nil
}

// rateMeter counts bytes in quotaSamples windows of quotaWindow.
type rateMeter struct {
	first   time.Time
	windows [quotaSamples]struct {
		n     int64 // window number: unix time / quotaWindow
		bytes float64
	}
}

// record adds n bytes at now and returns how long the entity must wait for
// its rate over the samples to fall back to quota bytes/s.
func (m *rateMeter) record(now time.Time, n int, quota float64) time.Duration {
	if m.first.IsZero() {
		m.first = now
	}
	cur := now.UnixNano() / int64(quotaWindow)
	w := &m.windows[cur%quotaSamples]
	if w.n != cur {
		w.n, w.bytes = cur, 0
	}
	w.bytes += float64(n)
	var sum float64
	oldest := cur
	for _, s := range m.windows {
		if s.n > cur-quotaSamples && s.bytes > 0 {
			sum += s.bytes
			oldest = min(oldest, s.n)
		}
	}
	start := time.Unix(0, oldest*int64(quotaWindow))
	if m.first.After(start) {
		start = m.first
	}
	elapsed := max(now.Sub(start), quotaWindow)
	// (observed - quota) / quota * elapsed, with observed = sum / elapsed,
	// in float seconds: a huge sum over a tiny quota overflows a Duration.
	throttle := sum/quota - elapsed.Seconds()
	if throttle <= 0 {
		return 0
	}
	return time.Duration(min(throttle, (quotaSamples*quotaWindow).Seconds()) * float64(time.Second))
}

// quotas holds the configured quotas and the meters of the entities being
// held to them. Safe for concurrent use.
type quotas struct {
	now func() time.Time
	log *zap.Logger

	mu      sync.Mutex
	loaded  bool
	configs map[string]map[string]float64 // entity key -> quota name -> value
	meters  map[string]*list.Element      // meter key -> element of lru
	lru     list.List                     // of *quotaMeter, most recent first
}

type quotaMeter struct {
	key string
	m   rateMeter
}

func newQuotas() *quotas {
	return &quotas{now: time.Now, log: zap.NewNop(), meters: map[string]*list.Element{}}
}

// loadLocked reads the configs from store on first use (and after a failed
// read).
func (q *quotas) loadLocked(store QuotaStore) {
	if q.loaded {
		return
	}
	cfgs, err := store.ClientQuotas()
	if err != nil {
		q.log.Warn("client quotas: reading the store; none applied", zap.Error(err))
		return
	}
	q.configs, q.loaded = cfgs, true
}

// set records a change made through the store.
func (q *quotas) set(entity string, values map[string]float64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.loaded {
		return // the next use reads the store, change included
	}
	if len(values) == 0 {
		delete(q.configs, entity)
	} else {
		q.configs[entity] = values
	}
	// A change may move any entity to another quota: every meter starts
	// afresh (changes are rare).
	clear(q.meters)
	q.lru.Init()
}

// record counts n bytes of kind (producerByteRate or consumerByteRate) for
// the user and client id and returns the throttle time, zero when no quota
// applies.
func (q *quotas) record(store QuotaStore, kind, user, client string, n int) time.Duration {
	if store == nil || n <= 0 {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.loadLocked(store)
	if len(q.configs) == 0 {
		return 0
	}
	u, c := &user, &client
	// Kafka's order of precedence; the meter keeps the matched entity
	// with defaults replaced by the actual names.
	order := [...]quotaEntity{
		{hasUser: true, user: u, hasClient: true, client: c},
		{hasUser: true, user: u, hasClient: true},
		{hasUser: true, user: u},
		{hasUser: true, hasClient: true, client: c},
		{hasUser: true, hasClient: true},
		{hasUser: true},
		{hasClient: true, client: c},
		{hasClient: true},
	}
	for _, e := range order {
		quota, ok := q.configs[e.key()][kind]
		if !ok || quota <= 0 {
			continue
		}
		filled := quotaEntity{hasUser: e.hasUser, user: u, hasClient: e.hasClient, client: c}
		return q.meterLocked(kind+"|"+filled.key()).record(q.now(), n, quota)
	}
	return 0
}

func (q *quotas) meterLocked(key string) *rateMeter {
	if el, ok := q.meters[key]; ok {
		q.lru.MoveToFront(el)
		return &el.Value.(*quotaMeter).m
	}
	if q.lru.Len() >= maxQuotaMeters {
		old := q.lru.Back()
		q.lru.Remove(old)
		delete(q.meters, old.Value.(*quotaMeter).key)
	}
	qm := &quotaMeter{key: key}
	q.meters[key] = q.lru.PushFront(qm)
	return &qm.m
}

// userMetrics are the ztfbroker_user_* series.
type userMetrics struct {
	producedBytes, producedRecords *prometheus.CounterVec
	fetchedBytes, fetchedRecords   *prometheus.CounterVec
	connections                    *prometheus.GaugeVec
	throttle                       *prometheus.CounterVec

	mu     sync.Mutex
	labels map[string]bool
}

func newUserMetrics() *userMetrics {
	const ns, sub = "ztfbroker", "user"
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, []string{"user"})
	}
	return &userMetrics{
		producedBytes:   counter("produced_bytes_total", "Record batch bytes in produce requests, per user (ANONYMOUS without SASL)."),
		producedRecords: counter("produced_records_total", "Records in produce requests, per user."),
		fetchedBytes:    counter("fetched_bytes_total", "Record batch bytes fetched, per user."),
		fetchedRecords:  counter("fetched_records_total", "Records fetched, per user."),
		throttle:        counter("throttle_seconds_total", "Time connections were throttled by client quotas, per user."),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "connections", Help: "Open connections, per user (counted from their first produce or fetch as that user)."}, []string{"user"}),
		labels: map[string]bool{},
	}
}

func (u *userMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{u.producedBytes, u.producedRecords, u.fetchedBytes, u.fetchedRecords, u.connections, u.throttle}
}

// label is the user's label value, "other" past maxUserLabels users.
func (u *userMetrics) label(user string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.labels[user] {
		if len(u.labels) >= maxUserLabels {
			return "other"
		}
		u.labels[user] = true
	}
	return user
}

// connAccount is a connection's share of accounting and quotas; only the
// read goroutine touches it.
type connAccount struct {
	user       string // label the connection is counted under; "" before
	mutedUntil time.Time
}

// identity is the user (ANONYMOUS when not authenticated) and client id
// quotas and accounting see for the request being handled.
func (c *conn) identity() (user, label string) {
	user = anonymousUser
	if p, ok := PrincipalFrom(c.requestContext()); ok && !p.Anonymous() {
		user = p.User
	}
	label = c.s.m.users.label(user)
	if c.acct.user != label {
		if c.acct.user != "" {
			c.s.m.users.connections.WithLabelValues(c.acct.user).Dec()
		}
		c.acct.user = label
		c.s.m.users.connections.WithLabelValues(label).Inc()
	}
	return user, label
}

// closeAccount uncounts the connection; the read goroutine calls it as it
// ends.
func (c *conn) closeAccount() {
	if c.acct.user != "" {
		c.s.m.users.connections.WithLabelValues(c.acct.user).Dec()
		c.acct.user = ""
	}
}

// throttle holds the connection to a quota: the answer carries the
// throttle time and the read goroutine waits it out before the next request.
func (c *conn) throttle(label string, d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	c.acct.mutedUntil = time.Now().Add(d)
	c.s.m.users.throttle.WithLabelValues(label).Add(d.Seconds())
	return int32(d / time.Millisecond)
}

// waitMuted sleeps until a throttle ends (KIP-219: the broker stops reading
// a throttled connection). It reports false when the connection or the
// server ends meanwhile.
func (c *conn) waitMuted() bool {
	d := time.Until(c.acct.mutedUntil)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	case <-c.s.done:
		return false
	}
}

// quotaStore is the Backend's QuotaStore, or nil.
func (s *Server) quotaStore() QuotaStore {
	qs, _ := s.b.(QuotaStore)
	return qs
}

// accountProduce counts a produce request's accepted partitions for its
// user and applies the producer quota to its record bytes. Deferred by
// serveProduce, so it sees the answer's error codes and sets its throttle.
func (c *conn) accountProduce(req *kmsg.ProduceRequest, resp *kmsg.ProduceResponse) {
	user, label := c.identity()
	var total, ok int
	var records int64
	for i := range req.Topics {
		for j, p := range req.Topics[i].Partitions {
			total += len(p.Records)
			if i < len(resp.Topics) && j < len(resp.Topics[i].Partitions) && resp.Topics[i].Partitions[j].ErrorCode == 0 {
				ok += len(p.Records)
				records += countRecords(p.Records)
			}
		}
	}
	c.s.m.users.producedBytes.WithLabelValues(label).Add(float64(ok))
	c.s.m.users.producedRecords.WithLabelValues(label).Add(float64(records))
	resp.ThrottleMillis = c.throttle(label, c.s.m.quotas.record(c.s.quotaStore(), producerByteRate, user, c.clientID, total))
}

// accountFetch counts a fetch's record bytes for its user and applies the
// consumer quota to them, returning the answer's throttle time.
func (c *conn) accountFetch(parts []fetchPartition) int32 {
	user, label := c.identity()
	var bytes int
	var records int64
	for k := range parts {
		if p := &parts[k]; p.recordBytes() > 0 {
			bytes += p.recordBytes()
			records += p.fileRecords + countRecords(p.out.RecordBatches)
		}
	}
	c.s.m.users.fetchedBytes.WithLabelValues(label).Add(float64(bytes))
	c.s.m.users.fetchedRecords.WithLabelValues(label).Add(float64(records))
	return c.throttle(label, c.s.m.quotas.record(c.s.quotaStore(), consumerByteRate, user, c.clientID, bytes))
}
