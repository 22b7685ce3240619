package collectors

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// What CapacityCollector computes from each member's last status: the
// database's size, its backend quota and where that came from, and how
// much of the file is free pages.
var (
	MemberDBSize = Metric{"etcdpulse_member_db_size_bytes", Gauge,
		"Physical size of the member's backend database file, free pages included: the size etcd's quota counts.", []string{"member"}}
	MemberDBSizeInUse = Metric{"etcdpulse_member_db_size_in_use_bytes", Gauge,
		"Logically used size of the member's backend database; the rest is reclaimable by defragmentation.", []string{"member"}}
	MemberDBQuota = Metric{"etcdpulse_member_db_quota_bytes", Gauge,
		"Backend quota the member enforces (--quota-backend-bytes; etcd's 2 GiB default when unset), from the source etcdpulse_member_db_quota_source names; etcd raises NOSPACE and refuses writes when one would take the database past it. Absent when that source says the quota is off (negative).", []string{"member"}}
	MemberDBQuotaSource = Metric{"etcdpulse_member_db_quota_source", Gauge,
		"Constant 1 naming where the member's quota came from: status (the member's own Status, etcd 3.6 and later, or the embedded server of an attached agent), metrics_url (etcd_server_quota_backend_bytes read from etcd.metrics_url: the local member only), config (etcd.quota_backend_bytes), default (nothing said it: etcd's default of 2 GiB is assumed).", []string{"member", "source"}}
	MemberDBQuotaUsedRatio = Metric{"etcdpulse_member_db_quota_used_ratio", Gauge,
		"Physical database size over the quota (etcdpulse_member_db_size_bytes / etcdpulse_member_db_quota_bytes): etcd raises NOSPACE when a write would take it past 1. Compaction does not lower it, a defragmentation does. Absent when the quota is off.", []string{"member"}}
	MemberDBFragmentedRatio = Metric{"etcdpulse_member_db_fragmented_ratio", Gauge,
		"Share of the member's database file not in use, (size − in use) / size, as etcdctl endpoint status's % NOT IN USE: free pages that compaction left and only a defragmentation returns; a few free pages are a large share of a small file. Absent when the member does not report its size in use.", []string{"member"}}
)

// CapacityMetrics lists these rows in documentation order.
var CapacityMetrics = []Metric{MemberDBSize, MemberDBSizeInUse, MemberDBFragmentedRatio, MemberDBQuota, MemberDBQuotaUsedRatio, MemberDBQuotaSource}

// EtcdDefaultQuotaBytes is etcd's DefaultQuotaBytes (storage in etcd 3.6
// and later, etcdserver before): the quota a member enforces when
// --quota-backend-bytes is 0.
const EtcdDefaultQuotaBytes int64 = 2 << 30

// Where a member's quota came from, in the order they are tried.
const (
	QuotaFromStatus     = "status"
	QuotaFromMetricsURL = "metrics_url"
	QuotaFromConfig     = "config"
	QuotaFromDefault    = "default"
)

// CapacityOptions configures CapacityCollector.
type CapacityOptions struct {
	// View gives the members' last status.
	View ViewSource
	// LocalQuota gives the quota the local member last reported in its own
	// metrics (etcd_server_quota_backend_bytes); nil, or ok false: none.
	LocalQuota func() (quota int64, ok bool)
	// Quota is the members' configured --quota-backend-bytes
	// (etcd.quota_backend_bytes); 0: not known.
	Quota int64
}

// CapacityCollector exports each reachable member's database size, quota
// and fragmentation from its last status, at scrape time.
type CapacityCollector struct {
	opts  CapacityOptions
	descs descSet
}

// NewCapacityCollector returns a collector over opts.View.
func NewCapacityCollector(opts CapacityOptions) *CapacityCollector {
	c := &CapacityCollector{opts: opts, descs: newDescSet(CapacityMetrics...)}
	return c
}

// Describe implements prometheus.Collector.
func (c *CapacityCollector) Describe(ch chan<- *prometheus.Desc) {
	c.descs.describe(ch)
}

// Collect implements prometheus.Collector. A member that did not answer
// its last status has no figures: its size is not known.
func (c *CapacityCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.opts.View.Ready() {
		return
	}
	gauge := func(m Metric, val float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[m.Name], prometheus.GaugeValue, val, labels...)
	}
	for _, m := range c.opts.View.View().Members {
		st := m.Status
		if st == nil {
			continue
		}
		l := m.Label
		gauge(MemberDBSize, float64(st.DBSize), l)
		gauge(MemberDBSizeInUse, float64(st.DBSizeInUse), l)
		// etcd before 3.4 does not report the size in use.
		if st.DBSize > 0 && st.DBSizeInUse > 0 {
			gauge(MemberDBFragmentedRatio, float64(max(st.DBSize-st.DBSizeInUse, 0))/float64(st.DBSize), l)
		}
		quota, source := c.Quota(m)
		gauge(MemberDBQuotaSource, 1, l, source)
		if quota > 0 {
			gauge(MemberDBQuota, float64(quota), l)
			gauge(MemberDBQuotaUsedRatio, float64(st.DBSize)/float64(quota), l)
		}
	}
}

// Quota returns the backend quota of a member that answered its status,
// and where it came from, trying in order:
//
//   - the member's own Status: dbSizeQuota, which etcd 3.6 and later
//     report (3.6.0 reports the flag as set, 0 meaning the default; 3.7
//     the default itself; negative: no quota);
//   - for the local member, etcd_server_quota_backend_bytes from its
//     metrics URL: etcd 3.4 and 3.5 have no other way to say it;
//   - the configured quota, for every member: remote members of 3.4 and
//     3.5 cannot be read from the local metrics URL, and a cluster runs
//     one --quota-backend-bytes;
//   - etcd's default, which a member enforces when the flag is not set,
//     labelled as assumed.
func (c *CapacityCollector) Quota(m probes.MemberView) (quota int64, source string) {
	st := m.Status
	switch {
	case st.DBQuota != 0:
		return st.DBQuota, QuotaFromStatus
	case statusHasQuota(st.Version):
		return EtcdDefaultQuotaBytes, QuotaFromStatus
	}
	if m.Local && c.opts.LocalQuota != nil {
		if q, ok := c.opts.LocalQuota(); ok && q != 0 {
			return q, QuotaFromMetricsURL
		}
	}
	if c.opts.Quota > 0 {
		return c.opts.Quota, QuotaFromConfig
	}
	return EtcdDefaultQuotaBytes, QuotaFromDefault
}

// statusHasQuota reports whether an etcd version's Status carries
// dbSizeQuota: 3.6 and later.
func statusHasQuota(version string) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 3 || major == 3 && minor >= 6
}
