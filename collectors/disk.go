package collectors

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// FsyncSource gives the fsync probe's state; *probes.FsyncProbe is one.
type FsyncSource interface {
	State() probes.FsyncState
}

// diskMetrics are the catalogue rows the disk capability exports:
// FsyncDuration through NewFsyncHistogram, the others through
// DiskCollector.
var diskMetrics = []Metric{FsyncDuration, FsyncStalled, FsyncStalledSeconds, FsyncRefused, FsyncWritten}

// NewFsyncHistogram returns the histogram the fsync probe observes each
// fdatasync into. Its buckets start at 50 µs, finer than etcd's own
// etcd_disk_wal_fsync_duration_seconds (1 ms … 8 s): a healthy SSD syncs in
// 0.1–1 ms, which etcd's buckets cannot tell apart. The native histogram
// resolves about 10 % steps.
func NewFsyncHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:                            FsyncDuration.Name,
		Help:                            FsyncDuration.Help,
		Buckets:                         prometheus.ExponentialBuckets(0.00005, 2, 18), // 50 µs … 6.5 s
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  100,
		NativeHistogramMinResetDuration: time.Hour,
	})
}

// DiskCollector exports the fsync probe's state: whether an operation is
// stalled (computed at scrape time, so a sync that never returns still
// shows), why the probe refuses to measure, and the bytes it wrote.
type DiskCollector struct {
	src   FsyncSource
	now   func() time.Time
	descs map[string]*prometheus.Desc
}

// NewDiskCollector returns a collector over the fsync probe's state.
func NewDiskCollector(src FsyncSource) *DiskCollector {
	c := &DiskCollector{src: src, now: time.Now, descs: map[string]*prometheus.Desc{}}
	for _, m := range []Metric{FsyncStalled, FsyncStalledSeconds, FsyncRefused, FsyncWritten} {
		c.descs[m.Name] = m.Desc()
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *DiskCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *DiskCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.State()
	var outstanding time.Duration
	if !s.OpStart.IsZero() {
		outstanding = max(c.now().Sub(s.OpStart), 0)
	}
	stalled := !s.OpStart.IsZero() && outstanding > s.StallThreshold
	ch <- prometheus.MustNewConstMetric(c.descs[FsyncStalled.Name], prometheus.GaugeValue, b2f(stalled))
	ch <- prometheus.MustNewConstMetric(c.descs[FsyncStalledSeconds.Name], prometheus.GaugeValue, outstanding.Seconds())
	ch <- prometheus.MustNewConstMetric(c.descs[FsyncWritten.Name], prometheus.CounterValue, float64(s.WrittenBytes))
	if s.Refused != "" {
		ch <- prometheus.MustNewConstMetric(c.descs[FsyncRefused.Name], prometheus.GaugeValue, 1, s.Refused)
	}
}
