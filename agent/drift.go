package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// drift reports how the cluster has drifted from the way it should run:
// members on different versions or quotas, an even number of voters, a
// learner left unpromoted, raft timeouts short for the measured peer
// round-trip time, corruption checks off, a downgrade left enabled, and
// members of another cluster. It runs no probe: the cluster figures come
// from the members' last status and the member list, the local member's
// settings from its flags (the etcd process the host capability finds,
// or the embedded server's configuration), read at scrape time.
var drift = capability{
	name:    "drift",
	title:   "Drift: versions, quotas, voters, learners, timeouts, corruption checks, downgrades, cluster ID",
	metrics: collectors.DriftMetrics,
	wire:    wireDrift,
}

// etcdFlagsReader is a local member whose settings are known in process
// (an embedded server).
type etcdFlagsReader interface {
	EtcdFlags() collectors.EtcdFlags
}

// errNoEtcdProcess: the host capability is off or looks for no process.
var errNoEtcdProcess = errors.New("the etcd process is not looked for (host.enabled, host.process_name, host.pid_file)")

func wireDrift(w *wiring) error {
	var flags func() (collectors.EtcdFlags, error)
	switch {
	case w.local != nil:
		if r, ok := w.local.(etcdFlagsReader); ok {
			flags = func() (collectors.EtcdFlags, error) { return r.EtcdFlags(), nil }
		}
	case w.etcdProcess != nil:
		proc := w.etcdProcess
		flags = func() (collectors.EtcdFlags, error) {
			pid, err := proc.PID()
			if err != nil {
				return collectors.EtcdFlags{}, err
			}
			return collectors.ReadEtcdProcessFlags(pid)
		}
	}
	var quota func(probes.MemberView) (int64, string)
	if w.capacity != nil {
		quota = w.capacity.Quota
	}
	c := collectors.NewDriftCollector(collectors.DriftOptions{View: w.view, Quota: quota, Flags: flags, Logger: w.logger.With("collector", "drift")})
	w.collect(c)
	w.onView(c.Observe)
	rtt := w.peerConnect
	w.check(func(_ context.Context, in checkInput) []Finding {
		return driftFindings(in.view, c, rtt, time.Now())
	})
	return nil
}

// Thresholds of the drift lines; the rules' are in alerts/drift.go.
const (
	// learnerThreshold: a learner catches up in minutes (a snapshot of a
	// few GB and the entries after it); one left for an hour was
	// forgotten.
	learnerThreshold = time.Hour
	// etcd's tuning guide (https://etcd.io/docs/v3.5/tuning/): the
	// heartbeat interval around the round-trip time between members
	// (0.5 to 1.5 times), the election timeout at least 10 times it.
	heartbeatMinRTTs = 0.5
	electionMinRTTs  = 10
)

// driftFindings are the drift lines of a check report. rtt gives the
// slowest last TCP connect to a peer's port, a round trip; nil or ok
// false when none was measured.
func driftFindings(v probes.View, c *collectors.DriftCollector, rtt func() (float64, bool), now time.Time) []Finding {
	var quota func(probes.MemberView) (int64, string)
	if c != nil {
		quota = c.Quota()
	}
	d := collectors.DriftOf(v, quota)
	var fs []Finding
	add := func(f Finding) { fs = append(fs, f) }

	if len(d.Versions) > 0 {
		f := Finding{Check: "drift_versions", Level: Pass, Threshold: "1 version", Runbook: runbook("EtcdVersionsDiffer"),
			Value: strconv.Itoa(len(d.Versions)), Summary: "every member runs etcd " + slices.Sorted(maps.Keys(d.Versions))[0]}
		if len(d.Versions) > 1 {
			f.Level = Warn
			f.Summary = fmt.Sprintf("%d etcd versions: %s", len(d.Versions), byValue(d.Versions, func(s string) string { return s }))
			f.Hint = "members run different etcd versions: fine during a rolling upgrade, drift after it; finish the upgrade (or the downgrade)"
		}
		add(f)
	}

	if quota != nil {
		f := Finding{Check: "drift_quota", Level: Pass, Threshold: "1 quota", Runbook: runbook("EtcdQuotasDiffer"), Value: strconv.Itoa(len(d.Quotas))}
		switch n := len(d.Quotas); {
		case n == 0:
			f.Summary = "no member's quota is known (etcd before 3.6 reports none; set etcd.metrics_url for the local member's)"
		case n == 1:
			f.Summary = "members' quota " + byValue(d.Quotas, collectors.FormatQuota)
		default:
			f.Level = Warn
			f.Summary = fmt.Sprintf("%d quotas: %s", n, byValue(d.Quotas, collectors.FormatQuota))
			f.Hint = "members refuse writes (NOSPACE) at different database sizes: give every member the same --quota-backend-bytes"
		}
		add(f)
	}

	if v.MembershipKnown {
		f := Finding{Check: "drift_voters", Level: Pass, Threshold: "an odd number", Runbook: runbook("EtcdEvenVotingMembers"),
			Value: strconv.Itoa(v.Voters), Summary: fmt.Sprintf("%d voting members", v.Voters)}
		if d.VotersEven() {
			f.Level = Warn
			f.Summary = fmt.Sprintf("%d voting members: an even number", v.Voters)
			f.Hint = fmt.Sprintf("%d voters tolerate %d failure(s), as %d do, and each commit waits for one more member: add or remove one", v.Voters, (v.Voters-1)/2, v.Voters-1)
		}
		add(f)

		l := Finding{Check: "drift_learners", Level: Pass, Threshold: "promoted within " + learnerThreshold.String(), Runbook: runbook("EtcdLearnerNotPromoted"), Summary: "no learner", Value: "0"}
		if len(d.Learners) > 0 {
			var parts []string
			var longest time.Duration
			for _, m := range d.Learners {
				if s, ok := c.LearnerFor(m.ID, now); ok {
					longest = max(longest, s)
					parts = append(parts, fmt.Sprintf("%s (seen for %s)", m.Label, s.Round(time.Second)))
				} else {
					parts = append(parts, m.Label)
				}
			}
			l.Value = longest.Round(time.Second).String()
			l.Summary = "learners not promoted: " + strings.Join(parts, ", ")
			l.Hint = "as long as this agent has watched; promote a learner once it has caught up (etcdctl member promote), or remove it"
			if longest > learnerThreshold {
				l.Level = Warn
			}
		}
		add(l)
	}

	if c != nil {
		if flags, ok := c.Flags(); ok {
			add(timingFinding(flags, rtt))
			add(corruptFinding(flags))
		}
	}

	if len(d.Versions) > 0 {
		f := Finding{Check: "drift_downgrade", Level: Pass, Threshold: "none enabled", Runbook: runbook("EtcdDowngradeInProgress"), Summary: "no downgrade in progress", Value: "0"}
		if d.Downgrade != nil {
			f.Level, f.Value = Warn, "1"
			f.Summary = fmt.Sprintf("a downgrade to %s is enabled (reported by %s)", d.Downgrade.TargetVersion, strings.Join(d.DowngradeMembers, ", "))
			f.Hint = "finish it (every member on the target version) or cancel it (etcdctl downgrade cancel): meanwhile no member of a newer version can join"
		}
		add(f)

		f = Finding{Check: "drift_cluster_id", Level: Pass, Threshold: "1 cluster ID", Runbook: runbook("EtcdClusterIdMismatch"), Value: strconv.Itoa(len(d.ClusterIDs))}
		hex := func(id uint64) string { return strconv.FormatUint(id, 16) }
		if len(d.ClusterIDs) > 1 {
			f.Level = Warn
			f.Summary = fmt.Sprintf("members disagree on the cluster ID: %s", byValue(d.ClusterIDs, hex))
			f.Hint = "a client URL in the member list leads to a member of another cluster: fix the member's --advertise-client-urls, or the member list"
		} else {
			f.Summary = "every member in cluster " + byValue(d.ClusterIDs, hex)
		}
		add(f)
	}
	return fs
}

// timingFinding compares the local member's raft timing with the
// measured round trip to its peers.
func timingFinding(flags collectors.EtcdFlags, rtt func() (float64, bool)) Finding {
	f := Finding{Check: "drift_timeouts", Level: Pass, Runbook: runbook("EtcdRaftTimeoutsTooShort"),
		Value: fmt.Sprintf("heartbeat %s, election timeout %s", millis(flags.Heartbeat), millis(flags.Election))}
	var seconds float64
	ok := false
	if rtt != nil {
		seconds, ok = rtt()
	}
	if !ok {
		f.Summary = f.Value + "; no peer round trip measured"
		return f
	}
	r := time.Duration(seconds * float64(time.Second))
	f.Threshold = fmt.Sprintf("heartbeat ≥ %.1f × RTT, election timeout ≥ %d × RTT (RTT %s)", heartbeatMinRTTs, electionMinRTTs, millis(r))
	f.Summary = fmt.Sprintf("%s, peer RTT %s", f.Value, millis(r))
	if float64(flags.Election) < electionMinRTTs*float64(r) || float64(flags.Heartbeat) < heartbeatMinRTTs*float64(r) {
		f.Level = Warn
		f.Summary = fmt.Sprintf("%s, short for a peer RTT of %s", f.Value, millis(r))
		f.Hint = "etcd's tuning guide: heartbeat about the round trip between members, election timeout at least 10 times it; set --heartbeat-interval and --election-timeout on every member"
	}
	return f
}

// corruptFinding: the initial check, and one of the runtime checks.
func corruptFinding(flags collectors.EtcdFlags) Finding {
	on := flags.Enabled()
	var off, enabled []string
	for _, c := range collectors.CorruptChecks {
		if on[c] {
			enabled = append(enabled, c)
		} else {
			off = append(off, c)
		}
	}
	f := Finding{Check: "drift_corrupt_check", Level: Pass, Threshold: "initial, and periodic or compact_hash", Runbook: runbook("EtcdCorruptionChecksOff"),
		Value: strings.Join(enabled, ", "), Summary: "corruption checks on: " + strings.Join(enabled, ", ")}
	if !on[collectors.CorruptCheckInitial] || !on[collectors.CorruptCheckPeriodic] && !on[collectors.CorruptCheckCompactHash] {
		// etcd's default: worth knowing, not a warning on every cluster
		// as etcd ships (the agent's own hash check compares members).
		f.Level = Info
		f.Summary = "corruption checks off: " + strings.Join(off, ", ")
		f.Hint = "etcd does not look for diverging members itself: enable the InitialCorruptCheck and CompactHashCheck feature gates (3.6+), or --experimental-initial-corrupt-check and --experimental-compact-hash-check-enabled (3.5)"
	}
	if f.Value == "" {
		f.Value = "none"
	}
	return f
}

// byValue prints members grouped by a value: "3.6.5 (m0), 3.7.3 (m1, m2)",
// the values in order.
func byValue[K interface{ ~string | ~int64 | ~uint64 }](groups map[K][]string, format func(K) string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		ms := slices.Sorted(slices.Values(groups[k]))
		parts = append(parts, fmt.Sprintf("%s (%s)", format(k), strings.Join(ms, ", ")))
	}
	return strings.Join(parts, ", ")
}
