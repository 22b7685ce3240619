package agent

import (
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
