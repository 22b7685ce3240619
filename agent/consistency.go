package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
		w.check(func(_ context.Context, in checkInput) []Finding { return checkHash(in.view, p.Last(), p.LastResult()) })
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

// checkHash gives the hash consistency line: the members whose store
// differs in the last conclusive check, or why there was none.
func checkHash(v probes.View, last probes.HashCheck, result string) []Finding {
	if !v.MembershipKnown {
		return nil // the cluster's own line fails
	}
	f := Finding{Check: "hash"}
	var bad []string
	for member, mismatch := range last.Mismatch {
		if mismatch {
			bad = append(bad, member)
		}
	}
	slices.Sort(bad)
	switch {
	case len(bad) > 0:
		f.Level, f.Runbook = Fail, runbook("EtcdMemberDataMismatch")
		f.Summary = fmt.Sprintf("the store of %s differs from the others' at revision %d", strings.Join(bad, ", "), last.Revision)
	case result == probes.HashMatch:
		f.Summary = fmt.Sprintf("every member's store hashes the same at revision %d", last.Revision)
	case result == "" && len(v.Members) == 1:
		f.Summary = "one member: no hashes to compare"
	case result == probes.HashSkippedUnhealthy:
		f.Level, f.Summary = Warn, "hashes not compared: a member is unhealthy"
	case result == probes.HashSkippedSlow:
		f.Level, f.Summary = Warn, "hashes not compared: a member is slow to answer (a defragmentation, or load)"
	case result == probes.HashInconclusive:
		f.Level, f.Summary = Warn, "hashes not compared: the members hashed different ranges (a compaction in flight)"
	default:
		f.Level = Warn
		f.Summary = "hashes not compared"
		for _, m := range v.Members {
			if o := m.Outcomes[probes.ProbeHash]; !o.At.IsZero() && o.Err != "" {
				f.Summary += ": " + o.Err
				break
			}
		}
	}
	return []Finding{f}
}
