package collectors

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// ViewSource gives the latest evaluated cluster view; the runner is one.
type ViewSource interface {
	View() probes.View
	// Ready reports whether the first probe round is done; nothing is
	// exported before.
	Ready() bool
}

// ClusterCollector exports the cluster view: leader, quorum, members and
// the per-probe verdicts. It reads the last view and nothing else.
type ClusterCollector struct {
	src    ViewSource
	probes []string
	descs  map[string]*prometheus.Desc
}

// clusterMetrics are the catalogue rows this collector exports.
var clusterMetrics = []Metric{
	Up, LastRound, Requests, AgentRefused,
	HasLeader, LeaderVoters, LeaderDisagreement, LeaderChanges, Term, Members, VotingMembers, HealthyVotingMembers, QuorumSize, FaultTolerance,
	MemberInfo, LocalMemberInfo, MemberReachable, MemberHealthy, MemberIsLeader, MemberIsLearner, MemberRaftTerm, MemberRaftIndexLag, MemberApplyLag,
	MemberDBSize, MemberDBSizeInUse, MemberDBQuota, MemberAlarm,
	ProbeSuccess,
}

// NewClusterCollector returns a collector over src. everyMember lists the
// probes that run against every member: their success is exported for
// every member, 0 until a first run succeeds, rather than missing. Other
// probes' success shows only for the members they ran against.
func NewClusterCollector(src ViewSource, everyMember []string) *ClusterCollector {
	c := &ClusterCollector{src: src, probes: everyMember, descs: map[string]*prometheus.Desc{}}
	for _, m := range clusterMetrics {
		c.descs[m.Name] = m.Desc()
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *ClusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ClusterCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.src.Ready() {
		return // no round finished yet: /readyz says so
	}
	v := c.src.View()
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
		c.collectMember(ch, gauge, v, m, alarmsKnown, raised[m.Label])
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

func (c *ClusterCollector) collectMember(ch chan<- prometheus.Metric, gauge func(Metric, float64, ...string), v probes.View, m probes.MemberView, alarmsKnown bool, alarms map[string]bool) {
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
		gauge(MemberDBSize, float64(st.DBSize), l)
		gauge(MemberDBSizeInUse, float64(st.DBSizeInUse), l)
		if st.DBQuota > 0 {
			gauge(MemberDBQuota, float64(st.DBQuota), l)
		}
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
	for method, n := range m.Requests {
		ch <- prometheus.MustNewConstMetric(c.descs[Requests.Name], prometheus.CounterValue, float64(n), l, method)
	}
	// Probes of every member show from the start, 0 until they succeed;
	// the others (one member, the local one, the peers) only where they
	// ran.
	for _, p := range c.probes {
		gauge(ProbeSuccess, b2f(m.Outcomes[p].OK), p, l)
	}
	for p, o := range m.Outcomes {
		if !slices.Contains(c.probes, p) {
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
