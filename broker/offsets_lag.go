package broker

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// groupMetrics are the coordinator's Prometheus metrics. Consumer lag is
// computed at scrape time from the committed offsets and the partitions'
// high watermarks, so it is exact when scraped and costs nothing between
// scrapes.
type groupMetrics struct {
	c          *GroupCoordinator
	lag        *prometheus.Desc
	committed  *prometheus.Desc
	members    *prometheus.Desc
	states     *prometheus.Desc
	rebalances prometheus.Counter
}

func newGroupMetrics(c *GroupCoordinator, reg prometheus.Registerer) (*groupMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &groupMetrics{
		c: c,
		lag: prometheus.NewDesc("ztfbroker_group_lag",
			"Records between a group's committed offset and the partition's high watermark.",
			[]string{"group", "topic", "partition"}, nil),
		committed: prometheus.NewDesc("ztfbroker_group_committed_offset",
			"A group's committed offset of a partition.",
			[]string{"group", "topic", "partition"}, nil),
		members: prometheus.NewDesc("ztfbroker_group_members",
			"Members of a consumer group.", []string{"group"}, nil),
		states: prometheus.NewDesc("ztfbroker_groups",
			"Consumer groups by state.", []string{"state"}, nil),
		rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztfbroker_group_rebalances_total",
			Help: "Rebalances started, in every group.",
		}),
	}
	if err := registerMetrics(reg, m); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *groupMetrics) rebalance() {
	if m != nil {
		m.rebalances.Inc()
	}
}

// Describe implements prometheus.Collector.
func (m *groupMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.lag
	ch <- m.committed
	ch <- m.members
	ch <- m.states
	m.rebalances.Describe(ch)
}

// Collect implements prometheus.Collector. High watermarks are read with no
// group lock held.
func (m *groupMetrics) Collect(ch chan<- prometheus.Metric) {
	m.rebalances.Collect(ch)
	states := map[string]int{}
	for _, s := range []groupState{groupEmpty, groupPreparingRebalance, groupCompletingRebalance, groupStable} {
		states[s.String()] = 0
	}
	type commit struct {
		tp     groupTP
		offset int64
	}
	for _, g := range m.c.allGroups() {
		g.mu.Lock()
		if g.dead {
			g.mu.Unlock()
			continue
		}
		states[g.state.String()]++
		members := len(g.members)
		commits := make([]commit, 0, len(g.offsets))
		for tp, oc := range g.offsets {
			commits = append(commits, commit{tp, oc.Offset})
		}
		g.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(m.members, prometheus.GaugeValue, float64(members), g.name)
		for _, cm := range commits {
			part := strconv.Itoa(int(cm.tp.partition))
			ch <- prometheus.MustNewConstMetric(m.committed, prometheus.GaugeValue, float64(cm.offset), g.name, cm.tp.topic, part)
			if m.c.hwm == nil || cm.offset < 0 {
				continue
			}
			hwm, err := m.c.hwm(cm.tp.topic, cm.tp.partition)
			if err != nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, float64(max(hwm-cm.offset, 0)), g.name, cm.tp.topic, part)
		}
	}
	for s, n := range states {
		ch <- prometheus.MustNewConstMetric(m.states, prometheus.GaugeValue, float64(n), s)
	}
}
