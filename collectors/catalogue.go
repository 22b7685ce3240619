// Package collectors turns the probes' latest results into Prometheus
// metrics at scrape time. A scrape never calls etcd.
package collectors

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Type is a metric's Prometheus type.
type Type string

// The metric types the catalogue uses.
const (
	Gauge     Type = "gauge"
	Counter   Type = "counter"
	Histogram Type = "histogram"
)

// Metric is one row of the catalogue: every metric etcdpulse exports.
type Metric struct {
	Name   string
	Type   Type
	Help   string
	Labels []string
	// Group orders the reference documentation.
	Group string
}

// Desc returns the metric's Prometheus descriptor.
func (m Metric) Desc() *prometheus.Desc {
	return prometheus.NewDesc(m.Name, m.Help, m.Labels, nil)
}

// The catalogue. Alert rules, dashboards and docs/metrics.md read it; add a
// metric here first.
var (
	Up = Metric{"etcdpulse_up", Gauge,
		"1 when the local etcd member answered its last status probe, else 0.", nil, "agent"}
	BuildInfo = Metric{"etcdpulse_build_info", Gauge,
		"A metric with a constant '1' value labeled by version, revision, branch, goversion from which etcdpulse was built, and the goos and goarch for the build.",
		[]string{"branch", "goarch", "goos", "goversion", "revision", "tags", "version"}, "agent"}
	LastRound = Metric{"etcdpulse_last_round_timestamp_seconds", Gauge,
		"Unix time at which the agent last evaluated a probe round.", nil, "agent"}
	Requests = Metric{"etcdpulse_etcd_requests_total", Counter,
		"gRPC requests the agent sent to etcd, by member and method: the agent's own load on etcd.",
		[]string{"member", "method"}, "agent"}

	HasLeader = Metric{"etcdpulse_cluster_has_leader", Gauge,
		"1 when the reachable members agree on one leader in one term, else 0.", nil, "cluster"}
	LeaderDisagreement = Metric{"etcdpulse_cluster_leader_disagreement", Gauge,
		"1 when reachable members report different leaders or terms, else 0.", nil, "cluster"}
	LeaderChanges = Metric{"etcdpulse_cluster_leader_changes_total", Counter,
		"Leader changes the agent observed: a new agreed leader, or the same one in a new term.", nil, "cluster"}
	Term = Metric{"etcdpulse_cluster_raft_term", Gauge,
		"Raft term of the agreed leader, or of the last agreed leader while there is none.", nil, "cluster"}
	Members = Metric{"etcdpulse_cluster_members", Gauge,
		"Members in etcd's member list, learners included.", nil, "cluster"}
	VotingMembers = Metric{"etcdpulse_cluster_voting_members", Gauge,
		"Voting members (not learners) in etcd's member list.", nil, "cluster"}
	HealthyVotingMembers = Metric{"etcdpulse_cluster_healthy_voting_members", Gauge,
		"Voting members that answered their last linearizable read within the probe deadline.", nil, "cluster"}
	QuorumSize = Metric{"etcdpulse_cluster_quorum_size", Gauge,
		"Voting members needed for quorum: floor(voting members / 2) + 1.", nil, "cluster"}
	FaultTolerance = Metric{"etcdpulse_cluster_fault_tolerance", Gauge,
		"Healthy voting members minus quorum size: 0 means one more failure loses quorum, negative means quorum is lost.", nil, "cluster"}

	MemberInfo = Metric{"etcdpulse_member_info", Gauge,
		"Constant 1 per member, labelled with its hex ID and the etcd version it last reported.",
		[]string{"member", "member_id", "version"}, "member"}
	MemberReachable = Metric{"etcdpulse_member_reachable", Gauge,
		"1 when the member answered its last status probe, else 0.", []string{"member"}, "member"}
	MemberHealthy = Metric{"etcdpulse_member_healthy", Gauge,
		"1 when the member answered its last linearizable read within the probe deadline, else 0.", []string{"member"}, "member"}
	MemberIsLeader = Metric{"etcdpulse_member_is_leader", Gauge,
		"1 when the member is the agreed leader, else 0.", []string{"member"}, "member"}
	MemberIsLearner = Metric{"etcdpulse_member_is_learner", Gauge,
		"1 when the member is a learner (non-voting), else 0.", []string{"member"}, "member"}
	MemberRaftTerm = Metric{"etcdpulse_member_raft_term", Gauge,
		"Raft term the member reported.", []string{"member"}, "member"}
	MemberRaftIndexLag = Metric{"etcdpulse_member_raft_index_lag", Gauge,
		"Raft entries the member's committed index is behind the highest committed index any reachable member reported.", []string{"member"}, "member"}
	MemberApplyLag = Metric{"etcdpulse_member_raft_apply_lag", Gauge,
		"Raft entries the member has committed but not yet applied.", []string{"member"}, "member"}
	MemberDBSize = Metric{"etcdpulse_member_db_size_bytes", Gauge,
		"Physical size of the member's backend database.", []string{"member"}, "member"}
	MemberDBSizeInUse = Metric{"etcdpulse_member_db_size_in_use_bytes", Gauge,
		"Logically used size of the member's backend database; the rest is reclaimable by defragmentation.", []string{"member"}, "member"}
	MemberDBQuota = Metric{"etcdpulse_member_db_quota_bytes", Gauge,
		"Backend quota of the member (--quota-backend-bytes); writes stop with a NOSPACE alarm past it.", []string{"member"}, "member"}
	MemberAlarm = Metric{"etcdpulse_member_alarm_active", Gauge,
		"1 while an alarm raised by the member is active, by alarm type (NOSPACE, CORRUPT).", []string{"member", "alarm"}, "member"}

	ProbeSuccess = Metric{"etcdpulse_probe_success", Gauge,
		"1 when the probe's last run against the member succeeded, else 0.", []string{"probe", "member"}, "probe"}
	ProbeDuration = Metric{"etcdpulse_probe_duration_seconds", Histogram,
		"Duration of probe runs, failed ones included.", []string{"probe"}, "probe"}
)

// Catalogue lists every metric etcdpulse exports, in documentation order.
var Catalogue = []Metric{
	Up, BuildInfo, LastRound, Requests,
	HasLeader, LeaderDisagreement, LeaderChanges, Term, Members, VotingMembers, HealthyVotingMembers, QuorumSize, FaultTolerance,
	MemberInfo, MemberReachable, MemberHealthy, MemberIsLeader, MemberIsLearner, MemberRaftTerm, MemberRaftIndexLag, MemberApplyLag,
	MemberDBSize, MemberDBSizeInUse, MemberDBQuota, MemberAlarm,
	ProbeSuccess, ProbeDuration,
}

// Lookup returns the catalogue row for a metric name; histogram series
// (_bucket, _sum, _count) resolve to their family.
func Lookup(name string) (Metric, bool) {
	for _, m := range Catalogue {
		if m.Name == name {
			return m, true
		}
		if m.Type == Histogram {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if strings.TrimSuffix(name, s) == m.Name && name != m.Name {
					return m, true
				}
			}
		}
	}
	return Metric{}, false
}

var groupTitles = map[string]string{
	"agent":   "Agent",
	"cluster": "Cluster",
	"member":  "Members",
	"probe":   "Probes",
}

// Markdown renders the metrics reference (docs/metrics.md).
func Markdown() string {
	var b strings.Builder
	b.WriteString("# Metrics reference\n\n")
	b.WriteString("Generated from the catalogue in `collectors/catalogue.go` by `go run ./cmd/etcdpulse docs metrics`; do not edit by hand.\n\n")
	b.WriteString("`member` is the etcd member name, or its hex ID while the name is empty. Node and cluster identity come from Prometheus target labels.\n")
	b.WriteString("Per-member values that come from a member's status are absent while the member does not answer; `etcdpulse_member_reachable` says so.\n")
	group := ""
	for _, m := range Catalogue {
		if m.Group != group {
			group = m.Group
			fmt.Fprintf(&b, "\n## %s\n\n| metric | type | labels | meaning |\n|---|---|---|---|\n", groupTitles[group])
		}
		labels := "—"
		if len(m.Labels) > 0 {
			labels = "`" + strings.Join(m.Labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", m.Name, m.Type, labels, m.Help)
	}
	return b.String()
}
