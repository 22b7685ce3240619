package agent

import (
	"time"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// consistency compares the members' key-value stores: HashKV of every
// member at one revision they have all applied, over the same compact
// revision (probes.HashProbe). It reads every member's whole store, so it
// runs rarely (every 5 minutes) and is skipped while a member is unhealthy
// or slow. Every agent runs it: a check does not depend on one agent
// being up, at the cost of one HashKV per member per agent per interval
// (docs/benchmarks.md has the figures).
var consistency = capability{
	name:     "consistency",
	title:    "Hash consistency",
	settings: scheduleSettings("hash", "hash consistency checks (HashKV of every member at one revision)", func(c *Config) *ProbeSchedule { return &c.Probes.Hash }),
	metrics:  collectors.HashMetrics,
	defaults: func(c *Config) {
		c.Probes.Hash.Interval = Duration(DefaultHashInterval)
		c.Probes.Hash.Timeout = Duration(DefaultHashTimeout)
	},
	validate: func(c *Config, bad badFunc) { validateSchedule(c.Probes.Hash, "hash", bad) },
	wire: func(w *wiring) error {
		checks := collectors.NewHashChecks()
		i, t := w.cfg.Probes.Schedule(w.cfg.Probes.Hash)
		p := &probes.HashProbe{
			Targets: w.targets, View: func() probes.View { return w.view.View() },
			Key: w.cfg.Etcd.KeyPrefix + "health", SlowThreshold: hashSlowThreshold,
			Checks: checks, Logger: w.logger,
		}
		w.collect(checks, collectors.NewHashCollector(p))
		w.probe(p, probes.AnyMember, i, t)
		return nil
	},
}

// Defaults of the hash consistency check: every 5 minutes, a minute to
// hash every member's store (HashKV of a 500 MB store takes seconds).
const (
	DefaultHashInterval = 5 * time.Minute
	DefaultHashTimeout  = time.Minute
)

// hashSlowThreshold: a member slower than this to answer a serializable
// read postpones the check.
const hashSlowThreshold = 500 * time.Millisecond
