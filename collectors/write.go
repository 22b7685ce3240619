package collectors

import "github.com/prometheus/client_golang/prometheus"

// The write probe's rows, made by NewWriteMetrics.
var (
	WriteDuration = Metric{"etcdpulse_write_duration_seconds", Histogram,
		"Time from sending the probe's put under the agent's key prefix through the member to etcd's answer that it is committed (a quorum has it on disk), successful writes only; failures are counted in etcdpulse_probe_failures_total{probe=\"write\"} by reason.", []string{"member"}}
	WriteEnabled = Metric{"etcdpulse_write_enabled", Gauge,
		"1 while the agent writes its probe key; 0 with etcd.read_only, when every capability that needs writes (the write probe, and the watch probe that follows its writes: etcdpulse_watch_enabled) is off.", nil}
)

// WriteMetrics lists these rows in documentation order.
var WriteMetrics = []Metric{WriteDuration, WriteEnabled}

// NewWriteMetrics returns what the write probe fills: its commit latency,
// 500 µs to 16 s, and whether writes are on.
func NewWriteMetrics(enabled bool) (duration *prometheus.HistogramVec, on prometheus.Gauge) {
	duration = NewHistogramVec(WriteDuration, prometheus.ExponentialBuckets(0.0005, 2, 16))
	on = prometheus.NewGauge(prometheus.GaugeOpts{Name: WriteEnabled.Name, Help: WriteEnabled.Help})
	if enabled {
		on.Set(1)
	}
	return duration, on
}
