package collectors

import (
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// What DriftCollector computes: how far the cluster has drifted from the
// way it should run. The cluster figures come from the members' last
// status and the member list; the local member's settings from its flags.
var (
	ClusterVersions = Metric{"etcdpulse_cluster_versions", Gauge,
		"Number of distinct etcd server versions among the members that answered their last status (etcdpulse_member_info names each member's): more than 1 outside an upgrade is drift.", nil}
	ClusterDBQuotas = Metric{"etcdpulse_cluster_db_quotas", Gauge,
		"Number of distinct backend quotas among the members whose quota this agent knows rather than assumes (etcdpulse_member_db_quota_source status or metrics_url): more than 1 means members refuse writes at different database sizes.", nil}
	ClusterVotersEven = Metric{"etcdpulse_cluster_voting_members_even", Gauge,
		"1 when the cluster has an even number of voting members: the last one adds no fault tolerance (4 voters tolerate 1 failure, as 3 do) and one more member must answer every commit.", nil}
	MemberLearnerSeconds = Metric{"etcdpulse_member_learner_seconds", Gauge,
		"Time since this agent first saw the member as a learner (not promoted); as long as the agent has run at most. Absent for voters.", []string{"member"}}
	ClusterDowngradeEnabled = Metric{"etcdpulse_cluster_downgrade_enabled", Gauge,
		"1 when a member that answered its last status reports a cluster downgrade enabled (etcdctl downgrade enable; etcd 3.6 and later), 0 otherwise.", nil}
	ClusterIDs = Metric{"etcdpulse_cluster_ids", Gauge,
		"Number of distinct cluster IDs in the response headers of the members that answered their last status: more than 1 means a client URL in the member list leads to a member of another cluster.", nil}
	EtcdHeartbeatInterval = Metric{"etcdpulse_etcd_heartbeat_interval_seconds", Gauge,
		"The local member's --heartbeat-interval, read from its command line, environment or --config-file (or the embedded server's configuration); etcd's default of 100 ms when not set. Absent when the etcd process cannot be read.", nil}
	EtcdElectionTimeout = Metric{"etcdpulse_etcd_election_timeout_seconds", Gauge,
		"The local member's --election-timeout, read as etcdpulse_etcd_heartbeat_interval_seconds; etcd's default of 1 s when not set.", nil}
	EtcdCorruptCheckEnabled = Metric{"etcdpulse_etcd_corrupt_check_enabled", Gauge,
		"1 when the local member runs the corruption check, by check: initial (before serving: --experimental-initial-corrupt-check, or the InitialCorruptCheck feature gate from 3.6), periodic (the leader's full hash check: --experimental-corrupt-check-time, or --corrupt-check-time from 3.6, above 0), compact_hash (the leader compares its followers' hashes at each compaction: --experimental-compact-hash-check-enabled in 3.5, or the CompactHashCheck feature gate from 3.6). Absent when the etcd process cannot be read.", []string{"check"}}
)

// DriftMetrics lists these rows in documentation order.
var DriftMetrics = []Metric{ClusterVersions, ClusterDBQuotas, ClusterVotersEven, MemberLearnerSeconds, ClusterDowngradeEnabled, ClusterIDs, EtcdHeartbeatInterval, EtcdElectionTimeout, EtcdCorruptCheckEnabled}

// The corruption checks: the values of the `check` label.
const (
	CorruptCheckInitial     = "initial"
	CorruptCheckPeriodic    = "periodic"
	CorruptCheckCompactHash = "compact_hash"
)

// CorruptChecks lists them.
var CorruptChecks = []string{CorruptCheckInitial, CorruptCheckPeriodic, CorruptCheckCompactHash}

// Enabled reports, by check, whether the member runs it.
func (f EtcdFlags) Enabled() map[string]bool {
	return map[string]bool{
		CorruptCheckInitial:     f.InitialCorruptCheck,
		CorruptCheckPeriodic:    f.CorruptCheckTime > 0,
		CorruptCheckCompactHash: f.CompactHashCheck,
	}
}

// Drift is what the members' last status and the member list say of the
// cluster's drift. Members are named by label.
type Drift struct {
	// Versions, Quotas and ClusterIDs: the members that answered, by
	// what they said (quotas: only those known, not assumed).
	Versions   map[string][]string
	Quotas     map[int64][]string
	ClusterIDs map[uint64][]string
	// Voters is the number of voting members (0 before the member list is
	// read).
	Voters int
	// Learners are the members not promoted.
	Learners []probes.MemberView
	// Downgrade is a downgrade some member reports enabled, and
	// DowngradeMembers the members that report it.
	Downgrade        *probes.Downgrade
	DowngradeMembers []string
}

// VotersEven reports an even, non-zero number of voters.
func (d Drift) VotersEven() bool { return d.Voters > 0 && d.Voters%2 == 0 }

// DriftOf computes the drift of a view; quota says a member's quota and
// where it came from (CapacityCollector.Quota).
func DriftOf(v probes.View, quota func(probes.MemberView) (int64, string)) Drift {
	d := Drift{Versions: map[string][]string{}, Quotas: map[int64][]string{}, ClusterIDs: map[uint64][]string{}}
	if v.MembershipKnown {
		d.Voters = v.Voters
	}
	for _, m := range v.Members {
		if m.IsLearner || m.Status != nil && m.Status.IsLearner {
			d.Learners = append(d.Learners, m)
		}
		st := m.Status
		if st == nil {
			continue
		}
		if st.Version != "" {
			d.Versions[st.Version] = append(d.Versions[st.Version], m.Label)
		}
		if st.ClusterID != 0 {
			d.ClusterIDs[st.ClusterID] = append(d.ClusterIDs[st.ClusterID], m.Label)
		}
		if quota != nil {
			if q, source := quota(m); source == QuotaFromStatus || source == QuotaFromMetricsURL {
				d.Quotas[q] = append(d.Quotas[q], m.Label)
			}
		}
		if st.Downgrade != nil && st.Downgrade.Enabled {
			d.Downgrade = st.Downgrade
			d.DowngradeMembers = append(d.DowngradeMembers, m.Label)
		}
	}
	return d
}

// DriftOptions configures DriftCollector.
type DriftOptions struct {
	View ViewSource
	// Quota says a member's quota and where it came from; nil: quotas are
	// not compared.
	Quota func(probes.MemberView) (int64, string)
	// Flags reads the local member's settings; nil: not known (the etcd
	// process is not looked for).
	Flags  func() (EtcdFlags, error)
	Logger *slog.Logger
}

// DriftCollector exports the drift gauges at scrape time, and keeps when
// it first saw each learner (Observe).
type DriftCollector struct {
	opts  DriftOptions
	descs descSet

	mu       sync.Mutex
	log      failureLog
	learners map[uint64]time.Time // learner's ID: first seen
}

// NewDriftCollector returns a collector over opts.View.
func NewDriftCollector(opts DriftOptions) *DriftCollector {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &DriftCollector{opts: opts, descs: newDescSet(DriftMetrics...), log: failureLog{logger: opts.Logger, failing: map[string]bool{}}, learners: map[uint64]time.Time{}}
}

// Observe learns a new view: the learners it names, and when each was
// first seen; members promoted or gone are forgotten.
func (c *DriftCollector) Observe(v probes.View) {
	if !v.MembershipKnown {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[uint64]bool{}
	for _, m := range v.Members {
		if m.ID == 0 || !m.IsLearner {
			continue
		}
		seen[m.ID] = true
		if _, ok := c.learners[m.ID]; !ok {
			c.learners[m.ID] = v.At
		}
	}
	maps.DeleteFunc(c.learners, func(id uint64, _ time.Time) bool { return !seen[id] })
}

// LearnerFor returns how long the agent has seen member id as a learner;
// ok is false when it does not see it as one.
func (c *DriftCollector) LearnerFor(id uint64, now time.Time) (d time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	since, ok := c.learners[id]
	if !ok {
		return 0, false
	}
	return max(now.Sub(since), 0), true
}

// Flags reads the local member's settings; ok is false when they cannot
// be read (the failure is logged once, and reported by Err).
func (c *DriftCollector) Flags() (f EtcdFlags, ok bool) {
	if c.opts.Flags == nil {
		return EtcdFlags{}, false
	}
	f, err := c.opts.Flags()
	c.mu.Lock()
	defer c.mu.Unlock()
	return f, c.log.report("the etcd member's flags", err)
}

// Err implements Failing: why the flags could not be read at the last
// scrape.
func (c *DriftCollector) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.err()
}

// Describe implements prometheus.Collector.
func (c *DriftCollector) Describe(ch chan<- *prometheus.Desc) { c.descs.describe(ch) }

// Collect implements prometheus.Collector.
func (c *DriftCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.opts.View.Ready() {
		return
	}
	gauge := func(m Metric, val float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[m.Name], prometheus.GaugeValue, val, labels...)
	}
	v := c.opts.View.View()
	d := DriftOf(v, c.opts.Quota)
	if len(d.Versions) > 0 {
		gauge(ClusterVersions, float64(len(d.Versions)))
		gauge(ClusterIDs, float64(len(d.ClusterIDs)))
		gauge(ClusterDowngradeEnabled, b2f(d.Downgrade != nil))
	}
	if c.opts.Quota != nil && len(d.Quotas) > 0 {
		gauge(ClusterDBQuotas, float64(len(d.Quotas)))
	}
	if v.MembershipKnown {
		gauge(ClusterVotersEven, b2f(d.VotersEven()))
	}
	now := time.Now()
	for _, m := range d.Learners {
		if s, ok := c.LearnerFor(m.ID, now); ok {
			gauge(MemberLearnerSeconds, s.Seconds(), m.Label)
		}
	}
	if f, ok := c.Flags(); ok {
		gauge(EtcdHeartbeatInterval, f.Heartbeat.Seconds())
		gauge(EtcdElectionTimeout, f.Election.Seconds())
		on := f.Enabled()
		for _, check := range CorruptChecks {
			gauge(EtcdCorruptCheckEnabled, b2f(on[check]), check)
		}
	}
}

// Quota is how the collector tells a member's quota; nil when quotas are
// not compared.
func (c *DriftCollector) Quota() func(probes.MemberView) (int64, string) { return c.opts.Quota }

// FormatQuota prints a quota in bytes the way --quota-backend-bytes is
// usually given: GiB or MiB when exact.
func FormatQuota(q int64) string {
	switch {
	case q > 0 && q%(1<<30) == 0:
		return strconv.FormatInt(q>>30, 10) + " GiB"
	case q > 0 && q%(1<<20) == 0:
		return strconv.FormatInt(q>>20, 10) + " MiB"
	}
	return strconv.FormatInt(q, 10) + " bytes"
}
