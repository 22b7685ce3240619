package agent

import (
	"context"
	"fmt"
	"strconv"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// membership is the core capability: etcd's member list (the voters come
// from it, never from scrape targets) and every member's status (leader,
// term, raft indexes, database size, alarms), evaluated with the reads
// into the cluster view: leader, quorum and fault tolerance.
var membership = capability{
	name:  "membership",
	title: "Membership, status and the cluster view",
	settings: append(
		scheduleSettings("status", "status calls to each member (leader, term, indexes, database, alarms)", func(c *Config) *ProbeSchedule { return &c.Probes.Status }),
		scheduleSettings("member_list", "reads of the member list", func(c *Config) *ProbeSchedule { return &c.Probes.MemberList })...),
	metrics: collectors.ClusterMetrics,
	validate: func(c *Config, bad badFunc) {
		validateSchedule(c.Probes.Status, "status", bad)
		validateSchedule(c.Probes.MemberList, "member_list", bad)
	},
	wire: func(w *wiring) error {
		i, t := w.cfg.Probes.Schedule(w.cfg.Probes.MemberList)
		w.probe(&probes.MemberListProbe{Targets: w.targets}, probes.AnyMember, i, t)
		i, t = w.cfg.Probes.Schedule(w.cfg.Probes.Status)
		w.probe(&probes.StatusProbe{State: w.state, Targets: w.targets, Local: w.local}, probes.EveryMember, i, t)
		w.collect(collectors.NewClusterCollector(w.view))
		w.check(checkMembership)
		return nil
	},
}

// validateSchedule checks a probe's schedule override.
func validateSchedule(s ProbeSchedule, name string, bad badFunc) {
	if s.Interval < 0 {
		bad("probes."+name+".interval", "must not be negative, got %s", s.Interval)
	}
	if s.Timeout < 0 {
		bad("probes."+name+".timeout", "must not be negative, got %s", s.Timeout)
	}
}

// checkMembership gives the cluster's lines of a check report: whether
// etcd answered at all, the leader, quorum and fault tolerance, each
// member's health and the active alarms.
func checkMembership(_ context.Context, in checkInput) []Finding {
	v := in.view
	if !v.MembershipKnown {
		f := Finding{Check: "cluster", Level: Fail, Summary: "no member answered: the member list could not be read",
			Hint: "etcd is down or unreachable from here, or refuses the agent (TLS, credentials)", Runbook: runbook("EtcdQuorumLost")}
		for _, m := range v.Members {
			for _, p := range []string{probes.ProbeStatus, probes.ProbeMemberList} {
				if o := m.Outcomes[p]; !o.OK && o.Err != "" {
					f.Hint += "; " + m.Label + ": " + o.Err
					break
				}
			}
		}
		return []Finding{f}
	}
	var fs []Finding
	switch {
	case v.LeaderUnknown:
		fs = append(fs, Finding{Check: "leader", Level: Warn, Summary: "leader unknown: members refuse the agent", Runbook: runbook("EtcdpulseAgentRefused")})
	case v.HasLeader:
		fs = append(fs, Finding{Check: "leader", Level: Pass, Summary: fmt.Sprintf("leader %s in term %d", v.LeaderLabel(), v.Term), Value: v.LeaderLabel()})
	case v.LeaderDisagreement:
		fs = append(fs, Finding{Check: "leader", Level: Fail, Summary: "members disagree on the leader", Hint: "a member is cut off from the others, or an election is under way", Runbook: runbook("EtcdLeaderDisagreement")})
	default:
		fs = append(fs, Finding{Check: "leader", Level: Fail, Summary: "no leader", Hint: "no write can commit until a leader is elected", Runbook: runbook("EtcdNoLeader")})
	}
	quorum := Finding{Check: "quorum", Value: strconv.Itoa(v.FaultTolerance), Threshold: "1",
		Summary: fmt.Sprintf("fault tolerance %d: %d of %d voters healthy, quorum %d", v.FaultTolerance, v.HealthyVoters, v.Voters, v.QuorumSize)}
	switch {
	case !v.HealthKnown:
		quorum.Level, quorum.Summary = Warn, "fault tolerance unknown: the health of every voter is not known"
	case v.FaultTolerance < 0:
		quorum.Level, quorum.Hint, quorum.Runbook = Fail, "quorum is lost: the cluster accepts no writes", runbook("EtcdQuorumLost")
	case v.FaultTolerance == 0 && v.Voters > 1:
		quorum.Level, quorum.Hint, quorum.Runbook = Warn, "one more failure loses quorum", runbook("EtcdQuorumAtRisk")
	}
	fs = append(fs, quorum)
	for _, m := range v.Members {
		f := Finding{Check: "member_health", Member: m.Label}
		switch {
		case m.HealthUnknown:
			f.Level, f.Summary, f.Runbook = Warn, fmt.Sprintf("%s: health unknown, the member refuses the agent (%s)", m.Label, m.Refused), runbook("EtcdpulseAgentRefused")
		case m.Healthy:
			f.Level, f.Summary = Pass, m.Label+" healthy"
			if m.IsLeader {
				f.Summary += " (leader)"
			}
		default:
			f.Level, f.Summary, f.Runbook = Fail, fmt.Sprintf("%s unhealthy: %s", m.Label, causeText(m)), runbook("EtcdMemberUnhealthy")
			if err := failure(m); err != "" {
				f.Hint = err
			}
		}
		fs = append(fs, f)
	}
	for _, a := range v.Alarms {
		f := Finding{Check: "alarm", Member: v.MemberLabel(a.MemberID), Level: Fail, Summary: fmt.Sprintf("alarm %s active on %s", a.Type, v.MemberLabel(a.MemberID)), Runbook: runbook("EtcdAlarmActive")}
		if a.Type == "NOSPACE" {
			f.Hint = "the database reached its quota: etcd accepts only reads and deletes until space is freed (compact, defragment) and the alarm disarmed"
			f.Runbook = runbook("EtcdDatabaseQuotaCritical")
		}
		fs = append(fs, f)
	}
	if len(v.Alarms) == 0 {
		fs = append(fs, Finding{Check: "alarm", Level: Pass, Summary: "no alarm active"})
	}
	return fs
}

// causeText says why a member is unhealthy, as far as the agent can tell.
func causeText(m probes.MemberView) string {
	if !m.CauseKnown || m.Cause == "" {
		return "cause unknown"
	}
	return string(m.Cause)
}

// failure is the error of the member's first failed core probe.
func failure(m probes.MemberView) string {
	for _, p := range []string{probes.ProbeStatus, probes.ProbeReadSerializable, probes.ProbeReadLinearizable} {
		if o := m.Outcomes[p]; !o.OK && o.Err != "" {
			return p + ": " + o.Err
		}
	}
	return ""
}
