package collectors

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// The backups capability's rows. dir is a directory of backups.dirs,
// never a file's name.
var (
	BackupSnapshots = Metric{"etcdpulse_backup_snapshots", Gauge,
		"Snapshot files in the directory of backups.dirs (its regular files, not hidden, not partial, not modified in the last minute); 0 when it is empty, missing or unreadable (etcdpulse_capability_success{capability=\"backups\"} is then 0).", []string{"dir"}}
	BackupLastTimestamp = Metric{"etcdpulse_backup_last_timestamp_seconds", Gauge,
		"Unix time the directory's newest snapshot was taken: from its name where it has one (k3s and RKE2's etcd-snapshot-<node>-<unix time>, a date and time in a CronJob's file name, read as UTC), else its modification time. Absent while the directory holds none.", []string{"dir"}}
	BackupLastSize = Metric{"etcdpulse_backup_last_size_bytes", Gauge,
		"Size of the directory's newest snapshot file.", []string{"dir"}}
	BackupLastRevision = Metric{"etcdpulse_backup_last_revision", Gauge,
		"Revision of the store in the directory's newest snapshot, as etcd restores it. Absent when not read (compressed, corrupt, not checked yet).", []string{"dir"}}
	BackupStatus = Metric{"etcdpulse_backup_status", Gauge,
		"1 for the status of the directory's newest snapshot, 0 for the others: verified (intact, and its HashKV at its revision equals the cluster's), unverifiable (intact, but the cluster has compacted its revision), mismatched (its store differs from the cluster's at its revision, or its revision is ahead of the cluster's), corrupt (sha256 trailer, truncated, unreadable bolt database or damaged compressed container), compressed (a zip, gzip or bzip2 file whose container and trailer are intact; its store is not hashed), unchecked (not checked yet, or the check could not finish: the cluster did not answer or was not healthy, the check ran out of time, or an unread compression).", []string{"dir", "status"}}
	BackupLastCheck = Metric{"etcdpulse_backup_last_check_timestamp_seconds", Gauge,
		"Unix time the last check of the directory's newest snapshot ended. A snapshot is checked once, the first time it is the newest (again while its status is unchecked).", []string{"dir"}}
	BackupCheckDuration = Metric{"etcdpulse_backup_check_duration_seconds", Gauge,
		"Time the checks of the directory's newest snapshot took, read at backups.read_rate: the sha256 trailer, the bolt database and the hash of its store.", []string{"dir"}}
)

// BackupMetrics lists these rows in documentation order.
var BackupMetrics = []Metric{BackupSnapshots, BackupLastTimestamp, BackupLastSize, BackupLastRevision, BackupStatus, BackupLastCheck, BackupCheckDuration}

// BackupSource gives what the backup probe last found in each directory.
type BackupSource interface {
	Results() []probes.BackupDir
}

// BackupCollector exports the backup probe's last findings.
type BackupCollector struct {
	src BackupSource
	d   descSet
}

// NewBackupCollector returns a collector of src.
func NewBackupCollector(src BackupSource) *BackupCollector {
	return &BackupCollector{src: src, d: newDescSet(BackupMetrics...)}
}

// Describe implements prometheus.Collector.
func (c *BackupCollector) Describe(ch chan<- *prometheus.Desc) { c.d.describe(ch) }

// Err implements Failing: a directory that could not be read or holds no
// snapshot.
func (c *BackupCollector) Err() error {
	var errs []error
	for _, d := range c.src.Results() {
		if d.Err != "" {
			errs = append(errs, errors.New(d.Err))
		}
	}
	return errors.Join(errs...)
}

// Collect implements prometheus.Collector.
func (c *BackupCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(m Metric, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.d[m.Name], prometheus.GaugeValue, v, labels...)
	}
	for _, d := range c.src.Results() {
		gauge(BackupSnapshots, float64(d.Snapshots), d.Dir)
		s := d.Newest
		if s == nil {
			continue
		}
		gauge(BackupLastTimestamp, unixSeconds(s.Time), d.Dir)
		gauge(BackupLastSize, float64(s.Size), d.Dir)
		if s.Revision > 0 {
			gauge(BackupLastRevision, float64(s.Revision), d.Dir)
		}
		status := s.Status
		if status == "" {
			status = probes.BackupUnchecked
		}
		for _, st := range probes.BackupStatuses {
			gauge(BackupStatus, b2f(st == status), d.Dir, st)
		}
		if !s.CheckedAt.IsZero() {
			gauge(BackupLastCheck, unixSeconds(s.CheckedAt), d.Dir)
			gauge(BackupCheckDuration, s.CheckDuration.Seconds(), d.Dir)
		}
	}
}
