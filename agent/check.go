package agent

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/etcdpulse/etcdpulse/probes"
)

// Level grades one line of a check report.
type Level int

// Levels, in the order of their gravity; a report's level is its worst
// line's. INFO is a setting worth knowing that is also etcd's default
// (its corruption checks are off unless turned on): it does not change
// the exit code, so that a check of a cluster as etcd ships it passes.
const (
	Pass Level = iota
	Info
	Warn
	Fail
)

func (l Level) String() string {
	switch l {
	case Pass:
		return "PASS"
	case Info:
		return "INFO"
	case Warn:
		return "WARN"
	}
	return "FAIL"
}

// MarshalText writes PASS, WARN or FAIL.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads PASS, WARN or FAIL.
func (l *Level) UnmarshalText(b []byte) error {
	for _, c := range []Level{Pass, Info, Warn, Fail} {
		if string(b) == c.String() {
			*l = c
			return nil
		}
	}
	return fmt.Errorf("level %q: want PASS, INFO, WARN or FAIL", b)
}

// Finding is one line of a check report: what was measured, against what,
// and what to do about it.
type Finding struct {
	// Check names what was checked, stable across versions ("quorum",
	// "fsync_p99", "drift_versions"): scripts match on it.
	Check string `json:"check"`
	// Member is the member the line is about; "" for the cluster.
	Member string `json:"member,omitempty"`
	Level  Level  `json:"level"`
	// Summary is the line itself: the measured value against the
	// threshold, "fsync p99 14 ms > 10 ms".
	Summary string `json:"summary"`
	// Value and Threshold are the measured value and the limit it was
	// held to, as printed ("14 ms", "10 ms"); "" when there is none.
	Value     string `json:"value,omitempty"`
	Threshold string `json:"threshold,omitempty"`
	// Hint says what the line means and what to do.
	Hint string `json:"hint,omitempty"`
	// Runbook is the runbook to follow, relative to the repository
	// (docs/runbooks/EtcdFsyncSlow.md); "" when none applies.
	Runbook string `json:"runbook,omitempty"`
	// Commands are exact commands to run, in order.
	Commands []string `json:"commands,omitempty"`
}

// runbook is the path of an alert's runbook.
func runbook(alert string) string { return "docs/runbooks/" + alert + ".md" }

// Report is the result of a check: every line, the worst first.
type Report struct {
	At time.Time `json:"at"`
	// Endpoints are the client URLs the check was given.
	Endpoints []string `json:"endpoints"`
	// Level is the worst line's.
	Level    Level     `json:"level"`
	Findings []Finding `json:"findings"`
	// Maintenance is the gate's answer when the check was asked about a
	// member.
	Maintenance *Gate `json:"maintenance,omitempty"`
}

// ExitCode is the check command's exit code: 0 when every line passed (or
// informs), 1 with warnings, 2 with failures.
func (r Report) ExitCode() int {
	switch r.Level {
	case Warn:
		return 1
	case Fail:
		return 2
	}
	return 0
}

// CheckOptions tune a one-off check.
type CheckOptions struct {
	// Disk is how long the fsync probe runs, back to back, for the disk
	// line; 0 is DefaultCheckDisk, negative skips it.
	Disk time.Duration
	// Maintenance, when set, is the member (name or ID) the maintenance
	// gate is asked about.
	Maintenance string
}

// DefaultCheckDisk is how long a check runs the fsync probe: a few
// hundred syncs on most disks, enough for a p99.
const DefaultCheckDisk = 5 * time.Second

// checkInput is what a capability's check reads.
type checkInput struct {
	// view is the cluster once every member's health is known, or as far
	// as the check's deadline let it be known.
	view probes.View
	opts CheckOptions
}

// checkFunc is a capability's part of a check: its report lines.
type checkFunc func(ctx context.Context, in checkInput) []Finding

// check registers the capability's lines of a check report.
func (w *wiring) check(f checkFunc) {
	w.checks = append(w.checks, f)
}

// Check probes the cluster once, as `etcdpulse check` does: it runs every
// probe until every member's health is known (or ctx ends), then asks
// each capability for its lines. It is for an agent that was not started;
// Stop it afterwards. It never fails: what etcd does not answer is a
// failed line.
func (a *Agent) Check(ctx context.Context, opts CheckOptions) Report {
	if opts.Disk == 0 {
		opts.Disk = DefaultCheckDisk
	}
	v := a.settle(ctx)
	in := checkInput{view: v, opts: opts}
	var fs []Finding
	for _, f := range a.checks {
		fs = append(fs, f(ctx, in)...)
	}
	r := Report{At: time.Now(), Endpoints: a.cfg.Etcd.Endpoints, Findings: fs}
	if opts.Maintenance != "" {
		g := maintenanceGate(v, opts.Maintenance, a.cfg.Etcd.etcdctl())
		r.Maintenance = &g
	}
	sortFindings(r.Findings)
	for _, f := range r.Findings {
		r.Level = max(r.Level, f.Level)
	}
	if r.Maintenance != nil && !r.Maintenance.Allowed {
		// The question asked was whether the member can go: no fails.
		r.Level = Fail
	}
	return r
}

// settle runs probe rounds until a round has run on a view that knew
// every member's health (the probes that wait for that, the hash check,
// have then run too), for at most settleRounds rounds or until ctx ends.
// The first round reads the member list; the next probes every member it
// named.
func (a *Agent) settle(ctx context.Context) probes.View {
	var v probes.View
	settled := false
	for i := 0; i < settleRounds && ctx.Err() == nil; i++ {
		v = a.runner.RunOnce(ctx)
		done := v.MembershipKnown && v.HealthKnown && allJudged(v)
		if done && settled {
			break
		}
		settled = done
	}
	return v
}

// settleRounds bounds the rounds a check waits for: the member list, a
// round for every member, one on the settled view, and one more for a
// member that answered late.
const settleRounds = 5

// allJudged: the agent could tell, for every member, whether it is
// healthy and why not.
func allJudged(v probes.View) bool {
	for _, m := range v.Members {
		if !m.CauseKnown && !m.HealthUnknown {
			return false
		}
	}
	return true
}

// sortFindings puts failures first, then warnings, then passes; within a
// level, in the order the capabilities gave them.
func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int { return cmp.Compare(b.Level, a.Level) })
}

// millis prints a duration in milliseconds, as etcd's guidance states its
// limits.
func millis(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// memberList names members for a line: "etcd-1, etcd-2".
func memberList(ms []probes.MemberView) string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Label
	}
	return strings.Join(names, ", ")
}

// outcomeLines gives a line per member that a probe ran against: PASS with
// its duration (okFormat takes the member and the duration), or failLevel
// with the error and the alert's runbook.
func outcomeLines(v probes.View, check, probe string, failLevel Level, alert, okFormat string) []Finding {
	var fs []Finding
	for _, m := range v.Members {
		o, ok := m.Outcomes[probe]
		if !ok || o.At.IsZero() {
			continue
		}
		f := Finding{Check: check, Member: m.Label, Value: millis(o.Duration)}
		if o.OK {
			f.Summary = fmt.Sprintf(okFormat, m.Label, millis(o.Duration))
		} else {
			f.Level, f.Runbook = failLevel, runbook(alert)
			f.Summary = fmt.Sprintf("%s %s failed (%s): %s", m.Label, strings.ReplaceAll(check, "_", " "), o.Reason, o.Err)
			if o.Reason.AgentSide() {
				f.Level, f.Runbook = Warn, runbook("EtcdpulseAgentRefused")
			}
		}
		fs = append(fs, f)
	}
	return fs
}
