package agent

import (
	"context"
	"fmt"
	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// replication follows the write probe's key with one long-lived watch on
// every member and times each committed write until each member's watch
// delivers it: the member has applied it and its watches work. A member
// that has not served a write within probes.watch.timeout is reported,
// as behind (it has not applied it: how far, in revisions and raft
// entries) or as a stalled watch (it has, but its watch did not deliver
// it), and etcdpulse_member_replication_lag_seconds keeps the age of the
// oldest write it has not served. With etcd.read_only there are no writes
// to follow, and etcdpulse_watch_enabled says so.
var replication = capability{
	name:     "replication",
	title:    "Replication and watch delivery",
	settings: scheduleSettings("watch", "checks of every member's watch for the write probe's key; a member that has not served a committed write within the timeout is reported behind or its watch stalled", func(c *Config) *ProbeSchedule { return &c.Probes.Watch }),
	metrics:  collectors.WatchMetrics,
	validate: func(c *Config, bad badFunc) { validateSchedule(c.Probes.Watch, "watch", bad) },
	wire: func(w *wiring) error {
		delivery, restarts, enabled := collectors.NewWatchMetrics(!w.cfg.Etcd.ReadOnly)
		w.collect(delivery, restarts, enabled)
		if w.cfg.Etcd.ReadOnly {
			return nil
		}
		i, t := w.cfg.Probes.Schedule(w.cfg.Probes.Watch)
		p := &probes.WatchProbe{Deadline: t, State: w.state, Delivery: delivery, Restarts: restarts, Logger: w.logger}
		w.collect(collectors.NewLagCollector(p))
		w.afterWrite(p.Committed)
		w.probe(p, probes.EveryMember, i, t)
		w.onStop(p.Close)
		w.check(func(_ context.Context, in checkInput) []Finding { return checkReplication(in.view) })
		return nil
	},
}

// checkReplication gives a line per member that is behind the others, in
// raft entries or by the write probe's watch, or whose watch stalled.
func checkReplication(v probes.View) []Finding {
	var fs []Finding
	for _, m := range v.Members {
		if !m.Reachable {
			continue
		}
		f := Finding{Check: "replication", Member: m.Label, Value: fmt.Sprintf("%d entries", m.RaftIndexLag), Threshold: fmt.Sprintf("%d entries", gateMaxLag),
			Summary: fmt.Sprintf("%s is %d raft entries behind", m.Label, m.RaftIndexLag)}
		o := m.Outcomes[probes.ProbeWatch]
		switch {
		case !o.OK && o.Reason == probes.ReasonWatchStalled:
			f.Level, f.Summary, f.Runbook = Warn, fmt.Sprintf("%s: its watch stalled: %s", m.Label, o.Err), runbook("EtcdWatchStalled")
		case lagging(m):
			f.Level, f.Summary, f.Runbook = Warn, fmt.Sprintf("%s is lagging: %s", m.Label, lagText(m)), runbook("EtcdReplicationLagging")
		}
		fs = append(fs, f)
	}
	return fs
}
