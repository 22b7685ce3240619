package collectors

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// The disk capability's rows: FsyncDuration through NewFsyncHistogram, the
// others through DiskCollector.
var (
	FsyncDuration = Metric{"etcdpulse_disk_fsync_duration_seconds", Histogram,
		"Duration of the fsync probe's fdatasync calls, each after a small sequential write into a fresh preallocated file on the WAL's filesystem, as etcd's WAL syncs.", nil}
	FsyncStalled = Metric{"etcdpulse_disk_fsync_stalled", Gauge,
		"1 while a disk operation of the fsync probe (normally its fdatasync) has been outstanding for longer than the stall threshold (disk.stall_threshold), else 0.", nil}
	FsyncStalledSeconds = Metric{"etcdpulse_disk_fsync_stalled_seconds", Gauge,
		"Seconds the fsync probe's outstanding disk operation has been waiting so far, 0 when none is outstanding.", nil}
	FsyncRefused = Metric{"etcdpulse_disk_fsync_probe_refused", Gauge,
		"1 while the fsync probe refuses to measure, by reason: tmpfs, overlay, other_device, no_wal_dir, no_space, error; absent while it measures.", []string{"reason"}}
	FsyncWritten = Metric{"etcdpulse_disk_fsync_written_bytes_total", Counter,
		"Bytes the fsync probe wrote.", nil}
)

// DiskMetrics lists these rows in documentation order.
var DiskMetrics = []Metric{FsyncDuration, FsyncStalled, FsyncStalledSeconds, FsyncRefused, FsyncWritten}

// FsyncSource gives the fsync probe's state; *probes.FsyncProbe is one.
type FsyncSource interface {
	State() probes.FsyncState
}

// NewFsyncHistogram returns the histogram the fsync probe observes each
// fdatasync into. Its buckets start at 50 µs, finer than etcd's own
// etcd_disk_wal_fsync_duration_seconds (1 ms … 8 s): a healthy SSD syncs in
// 0.1–1 ms, which etcd's buckets cannot tell apart. The native histogram
// resolves about 10 % steps. It has no labels: observe into
// WithLabelValues().
func NewFsyncHistogram() *prometheus.HistogramVec {
	return NewHistogramVec(FsyncDuration, prometheus.ExponentialBuckets(0.00005, 2, 18)) // 50 µs … 6.5 s
}

// DiskCollector exports the fsync probe's state: whether an operation is
// stalled (computed at scrape time, so a sync that never returns still
// shows), why the probe refuses to measure, and the bytes it wrote.
type DiskCollector struct {
	src   FsyncSource
	now   func() time.Time
	descs descSet
}

// NewDiskCollector returns a collector over the fsync probe's state.
func NewDiskCollector(src FsyncSource) *DiskCollector {
	c := &DiskCollector{src: src, now: time.Now, descs: newDescSet(FsyncStalled, FsyncStalledSeconds, FsyncRefused, FsyncWritten)}
	return c
}

// Describe implements prometheus.Collector.
func (c *DiskCollector) Describe(ch chan<- *prometheus.Desc) {
	c.descs.describe(ch)
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

// Err implements Failing: the fsync probe refuses to measure.
func (c *DiskCollector) Err() error {
	if r := c.src.State().Refused; r != "" {
		return fmt.Errorf("the fsync probe refuses to measure: %s", r)
	}
	return nil
}
