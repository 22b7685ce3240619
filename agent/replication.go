package agent

import (
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
		return nil
	},
}
