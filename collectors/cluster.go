package collectors

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// What ClusterCollector computes from the evaluated view: the local member,
// the cluster, each member, each probe's verdict. The database figures are
// CapacityCollector's.
var (
	Up = Metric{"etcdpulse_up", Gauge,
		"1 when the local etcd member answered its last status probe, else 0.", nil}
	LastRound = Metric{"etcdpulse_last_round_timestamp_seconds", Gauge,
		"Unix time at which the agent last evaluated a probe round.", nil}
	AgentRefused = Metric{"etcdpulse_agent_refused", Gauge,
		"1 while the member refuses the agent, or the agent refuses the member's certificate, by reason: tls_certificate_expired, tls_unknown_authority, tls_name_mismatch, tls_bad_certificate, tls, authentication, permission_denied, wrong_member (another member answers at its advertised client URL); absent otherwise. While the member's status or health read is refused, its health is unknown, not bad: etcdpulse_member_healthy and the quorum figures are absent rather than wrong.",
		[]string{"member", "reason"}}
	HasLeader = Metric{"etcdpulse_cluster_has_leader", Gauge,
		"1 when the reachable members agree on one leader in one term, else 0; absent while members that refuse the agent (etcdpulse_agent_refused) could change the answer.", nil}
	LeaderVoters = Metric{"etcdpulse_cluster_leader_voters", Gauge,
		"Reachable voting members that report the same leader in the same term, the largest such group, the leader included. The leader commits while this is at least the quorum size, even when one cut-off member reports no leader (has_leader 0).", nil}
	LeaderDisagreement = Metric{"etcdpulse_cluster_leader_disagreement", Gauge,
		"1 when reachable members report different leaders or terms, else 0.", nil}
	LeaderChanges = Metric{"etcdpulse_cluster_leader_changes_total", Counter,
		"Leader changes the agent observed: a new agreed leader, or the same one in a new term.", nil}
	Term = Metric{"etcdpulse_cluster_raft_term", Gauge,
		"Raft term of the agreed leader, or of the last agreed leader while there is none.", nil}
	Members = Metric{"etcdpulse_cluster_members", Gauge,
		"Members in etcd's member list, learners included.", nil}
	VotingMembers = Metric{"etcdpulse_cluster_voting_members", Gauge,
		"Voting members (not learners) in etcd's member list.", nil}
	HealthyVotingMembers = Metric{"etcdpulse_cluster_healthy_voting_members", Gauge,
		"Voting members that answered their last linearizable read within the probe deadline.", nil}
	QuorumSize = Metric{"etcdpulse_cluster_quorum_size", Gauge,
		"Voting members needed for quorum: floor(voting members / 2) + 1.", nil}
	FaultTolerance = Metric{"etcdpulse_cluster_fault_tolerance", Gauge,
		"Healthy voting members minus quorum size: 0 means one more failure loses quorum, negative means quorum is lost.", nil}
	MemberInfo = Metric{"etcdpulse_member_info", Gauge,
		"Constant 1 per member, labelled with its hex ID and the etcd version it last reported.",
		[]string{"member", "member_id", "version"}}
	LocalMemberInfo = Metric{"etcdpulse_local_member_info", Gauge,
		"Constant 1 naming the member this agent sits beside, once it has answered; joins node-level metrics to a member.",
		[]string{"member", "member_id"}}
	MemberReachable = Metric{"etcdpulse_member_reachable", Gauge,
		"1 when the member answered its last status probe, else 0; absent while it refuses the agent (etcdpulse_agent_refused).", []string{"member"}}
	MemberHealthy = Metric{"etcdpulse_member_healthy", Gauge,
		"1 when a voting member answered its last linearizable read within the probe deadline, or a learner its last serializable read with the leader's entries of a round before applied, else 0; absent while it refuses the agent (etcdpulse_agent_refused).", []string{"member"}}
	MemberUnhealthyReason = Metric{"etcdpulse_member_unhealthy_reason", Gauge,
		"Why the member is not healthy (etcdpulse_member_healthy 0), one series per reason: 1 for the current one, 0 for the others, all 0 while it is healthy. " +
			"unreachable: it did not answer its last status probe. " +
			"not_serving: it answers status but not a serializable read (overloaded, starting, or its backend stuck, as behind a disk hung under its database). " +
			"learner_behind: a learner that serves serializable reads but has not applied what the leader had committed a round before. " +
			"wedged: a voter that answers status and serializable reads and reports a leader, but whose linearizable reads fail while a quorum of the other voters is healthy: the cluster commits without it, and its own WAL disk, raft loop or apply is stuck (or slower than the probe deadline). " +
			"cut_off: the same, but it reports no leader: it is cut off from its peers, usually by the network. " +
			"no_quorum: a voter that answers status and serializable reads, with fewer than a quorum of voters healthy: the cluster cannot commit (quorum lost, or an election), not the member's own fault. " +
			"Absent while the agent cannot tell: the member refuses the agent, its probes have not run yet, or whether a quorum is healthy is unknown.",
		[]string{"member", "reason"}}
	MemberIsLeader = Metric{"etcdpulse_member_is_leader", Gauge,
		"1 when the member is the agreed leader, else 0.", []string{"member"}}
	MemberIsLearner = Metric{"etcdpulse_member_is_learner", Gauge,
		"1 when the member is a learner (non-voting), else 0.", []string{"member"}}
	MemberRaftTerm = Metric{"etcdpulse_member_raft_term", Gauge,
		"Raft term the member reported.", []string{"member"}}
	MemberRaftIndexLag = Metric{"etcdpulse_member_raft_index_lag", Gauge,
		"Raft entries the member's committed index is behind the highest committed index any reachable member reported.", []string{"member"}}
	MemberApplyLag = Metric{"etcdpulse_member_raft_apply_lag", Gauge,
		"Raft entries the member has committed but not yet applied.", []string{"member"}}
	MemberAlarm = Metric{"etcdpulse_member_alarm_active", Gauge,
		"1 while an alarm raised by the member is active, by alarm type (NOSPACE, CORRUPT).", []string{"member", "alarm"}}
	ProbeSuccess = Metric{"etcdpulse_probe_success", Gauge,
		"1 when the probe's last run against the member succeeded, else 0.", []string{"probe", "member"}}
)

// ClusterMetrics lists these rows in documentation order.
var ClusterMetrics = []Metric{Up, LastRound, AgentRefused, HasLeader, LeaderVoters, LeaderDisagreement, LeaderChanges, Term, Members, VotingMembers, HealthyVotingMembers, QuorumSize, FaultTolerance, MemberInfo, LocalMemberInfo, MemberReachable, MemberHealthy, MemberUnhealthyReason, MemberIsLeader, MemberIsLearner, MemberRaftTerm, MemberRaftIndexLag, MemberApplyLag, MemberAlarm, ProbeSuccess}

// ViewSource gives the latest evaluated cluster view; the runner is one.
type ViewSource interface {
	View() probes.View
	// Ready reports whether the first probe round is done; nothing is
	// exported before.
	Ready() bool
	// EveryMemberProbes names the probes that run against every member:
	// their success is exported for every member, 0 until a first run
	// succeeds, rather than missing. Other probes' success shows only for
	// the members they ran against.
	EveryMemberProbes() []string
}

// ClusterCollector exports the cluster view: leader, quorum, members and
// the per-probe verdicts. It reads the last view and nothing else.
type ClusterCollector struct {
	src   ViewSource
	descs descSet
}

// NewClusterCollector returns a collector over src.
func NewClusterCollector(src ViewSource) *ClusterCollector {
	c := &ClusterCollector{src: src, descs: newDescSet(ClusterMetrics...)}
	return c
}

// Describe implements prometheus.Collector.
func (c *ClusterCollector) Describe(ch chan<- *prometheus.Desc) {
	c.descs.describe(ch)
}

// Collect implements prometheus.Collector.
func (c *ClusterCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.src.Ready() {
		return // no round finished yet: /readyz says so
	}
	v, every := c.src.View(), c.src.EveryMemberProbes()
	gauge := func(m Metric, val float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[m.Name], prometheus.GaugeValue, val, labels...)
	}
	counter := func(m Metric, val float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[m.Name], prometheus.CounterValue, val, labels...)
	}
	gauge(Up, b2f(v.Up))
	gauge(LastRound, float64(v.At.UnixNano())/1e9)
	// Unknown, not wrong, while members refuse the agent.
	if !v.LeaderUnknown {
		gauge(HasLeader, b2f(v.HasLeader))
		gauge(LeaderDisagreement, b2f(v.LeaderDisagreement))
	}
	counter(LeaderChanges, float64(v.LeaderChanges))
	if v.Term != 0 {
		gauge(Term, float64(v.Term))
	}
	if v.MembershipKnown {
		gauge(Members, float64(len(v.Members)))
		gauge(VotingMembers, float64(v.Voters))
		gauge(QuorumSize, float64(v.QuorumSize))
		if !v.LeaderUnknown {
			gauge(LeaderVoters, float64(v.LeaderVoters))
		}
	}
	if v.MembershipKnown && v.HealthKnown {
		gauge(HealthyVotingMembers, float64(v.HealthyVoters))
		gauge(FaultTolerance, float64(v.FaultTolerance))
	}
	labelOf := map[uint64]string{}
	for _, m := range v.Members {
		labelOf[m.ID] = m.Label
	}
	raised := map[string]map[string]bool{}
	for _, a := range v.Alarms {
		label, ok := labelOf[a.MemberID]
		if !ok {
			label = probes.MemberIDLabel(a.MemberID)
		}
		if raised[label] == nil {
			raised[label] = map[string]bool{}
		}
		raised[label][a.Type] = true
	}
	// Alarms are known only through a member that answered.
	alarmsKnown := slices.ContainsFunc(v.Members, func(m probes.MemberView) bool { return m.Reachable })
	for _, m := range v.Members {
		c.collectMember(gauge, v, m, every, alarmsKnown, raised[m.Label])
	}
	// An alarm raised by a member no longer listed still shows.
	for label, types := range raised {
		if _, listed := v.Member(label); !listed {
			for t := range types {
				gauge(MemberAlarm, 1, label, t)
			}
		}
	}
}

func (c *ClusterCollector) collectMember(gauge func(Metric, float64, ...string), v probes.View, m probes.MemberView, every []string, alarmsKnown bool, alarms map[string]bool) {
	l := m.Label
	if m.Refused != "" {
		gauge(AgentRefused, 1, l, string(m.Refused))
	}
	if !m.StatusRefused() {
		gauge(MemberReachable, b2f(m.Reachable), l)
	}
	if !m.HealthUnknown {
		gauge(MemberHealthy, b2f(m.Healthy), l)
	}
	if m.CauseKnown {
		for _, r := range probes.Causes {
			gauge(MemberUnhealthyReason, b2f(m.Cause == r), l, string(r))
		}
	}
	gauge(MemberIsLearner, b2f(m.IsLearner), l)
	if m.ID != 0 {
		version := ""
		if m.Status != nil {
			version = m.Status.Version
		}
		gauge(MemberInfo, 1, l, probes.MemberIDLabel(m.ID), version)
		if m.Local {
			gauge(LocalMemberInfo, 1, l, probes.MemberIDLabel(m.ID))
		}
	}
	if v.HasLeader || m.Reachable {
		gauge(MemberIsLeader, b2f(m.IsLeader), l)
	}
	if st := m.Status; st != nil {
		gauge(MemberRaftTerm, float64(st.Term), l)
		gauge(MemberRaftIndexLag, float64(m.RaftIndexLag), l)
		gauge(MemberApplyLag, float64(sub(st.RaftIndex, st.AppliedIndex)), l)
	}
	if m.ID != 0 && alarmsKnown {
		for _, t := range probes.AlarmTypes {
			gauge(MemberAlarm, b2f(alarms[t]), l, t)
		}
		for t := range alarms {
			if !slices.Contains(probes.AlarmTypes, t) {
				gauge(MemberAlarm, 1, l, t)
			}
		}
	}
	if m.Endpoint == "" {
		return // listed, but with no client URL to probe yet
	}
	// Probes of every member show from the start, 0 until they succeed;
	// the others (one member, the local one, the peers) only where they
	// ran.
	for _, p := range every {
		gauge(ProbeSuccess, b2f(m.Outcomes[p].OK), p, l)
	}
	for p, o := range m.Outcomes {
		if !slices.Contains(every, p) {
			gauge(ProbeSuccess, b2f(o.OK), p, l)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
