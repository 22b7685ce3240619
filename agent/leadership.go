package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// leadership explains each leader change the agent sees. It keeps, per
// member, a short history of what the cluster views said of it (its
// status run's outcome and reason, its health and cause, a refused dial,
// the peer network probe, and on its own node its PID and the fsync
// probe's stall), and once the evidence about the old leader is
// conclusive, or the evidence window after the change closes, counts the
// change by cause, logs it and records it as a span.
var leadership = capability{
	name:    "leadership",
	title:   "Leader changes and their causes",
	metrics: collectors.LeadershipMetrics,
	wire:    wireLeadership,
}

// LeaderCause is why the leader changed, as far as one agent can tell.
// The set is fixed: it labels etcdpulse_leader_changes_total.
type LeaderCause string

// Causes of a leader change, in the order the evidence is weighed.
const (
	// LeaderPlannedTransfer: the old leader stayed reachable and healthy
	// across the change (MoveLeader, or etcd's transfer before a
	// graceful stop that did not follow).
	LeaderPlannedTransfer LeaderCause = "planned_transfer"
	// LeaderRestart: the old leader's process restarted: it refused
	// connections and answered again, or its PID changed.
	LeaderRestart LeaderCause = "restart"
	// LeaderUnreachable: the old leader timed out (frozen, or the network
	// to it black-holed), or refused connections and did not come back
	// within the evidence window.
	LeaderUnreachable LeaderCause = "unreachable"
	// LeaderDiskStall: on the old leader's own node, the fsync probe
	// stalled or the member was wedged.
	LeaderDiskStall LeaderCause = "disk_stall"
	// LeaderCutOff: the old leader answered the agent but was cut off from
	// its peers (cause cut_off, or only its peer port failing).
	LeaderCutOff LeaderCause = "cut_off"
	// LeaderUnknown: none of the above could be told.
	LeaderUnknown LeaderCause = "unknown"
)

// LeaderCauses lists every cause, for the metric, documentation and tests.
var LeaderCauses = []LeaderCause{LeaderPlannedTransfer, LeaderRestart, LeaderUnreachable, LeaderDiskStall, LeaderCutOff, LeaderUnknown}

// The evidence window. A frozen leader's status runs time out only at
// their deadline (2 s by default), after the change may already be seen,
// and a leader that transferred its leadership before a graceful stop
// refuses connections a moment after it: the verdict waits for both.
const (
	// leaderEvidenceBefore is how far before the last view that agreed on
	// the old leader its history counts.
	leaderEvidenceBefore = 2 * time.Second
	// leaderEvidenceWindow is the longest the verdict waits after the
	// change.
	leaderEvidenceWindow = 10 * time.Second
	// leaderPlannedHold is how long the old leader must stay reachable
	// and healthy after the change for a planned transfer, when nothing
	// else decides earlier.
	leaderPlannedHold = 5 * time.Second
	// leaderHistory bounds the history kept per member.
	leaderHistory = 30 * time.Second
)

// Span, event and attribute names of an explained leader change.
const (
	SpanLeaderChange        = "etcdpulse.leader_change"
	EventLeaderChangeCause  = "leader_change_cause"
	AttrLeaderChangeCause   = attribute.Key("etcdpulse.leader_change.cause")
	AttrLeaderChangeEvid    = attribute.Key("etcdpulse.leader_change.evidence")
	AttrLeaderChangeDecided = attribute.Key("etcdpulse.leader_change.decided_after_seconds")
	AttrLeaderChangeLocal   = attribute.Key("etcdpulse.leader_change.previous_leader_local")
)

func wireLeadership(w *wiring) error {
	causes := make([]string, len(LeaderCauses))
	for i, c := range LeaderCauses {
		causes[i] = string(c)
	}
	counter := collectors.NewLeaderChanges(causes)
	w.collect(counter)
	lw := &leaderWatch{
		counter: counter, logger: w.logger, tracer: w.tracer,
		// Read at view time: the disk and host capabilities are wired
		// after this one.
		local: func() localEvidence {
			var e localEvidence
			if w.etcdProcess != nil {
				e.pid, _ = w.etcdProcess.PID() // 0 while not found
			}
			if w.fsync != nil {
				s := w.fsync.State()
				e.fsyncStalled = !s.OpStart.IsZero() && time.Since(s.OpStart) > s.StallThreshold
			}
			return e
		},
		conn: func(id uint64) (refused time.Time, dials uint64) {
			for _, t := range w.targets.All() {
				if t.ID() == id {
					if err, at := t.LastConnectionError(); errors.Is(err, syscall.ECONNREFUSED) {
						refused = at
					}
					return refused, t.Dials()
				}
			}
			return time.Time{}, 0
		},
		history: map[uint64][]leaderSample{}, leaderAt: map[uint64]time.Time{},
	}
	w.onView(lw.observe)
	return nil
}

// localEvidence is what the agent knows of its own node.
type localEvidence struct {
	pid          int
	fsyncStalled bool
}

// leaderSample is what one view said of one member.
type leaderSample struct {
	at    time.Time
	local bool
	// reachable, healthy and cause are the view's verdicts.
	reachable, healthy bool
	cause              probes.Cause
	// status, read and network are its last runs of those probes.
	status, read, network probes.Outcome
	// dialRefused is when a dial to it was last refused; zero when never.
	dialRefused time.Time
	// dials counts the connections the agent opened to it: one more is a
	// connection that dropped and was opened again.
	dials uint64
	// pid and fsyncStalled: the local member only.
	localEvidence
}

// leaderChange is a change waiting for its verdict.
type leaderChange struct {
	from, to         uint64
	fromName, toName string
	term             uint64
	at               time.Time // the view that saw the new leader
	since            time.Time // the history that counts starts here
	fromLocal        bool
	decided          bool
	cause            LeaderCause
	evidence         []string
	decidedAt        time.Time
}

// leaderWatch follows the views and explains their leader changes.
type leaderWatch struct {
	counter *prometheus.CounterVec
	logger  *slog.Logger
	tracer  trace.Tracer
	local   func() localEvidence
	conn    func(id uint64) (refused time.Time, dials uint64)

	mu       sync.Mutex
	lastAt   time.Time
	changes  uint64
	leader   uint64
	leaderAt map[uint64]time.Time // when each member was last the agreed leader
	history  map[uint64][]leaderSample
	pending  []*leaderChange
}

// observe records a view and decides the changes whose evidence is in.
func (lw *leaderWatch) observe(v probes.View) {
	lw.mu.Lock()
	if v.At.Before(lw.lastAt) {
		// Rounds overlap: a view older than one already seen adds nothing.
		lw.mu.Unlock()
		return
	}
	lw.lastAt = v.At
	var local *localEvidence
	for _, m := range v.Members {
		if m.ID == 0 {
			continue
		}
		s := leaderSample{
			at: v.At, local: m.Local, reachable: m.Reachable, healthy: m.Healthy, cause: m.Cause,
			status: m.Outcomes[probes.ProbeStatus], read: m.Outcomes[probes.ProbeReadLinearizable],
			network: m.Outcomes[probes.ProbeNetwork],
		}
		s.dialRefused, s.dials = lw.conn(m.ID)
		if m.Local {
			if local == nil {
				e := lw.local()
				local = &e
			}
			s.localEvidence = *local
		}
		h := append(lw.history[m.ID], s)
		for len(h) > 0 && v.At.Sub(h[0].at) > leaderHistory {
			h = h[1:]
		}
		lw.history[m.ID] = h
	}
	if v.LeaderChanges > lw.changes && lw.leader != 0 && v.HasLeader {
		c := &leaderChange{
			from: lw.leader, to: v.Leader, term: v.Term, at: v.At,
			fromName: v.MemberLabel(lw.leader), toName: v.LeaderLabel(),
			since: lw.leaderAt[lw.leader].Add(-leaderEvidenceBefore),
		}
		if m, ok := v.Member(c.fromName); ok {
			c.fromLocal = m.Local
		}
		lw.pending = append(lw.pending, c)
	}
	lw.changes = max(lw.changes, v.LeaderChanges)
	if v.HasLeader {
		lw.leader = v.Leader
		lw.leaderAt[v.Leader] = v.At
	}
	var done []*leaderChange
	keep := lw.pending[:0]
	for _, c := range lw.pending {
		cause, ev, ok := explainLeaderChange(c.at, c.since, lw.history[c.from], v.At)
		if !ok {
			keep = append(keep, c)
			continue
		}
		c.cause, c.evidence, c.decidedAt = cause, ev, v.At
		done = append(done, c)
	}
	lw.pending = keep
	lw.mu.Unlock()
	for _, c := range done {
		lw.report(c)
	}
}

// report counts, logs and traces a decided change.
func (lw *leaderWatch) report(c *leaderChange) {
	lw.counter.WithLabelValues(string(c.cause)).Inc()
	after := c.decidedAt.Sub(c.at)
	evidence := strings.Join(c.evidence, "; ")
	lw.logger.Info("leader change explained", "from", c.fromName, "to", c.toName, "term", c.term,
		"cause", c.cause, "evidence", evidence, "decided_after", after.Round(time.Millisecond))
	attrs := []attribute.KeyValue{
		probes.AttrPreviousLeaderName.String(c.fromName),
		probes.AttrPreviousLeaderID.String(probes.MemberIDLabel(c.from)),
		probes.AttrLeaderName.String(c.toName),
		probes.AttrLeaderID.String(probes.MemberIDLabel(c.to)),
		probes.AttrTerm.Int64(int64(c.term)),
		AttrLeaderChangeCause.String(string(c.cause)),
	}
	// The span covers the evidence window, from the view that saw the new
	// leader to the verdict.
	_, span := lw.tracer.Start(context.Background(), SpanLeaderChange, trace.WithNewRoot(),
		trace.WithTimestamp(c.at), trace.WithAttributes(attrs...))
	span.AddEvent(EventLeaderChangeCause, trace.WithTimestamp(c.decidedAt), trace.WithAttributes(append(attrs,
		AttrLeaderChangeEvid.StringSlice(c.evidence),
		AttrLeaderChangeDecided.Float64(after.Seconds()),
		AttrLeaderChangeLocal.Bool(c.fromLocal))...))
	span.End(trace.WithTimestamp(c.decidedAt))
}

// explainLeaderChange weighs what the views said of the old leader since
// `since` against a change seen at `at`, at time now. ok is false while
// the evidence is not conclusive and the window is still open. It is
// pure: the table test in leadership_test.go drives it.
func explainLeaderChange(at, since time.Time, history []leaderSample, now time.Time) (cause LeaderCause, evidence []string, ok bool) {
	var ss []leaderSample
	for _, s := range history {
		if !s.at.Before(since) {
			ss = append(ss, s)
		}
	}
	rel := func(t time.Time) string { return fmt.Sprintf("%+.1fs", t.Sub(at).Seconds()) }

	// On the old leader's own node: the disk, and the process.
	for _, s := range ss {
		if s.fsyncStalled {
			return LeaderDiskStall, []string{"fsync probe stalled at " + rel(s.at)}, true
		}
	}
	// A new PID counts once a status run started after it was first read
	// has answered: while the member is down, the process found by name
	// may be another member's.
	var pid, newPID int
	var newAt time.Time
	for _, s := range ss {
		switch {
		case s.pid == 0:
		case pid == 0:
			pid = s.pid
		case s.pid != pid && s.pid != newPID:
			newPID, newAt = s.pid, s.at
		}
		if newPID != 0 && s.pid == newPID && s.status.OK && s.status.At.After(newAt) {
			return LeaderRestart, []string{fmt.Sprintf("etcd PID %d, then %d at %s, answering at %s", pid, newPID, rel(newAt), rel(s.at))}, true
		}
	}

	// Refused, then answering again: a restart.
	var refused time.Time
	var refusedWhy string
	for _, s := range ss {
		if refused.IsZero() {
			switch {
			case !s.status.OK && s.status.Reason == probes.ReasonUnreachable && !s.status.At.Before(since):
				refused, refusedWhy = s.at, "status failed at "+rel(s.at)+": "+s.status.Err
			case !s.dialRefused.IsZero() && !s.dialRefused.Before(since):
				refused, refusedWhy = s.dialRefused, "connection refused at "+rel(s.dialRefused)
			}
			continue
		}
		if s.status.OK && s.status.At.After(refused) {
			return LeaderRestart, []string{refusedWhy, "answered again at " + rel(s.at)}, true
		}
	}

	// No answer within the deadline: frozen, or black-holed.
	for _, s := range ss {
		if !s.status.OK && s.status.Reason == probes.ReasonTimeout && !s.status.At.Before(since) {
			return LeaderUnreachable, []string{"status timed out at " + rel(s.at) + ": " + s.status.Err}, true
		}
	}

	// Its connection dropped and was opened again, and it answers: a
	// restart too quick for any run to be refused.
	var redial time.Time
	var dials uint64 // the connections opened while it answered before
	for _, s := range ss {
		switch {
		case dials == 0 && s.reachable:
			dials = s.dials
		case redial.IsZero() && dials > 0 && s.dials > dials:
			redial = s.at
		}
		if !redial.IsZero() && s.status.OK && s.status.At.After(redial) {
			return LeaderRestart, []string{"connection dropped and opened again by " + rel(redial), "answered again at " + rel(s.at)}, true
		}
	}

	// Answering the agent, not its peers.
	cutOff := 0
	for _, s := range ss {
		if s.reachable && s.cause == probes.CauseCutOff {
			if cutOff++; cutOff >= 2 {
				return LeaderCutOff, []string{"reported no leader while a quorum had one (cut_off) from " + rel(s.at)}, true
			}
		}
		if s.reachable && peerOnlyFailure(s.network) && !s.network.At.Before(since) {
			return LeaderCutOff, []string{"its peer port failed while its client port answered at " + rel(s.at) + ": " + s.network.Err}, true
		}
	}

	// Wedged, on its own node: its WAL disk or raft loop stalled. A single
	// failed read in the change itself is not enough.
	wedged := 0
	for _, s := range ss {
		if s.local && s.reachable && s.cause == probes.CauseWedged {
			if wedged++; wedged >= 2 || s.read.Reason == probes.ReasonTimeout {
				return LeaderDiskStall, []string{"own member wedged (status answered, linearizable reads did not) at " + rel(s.at) + ": " + s.read.Err}, true
			}
		}
	}

	planned, why := plannedTransfer(at, ss)
	if now.Sub(at) < leaderEvidenceWindow {
		if planned && now.Sub(at) >= leaderPlannedHold && refused.IsZero() {
			return LeaderPlannedTransfer, why, true
		}
		return "", nil, false
	}
	switch {
	case !refused.IsZero():
		return LeaderUnreachable, []string{refusedWhy, "not back by " + rel(now)}, true
	case planned:
		return LeaderPlannedTransfer, why, true
	}
	return LeaderUnknown, lastState(ss, rel), true
}

// plannedTransfer: every view after the change found the old leader
// reachable, all but one view since the evidence window opened found it
// healthy, the last one did, and at least one of its status runs started
// after the change succeeded (a frozen member's last success would still
// show until its next run timed out).
func plannedTransfer(at time.Time, ss []leaderSample) (bool, []string) {
	answered := false
	unhealthy := 0
	var last time.Time
	for _, s := range ss {
		if !s.healthy {
			// A read that meets the transfer itself may fail once.
			unhealthy++
		}
		if !s.at.After(at) {
			continue
		}
		if !s.reachable || unhealthy > 1 {
			return false, nil
		}
		if s.status.OK && s.status.At.After(at) {
			answered = true
		}
		last = s.at
	}
	if !answered || !ss[len(ss)-1].healthy {
		return false, nil
	}
	return true, []string{fmt.Sprintf("old leader reachable and healthy through %+.1fs", last.Sub(at).Seconds())}
}

// peerOnlyFailure: the network probe failed on the member's peer port
// alone, its client port answering.
func peerOnlyFailure(o probes.Outcome) bool {
	if o.OK || o.At.IsZero() || !strings.Contains(o.Err, probes.PhaseConnectPeer+" ") {
		return false
	}
	for _, p := range []string{probes.PhaseConnectClient, probes.PhaseTLSHandshake, probes.PhaseRequest} {
		if strings.Contains(o.Err, p+" ") || strings.Contains(o.Err, p+":") {
			return false
		}
	}
	return true
}

// lastState describes the old leader as the last view saw it, for an
// unknown cause.
func lastState(ss []leaderSample, rel func(time.Time) string) []string {
	if len(ss) == 0 {
		return []string{"no view of the old leader"}
	}
	s := ss[len(ss)-1]
	state := fmt.Sprintf("at %s: reachable %v, healthy %v", rel(s.at), s.reachable, s.healthy)
	if s.cause != "" {
		state += ", cause " + string(s.cause)
	}
	if !s.status.OK && s.status.Err != "" {
		state += ", status " + string(s.status.Reason) + ": " + s.status.Err
	}
	return []string{state}
}
