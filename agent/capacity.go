package agent

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
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
		c := w.capacity
		w.collect(c)
		etcdctl := w.cfg.Etcd.etcdctl()
		w.check(func(_ context.Context, in checkInput) []Finding { return checkCapacity(in.view, c, etcdctl) })
		return nil
	},
}

// etcdMetricsRef is the reader of the local member's own metrics, set when
// etcd.metrics_url is.
type etcdMetricsRef struct{ *collectors.EtcdMetrics }

// Thresholds of the capacity lines: the quota ones are the alerts'
// (EtcdDatabaseQuotaHigh, EtcdDatabaseQuotaCritical); a defragmentation is
// worth its pause when half the file is free pages and that is at least
// defragWorthBytes.
const (
	quotaWarnRatio   = 0.75
	quotaFailRatio   = 0.85
	defragWorthRatio = 0.5
	defragWorthBytes = 100 << 20
)

// checkCapacity gives each member's database against its quota, and the
// defragmentation advice: what each member would reclaim, and the order
// to defragment in, followers first and the leader last, one at a time
// (a member blocks its reads and writes while it defragments).
func checkCapacity(v probes.View, c *collectors.CapacityCollector, etcdctl string) []Finding {
	var fs []Finding
	type frag struct {
		m           probes.MemberView
		reclaimable int64
	}
	var frags []frag
	worth := false
	for _, m := range v.Members {
		if !m.Reachable {
			continue
		}
		st := m.Status
		quota, source := c.Quota(m)
		f := Finding{Check: "db_quota", Member: m.Label, Value: bytesText(st.DBSize), Threshold: fmt.Sprintf("%.0f%% of %s", quotaWarnRatio*100, bytesText(quota))}
		if source == collectors.QuotaFromDefault {
			f.Threshold += " (etcd's default, assumed)"
		}
		switch ratio := float64(st.DBSize) / float64(quota); {
		case quota <= 0:
			f.Level, f.Summary = Pass, fmt.Sprintf("%s database %s, no quota", m.Label, bytesText(st.DBSize))
		case ratio > quotaFailRatio:
			f.Level, f.Runbook = Fail, runbook("EtcdDatabaseQuotaCritical")
		case ratio > quotaWarnRatio:
			f.Level, f.Runbook = Warn, runbook("EtcdDatabaseQuotaHigh")
		}
		if f.Summary == "" {
			f.Summary = fmt.Sprintf("%s database %s, %.0f%% of its quota of %s", m.Label, bytesText(st.DBSize), 100*float64(st.DBSize)/float64(quota), bytesText(quota))
		}
		fs = append(fs, f)
		r := max(st.DBSize-st.DBSizeInUse, 0)
		frags = append(frags, frag{m, r})
		if st.DBSize > 0 && float64(r)/float64(st.DBSize) >= defragWorthRatio && r >= defragWorthBytes {
			worth = true
		}
	}
	if len(frags) == 0 {
		return fs
	}
	// Followers first, the most to reclaim first; the leader last.
	slices.SortStableFunc(frags, func(a, b frag) int {
		if a.m.IsLeader != b.m.IsLeader {
			if a.m.IsLeader {
				return 1
			}
			return -1
		}
		return cmp.Compare(b.reclaimable, a.reclaimable)
	})
	var parts []string
	var total int64
	for _, f := range frags {
		parts = append(parts, fmt.Sprintf("%s %s", f.m.Label, bytesText(f.reclaimable)))
		total += f.reclaimable
	}
	d := Finding{Check: "defrag", Value: bytesText(total), Threshold: fmt.Sprintf("%.0f%% of a file and %s", defragWorthRatio*100, bytesText(defragWorthBytes)),
		Summary: "reclaimable by defragmentation: " + strings.Join(parts, ", ")}
	if worth {
		d.Level = Warn
		d.Hint = "defragment one member at a time, followers first and the leader last: each blocks its reads and writes while it runs; compact first if the history is long"
		d.Runbook = runbook("EtcdDatabaseQuotaHigh")
		for _, f := range frags {
			d.Commands = append(d.Commands, fmt.Sprintf("%s --endpoints=%s defrag", etcdctl, clientURL(f.m)))
		}
	}
	return append(fs, d)
}

// bytesText prints a size in binary units.
func bytesText(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
