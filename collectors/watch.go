package collectors

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// The watch probe's rows.
var (
	WatchDelivery = Metric{"etcdpulse_watch_delivery_seconds", Histogram,
		"Time from the answer to the write probe's put (committed, and applied by the member that took it) to the put's event on the agent's long-lived watch of that key on each member; 0 when the event came first. etcd sends an event only once the member has applied the write, so this is also each member's replication and apply time for the write: it is exported once, here. Writes whose event never came are counted in etcdpulse_member_replication_lag_seconds and etcdpulse_probe_failures_total{probe=\"watch\"}.", []string{"member"}}
	ReplicationLag = Metric{"etcdpulse_member_replication_lag_seconds", Gauge,
		"Age of the oldest write the agent committed that the member has not served yet, by its watch or, once the write is overdue, by its own revision on a serializable read; 0 when it has served every one. Rises by one second per second while the member is frozen, partitioned or not applying.", []string{"member"}}
	WatchRestarts = Metric{"etcdpulse_watch_restarts_total", Counter,
		"Watches on a member that etcd ended and the agent re-established, by cause: compacted (it resumed from a compacted revision: it had fallen behind), cancelled, closed.", []string{"member", "cause"}}
	WatchEnabled = Metric{"etcdpulse_watch_enabled", Gauge,
		"1 while the agent follows its probe writes on every member's watch; 0 with etcd.read_only, when there are no writes to follow.", nil}
)

// WatchMetrics lists these rows in documentation order.
var WatchMetrics = []Metric{WatchDelivery, ReplicationLag, WatchRestarts, WatchEnabled}

// NewWatchMetrics returns what the watch probe fills: delivery times, 500
// µs to 16 s, re-established watches, and whether the probe is on.
func NewWatchMetrics(enabled bool) (delivery *prometheus.HistogramVec, restarts *prometheus.CounterVec, on prometheus.Gauge) {
	delivery = NewHistogramVec(WatchDelivery, prometheus.ExponentialBuckets(0.0005, 2, 16))
	restarts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: WatchRestarts.Name, Help: WatchRestarts.Help}, WatchRestarts.Labels)
	on = prometheus.NewGauge(prometheus.GaugeOpts{Name: WatchEnabled.Name, Help: WatchEnabled.Help})
	if enabled {
		on.Set(1)
	}
	return delivery, restarts, on
}

// LagSource gives the members' replication lag at scrape time.
type LagSource interface {
	Lags(now time.Time) []probes.Lag
}

// LagCollector exports etcdpulse_member_replication_lag_seconds.
type LagCollector struct {
	src  LagSource
	desc *prometheus.Desc
}

// NewLagCollector returns a collector of src's lags.
func NewLagCollector(src LagSource) *LagCollector {
	return &LagCollector{src: src, desc: ReplicationLag.Desc()}
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.src.Lags(time.Now()) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, l.Seconds, l.Member)
	}
}
