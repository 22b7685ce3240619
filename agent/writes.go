package agent

import (
	"context"
	"time"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// writes puts one key under the agent's prefix through the local member,
// <prefix><member>/write, on a lease the agent keeps alive and revokes when
// it stops, and times the commit. etcd.read_only turns it off, and
// etcdpulse_write_enabled says so.
var writes = capability{
	name:     "writes",
	title:    "Writes",
	settings: scheduleSettings("write", "puts of the write probe's key through the local member", func(c *Config) *ProbeSchedule { return &c.Probes.Write }),
	metrics:  collectors.WriteMetrics,
	defaults: func(c *Config) { c.Probes.Write.Interval = Duration(DefaultWriteInterval) },
	validate: func(c *Config, bad badFunc) { validateSchedule(c.Probes.Write, "write", bad) },
	wire: func(w *wiring) error {
		duration, enabled := collectors.NewWriteMetrics(!w.cfg.Etcd.ReadOnly)
		w.collect(duration, enabled)
		if w.cfg.Etcd.ReadOnly {
			return nil
		}
		i, t := w.cfg.Probes.Schedule(w.cfg.Probes.Write)
		p := &probes.WriteProbe{Prefix: w.cfg.Etcd.KeyPrefix, LeaseTTL: writeLeaseTTL, Duration: duration, Committed: w.wroteAt}
		w.probe(p, probes.LocalMember, i, t)
		w.onStop(p.Close)
		w.check(func(_ context.Context, in checkInput) []Finding {
			return outcomeLines(in.view, "write", probes.ProbeWrite, Fail, "EtcdWritesFailing", "a write through %s committed in %s")
		})
		return nil
	},
}

// DefaultWriteInterval: one put every 5 s per agent. Each put is a
// revision that etcd keeps until the next compaction; the Kubernetes API
// server compacts every 5 minutes, but an etcd outside Kubernetes without
// --auto-compaction-retention keeps them all (docs/security.md gives the
// bytes).
const DefaultWriteInterval = 5 * time.Second

// writeLeaseTTL is the write probe's lease: a key left by an agent that
// died goes within 30 s, and the probe renews it every 10 s.
const writeLeaseTTL = 30 * time.Second
