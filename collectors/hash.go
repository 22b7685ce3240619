package collectors

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// The hash consistency check's rows.
var (
	MemberHashMismatch = Metric{"etcdpulse_member_hash_mismatch", Gauge,
		"1 when the member was in the minority in the last conclusive hash consistency check: its HashKV at the revision every member had applied, over the same compact revision, differs from the largest group of members that agree (every member when no group is a majority); 0 when it agreed. Absent before the first conclusive check.", []string{"member"}}
	HashCheckTimestamp = Metric{"etcdpulse_hash_check_timestamp_seconds", Gauge,
		"Unix time of the last conclusive hash consistency check (match or mismatch).", nil}
	HashChecks = Metric{"etcdpulse_hash_checks_total", Counter,
		"Hash consistency checks by result: match, mismatch, inconclusive (the members' compact revisions differed in every attempt), skipped_unhealthy (a member unreachable or unhealthy), skipped_slow (a member slow to answer a serializable read, as during a defragmentation).", []string{"result"}}
)

// HashMetrics lists these rows in documentation order.
var HashMetrics = []Metric{MemberHashMismatch, HashCheckTimestamp, HashChecks}

// NewHashChecks returns the counter of checks by result, every result
// present from the start.
func NewHashChecks() *prometheus.CounterVec {
	return HashChecks.counterBy(probes.HashResults)
}

// HashSource gives the last conclusive check.
type HashSource interface {
	Last() probes.HashCheck
}

// HashCollector exports the last conclusive check.
type HashCollector struct {
	src            HashSource
	mismatch, when *prometheus.Desc
}

// NewHashCollector returns a collector of src's last check.
func NewHashCollector(src HashSource) *HashCollector {
	return &HashCollector{src: src, mismatch: MemberHashMismatch.Desc(), when: HashCheckTimestamp.Desc()}
}

// Describe implements prometheus.Collector.
func (c *HashCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.mismatch; ch <- c.when }

// Collect implements prometheus.Collector.
func (c *HashCollector) Collect(ch chan<- prometheus.Metric) {
	last := c.src.Last()
	if last.At.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.when, prometheus.GaugeValue, float64(last.At.UnixNano())/1e9)
	members := make([]string, 0, len(last.Mismatch))
	for m := range last.Mismatch {
		members = append(members, m)
	}
	slices.Sort(members)
	for _, m := range members {
		v := 0.0
		if last.Mismatch[m] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.mismatch, prometheus.GaugeValue, v, m)
	}
}
