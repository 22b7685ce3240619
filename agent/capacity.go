package agent

import (
	"github.com/etcdpulse/etcdpulse/collectors"
)

// capacity reports each member's database against its backend quota, and
// how much of the file is free pages, from the members' status (no probe
// of its own). The quota comes from each member's Status on etcd 3.6 and
// later; on 3.4 and 3.5, from the local member's metrics URL
// (etcdmetrics.go) or the configured quota; else etcd's default is
// assumed, and every member says which (etcdpulse_member_db_quota_source).
var capacity = capability{
	name:  "capacity",
	title: "Capacity: database size, quota and fragmentation",
	settings: []Setting{
		setting("etcd.quota_backend_bytes", "The members' --quota-backend-bytes, used for members whose quota neither their status (etcd 3.6 and later) nor etcd.metrics_url (the local member) reports: etcd 3.4 and 3.5. 0: not known; etcd's default (2 GiB) is then assumed, with source=\"default\".",
			func(c *Config) any { return &c.Etcd.QuotaBackendBytes }),
	},
	metrics: collectors.CapacityMetrics,
	validate: func(c *Config, bad badFunc) {
		if q := c.Etcd.QuotaBackendBytes; q < 0 {
			bad("etcd.quota_backend_bytes", "must not be negative, got %d: give the members' --quota-backend-bytes in bytes (8 GiB is %d), or 0 when it is not set", q, int64(8<<30))
		}
	},
	wire: func(w *wiring) error {
		metrics := w.etcdMetrics
		w.capacity = collectors.NewCapacityCollector(collectors.CapacityOptions{
			View: w.view,
			// Read at scrape time: etcd's metrics capability is wired
			// after this one, and may not be at all.
			LocalQuota: func() (int64, bool) { return metrics.QuotaBackendBytes() },
			Quota:      w.cfg.Etcd.QuotaBackendBytes,
		})
		w.collect(w.capacity)
		return nil
	},
}

// etcdMetricsRef is the reader of the local member's own metrics, set when
// etcd.metrics_url is.
type etcdMetricsRef struct{ *collectors.EtcdMetrics }
