package agent

import (
	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// reads reads one key under the agent's prefix from every member, both
// linearizably (through the leader and a quorum: the member is healthy)
// and serializably (from the member's own store: the member is alive).
// The key need not exist, and its value is never looked at. The verdicts
// go into the cluster view; the capability exports nothing of its own.
var reads = capability{
	name:     "reads",
	title:    "Reads",
	settings: scheduleSettings("read", "linearizable and serializable reads of each member", func(c *Config) *ProbeSchedule { return &c.Probes.Read }),
	metrics:  []collectors.Metric{},
	validate: func(c *Config, bad badFunc) { validateSchedule(c.Probes.Read, "read", bad) },
	wire: func(w *wiring) error {
		i, t := w.cfg.Probes.Schedule(w.cfg.Probes.Read)
		key := w.cfg.Etcd.KeyPrefix + "health"
		w.probe(&probes.ReadProbe{Key: key}, probes.EveryMember, i, t)
		w.probe(&probes.ReadProbe{Key: key, Serializable: true}, probes.EveryMember, i, t)
		return nil
	},
}
