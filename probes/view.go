package probes

import (
	"slices"
	"strings"
	"time"
)

// Status is what a member said of itself in its last successful Status call.
type Status struct {
	MemberID     uint64
	Leader       uint64
	Term         uint64
	RaftIndex    uint64 // committed index
	AppliedIndex uint64
	DBSize       int64
	DBSizeInUse  int64
	DBQuota      int64
	Version      string
	IsLearner    bool
	Alarms       []Alarm
	// ClusterID is the cluster the member says it belongs to (its
	// response header's cluster_id).
	ClusterID uint64
	// Downgrade is the cluster's downgrade as the member knows it (etcd
	// 3.6 and later); nil before 3.6.
	Downgrade *Downgrade
}

// Downgrade is a cluster downgrade: enabled by `etcdctl downgrade enable`
// until every member runs the target version (or it is cancelled).
type Downgrade struct {
	Enabled       bool
	TargetVersion string
}

// Alarm is an active etcd alarm, raised by one member.
type Alarm struct {
	MemberID uint64
	Type     string // NOSPACE, CORRUPT
}

// AlarmTypes are the alarms etcd raises; each member exports one series per type.
var AlarmTypes = []string{"NOSPACE", "CORRUPT"}

// Outcome is the latest result of one probe against one member.
type Outcome struct {
	OK       bool
	At       time.Time
	Duration time.Duration
	// Err is why the run failed, or what etcd refused in a run that
	// counts as a success.
	Err string
	// Reason classifies Err.
	Reason Reason
}

// TargetResults is everything the probes last learnt about one target.
type TargetResults struct {
	Member   Member
	Endpoint string
	Local    bool
	// Status is what the member last said of itself; it counts only while
	// its last status run succeeded.
	Status   *Status
	Outcomes map[string]Outcome
}

// MemberView is one member in the evaluated cluster view.
type MemberView struct {
	Member
	Label    string
	Endpoint string
	Local    bool
	// Reachable: the member's last status run succeeded (the runner's
	// verdict); Status is then what it said.
	Reachable bool
	// Healthy: a voter answered its last linearizable read; a learner,
	// which refuses those, answered its last serializable read and has
	// applied what the leader had committed a round before.
	Healthy bool
	// Serializable: the member answered its last serializable read. A member
	// that serves these but not linearizable ones is cut off from quorum.
	Serializable bool
	// Refused is the reason etcd last refused the agent, or the agent
	// refused the member's certificate, in any core probe (a TLS reason,
	// authentication, permission_denied, wrong_member); "" when none did.
	Refused Reason
	// HealthUnknown: the agent cannot judge the member's health, because
	// its status or health read fails for the agent's own reasons (TLS,
	// credentials, role): Reachable and Healthy are then unknown, not
	// false.
	HealthUnknown bool
	// Cause is why the member is not healthy: "" while it is healthy, or
	// while CauseKnown is false.
	Cause Cause
	// CauseKnown: the agent can tell whether the member is healthy and,
	// if not, why. It cannot while the member refuses the agent
	// (HealthUnknown), before the probes that decide have run against it,
	// and, for a member that would be wedged or short of quorum, while
	// the health of the other voters is not known (View.HealthKnown).
	CauseKnown bool
	IsLeader   bool
	// RaftIndexLag is the number of entries behind the highest committed
	// index any reachable member reported.
	RaftIndexLag uint64
	Status       *Status
	Outcomes     map[string]Outcome
}

// View is the cluster as one agent sees it after a probe round.
type View struct {
	At time.Time
	// MembershipKnown is false until a member list has been read.
	MembershipKnown bool
	// HealthKnown is false while a voter with a client URL has not had a
	// linearizable read yet (just discovered): until then HealthyVoters
	// and FaultTolerance would count it as failed.
	HealthKnown bool
	// Up: the local member answered its last status probe.
	Up bool
	// LeaderUnknown: members that refuse the agent could change whether a
	// quorum follows one leader, so HasLeader, LeaderDisagreement and
	// LeaderVoters are unknown.
	LeaderUnknown bool
	// HasLeader: the reachable members agree on one leader in one term.
	HasLeader bool
	// Leader and Term are the agreed leader and its term, or the last
	// agreed ones while there is no leader.
	Leader uint64
	Term   uint64
	// LeaderDisagreement: reachable members report different leaders or terms.
	LeaderDisagreement bool
	// LeaderVoters is the largest number of reachable voting members that
	// report the same leader in the same term, the leader included (0
	// until the member list is known). A leader followed by QuorumSize
	// voters commits writes even when HasLeader is false because a member
	// cut off from it reports none.
	LeaderVoters  int
	LeaderChanges uint64
	Members       []MemberView
	Voters        int
	HealthyVoters int
	QuorumSize    int
	// FaultTolerance is HealthyVoters - QuorumSize: 0 means one more failure
	// loses quorum, negative means quorum is lost.
	FaultTolerance int
	Alarms         []Alarm
}

// Cause says why a member is not healthy. The set is fixed, so that it can
// be a metric label; Evaluate picks the first that applies, in this order.
type Cause string

// Causes of an unhealthy member.
const (
	// CauseUnreachable: the member did not answer its last status probe
	// (down, frozen, or no client URL yet).
	CauseUnreachable Cause = "unreachable"
	// CauseNotServing: it answered status but not its last serializable
	// read: up, but not serving even local reads (overloaded, starting,
	// its backend stuck: a backend commit hung on the disk blocks
	// readers).
	CauseNotServing Cause = "not_serving"
	// CauseLearnerBehind: a learner that serves serializable reads but has
	// not applied what the leader had committed a round before.
	CauseLearnerBehind Cause = "learner_behind"
	// CauseWedged: a voter that answers status and serializable reads and
	// reports a leader, yet fails linearizable reads while a quorum of the
	// other voters is healthy: the cluster commits without it, so what is
	// stuck is the member's own WAL disk, raft loop or apply (or it is
	// slower than the probe deadline). A stalled leader stays "the
	// leader" in its old term until it steps down: wedged too.
	CauseWedged Cause = "wedged"
	// CauseCutOff: the same, but the member reports no leader: it hears
	// none, while a quorum of the others has one. Usually the network
	// between it and its peers.
	CauseCutOff Cause = "cut_off"
	// CauseNoQuorum: a voter that answers status and serializable reads
	// but fails linearizable reads, with fewer than a quorum of voters
	// healthy: the cluster cannot commit (quorum lost, or no leader during
	// an election). Not the member's own fault.
	CauseNoQuorum Cause = "no_quorum"
)

// Causes lists every cause, for metrics, documentation and tests.
var Causes = []Cause{CauseUnreachable, CauseNotServing, CauseLearnerBehind, CauseWedged, CauseCutOff, CauseNoQuorum}

// Member returns the member view with the given label.
func (v View) Member(label string) (MemberView, bool) {
	for _, m := range v.Members {
		if m.Label == label {
			return m, true
		}
	}
	return MemberView{}, false
}

// LeaderLabel is the leader's member label, or "" without a leader.
func (v View) LeaderLabel() string {
	for _, m := range v.Members {
		if v.HasLeader && m.ID == v.Leader {
			return m.Label
		}
	}
	if v.HasLeader {
		return MemberIDLabel(v.Leader)
	}
	return ""
}

// Probe names whose outcomes the evaluation reads.
const (
	ProbeStatus           = "status"
	ProbeReadLinearizable = "read_linearizable"
	ProbeReadSerializable = "read_serializable"
	ProbeMemberList       = "member_list"
)

// Evaluate turns the latest results into a cluster view. prev is the view of
// the round before, used to count leader changes. members is the last
// member list; known says whether one was read at all. Evaluate is pure.
func Evaluate(prev View, at time.Time, known bool, members []Member, results []TargetResults) View {
	v := View{At: at, MembershipKnown: known, LeaderChanges: prev.LeaderChanges}
	byID := map[uint64]TargetResults{}
	var unidentified []TargetResults
	for _, r := range results {
		id := r.Member.ID
		if id == 0 && r.Status != nil {
			id = r.Status.MemberID
		}
		if id == 0 {
			unidentified = append(unidentified, r)
			continue
		}
		byID[id] = r
	}
	var rows []MemberView
	if known {
		for _, m := range members {
			r := byID[m.ID]
			r.Member = m
			rows = append(rows, memberView(r))
		}
	} else {
		for _, r := range results {
			if r.Member.ID == 0 && r.Status != nil {
				r.Member.ID = r.Status.MemberID
			}
			rows = append(rows, memberView(r))
		}
		unidentified = nil
	}
	for _, r := range unidentified {
		rows = append(rows, memberView(r))
	}

	learnerTarget := learnerTarget(prev, rows)
	var maxIndex uint64
	type leaderTerm struct{ leader, term uint64 }
	views := map[leaderTerm]bool{}
	following := map[leaderTerm]int{} // reachable voters per reported leader
	alarms := map[Alarm]bool{}
	for _, m := range rows {
		if m.Local && m.Reachable {
			v.Up = true
		}
		if !m.Reachable {
			continue
		}
		maxIndex = max(maxIndex, m.Status.RaftIndex)
		views[leaderTerm{m.Status.Leader, m.Status.Term}] = true
		for _, a := range m.Status.Alarms {
			alarms[a] = true
		}
	}
	v.HealthKnown = known
	refused := 0 // voters, or members before the list is known, that refuse the agent
	for i := range rows {
		m := &rows[i]
		if m.Reachable {
			m.RaftIndexLag = maxIndex - m.Status.RaftIndex
		}
		if m.learner() {
			// A learner refuses linearizable reads: judge it by what it
			// can do.
			m.Healthy = m.Serializable && m.Reachable && m.Status.AppliedIndex >= learnerTarget
		}
		if m.HealthUnknown && (!known || !m.IsLearner) {
			refused++
		}
		if known && !m.IsLearner && m.ID != 0 {
			if m.Endpoint != "" && m.Outcomes[ProbeReadLinearizable].At.IsZero() || m.HealthUnknown {
				v.HealthKnown = false
			}
			v.Voters++
			if m.Healthy {
				v.HealthyVoters++
			}
			if m.Reachable && m.Status.Leader != 0 {
				lt := leaderTerm{m.Status.Leader, m.Status.Term}
				following[lt]++
				v.LeaderVoters = max(v.LeaderVoters, following[lt])
			}
		}
	}
	v.LeaderDisagreement = len(views) > 1
	if len(views) == 1 {
		for lt := range views {
			if lt.leader != 0 {
				v.HasLeader, v.Leader, v.Term = true, lt.leader, lt.term
			}
		}
	}
	// A new leader, or the same one re-elected in a new term, is a change;
	// the first leader the agent sees is not.
	if v.HasLeader && prev.Leader != 0 && (prev.Leader != v.Leader || prev.Term != v.Term) {
		v.LeaderChanges++
	}
	if !v.HasLeader {
		// Keep the last agreed leader across a leaderless gap so that the
		// next one counts as a change exactly once.
		v.Leader, v.Term = prev.Leader, prev.Term
	}
	for i := range rows {
		rows[i].IsLeader = v.HasLeader && rows[i].ID == v.Leader
	}
	if known {
		v.QuorumSize = v.Voters/2 + 1
		v.FaultTolerance = v.HealthyVoters - v.QuorumSize
	}
	for i := range rows {
		rows[i].Cause, rows[i].CauseKnown = v.cause(rows[i])
	}
	// A quorum seen following one leader stands whatever the refused
	// members would say; anything less could be their doing.
	v.LeaderUnknown = refused > 0 && !(known && v.LeaderVoters >= v.QuorumSize)
	for a := range alarms {
		v.Alarms = append(v.Alarms, a)
	}
	slices.SortFunc(v.Alarms, func(a, b Alarm) int {
		if a.MemberID != b.MemberID {
			if a.MemberID < b.MemberID {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Type, b.Type)
	})
	slices.SortFunc(rows, func(a, b MemberView) int { return strings.Compare(a.Label, b.Label) })
	v.Members = rows
	return v
}

func memberView(r TargetResults) MemberView {
	label := r.Member.Label()
	if r.Member.ID == 0 && r.Member.Name == "" {
		label = r.Endpoint
	}
	m := MemberView{
		Member:   r.Member,
		Label:    label,
		Endpoint: r.Endpoint,
		Local:    r.Local,
		Outcomes: r.Outcomes,
	}
	// One verdict per run: reachable is the status run's outcome, and
	// what the member said counts only then.
	if m.Reachable = r.Outcomes[ProbeStatus].OK && r.Status != nil; m.Reachable {
		m.Status = r.Status
	}
	m.Healthy = r.Outcomes[ProbeReadLinearizable].OK
	m.Serializable = r.Outcomes[ProbeReadSerializable].OK
	for _, p := range refusalProbes {
		if o := r.Outcomes[p]; o.Reason.AgentSide() {
			m.Refused = o.Reason
			break
		}
	}
	m.HealthUnknown = r.Outcomes[ProbeStatus].refused() || r.Outcomes[m.healthProbe()].refused()
	return m
}

// cause says why m is not healthy, once the rest of the view is
// evaluated; known is false when the agent cannot tell (see
// MemberView.CauseKnown).
func (v View) cause(m MemberView) (c Cause, known bool) {
	if m.HealthUnknown {
		return "", false
	}
	if m.Healthy {
		return "", true
	}
	ran := func(probe string) bool { return !m.Outcomes[probe].At.IsZero() }
	// A member without a client URL is probed by nothing: unreachable.
	// The others are judged once their status and health read have run.
	if m.Endpoint != "" && (!ran(ProbeStatus) || !ran(m.healthProbe())) {
		return "", false
	}
	switch {
	case !m.Reachable:
		return CauseUnreachable, true
	case !m.Serializable:
		if !ran(ProbeReadSerializable) {
			return "", false
		}
		return CauseNotServing, true
	case m.learner():
		return CauseLearnerBehind, true
	// Healthy voters are counted only once the member list is known; a
	// quorum of them stands whatever the voters not yet judged would add.
	case v.MembershipKnown && v.HealthyVoters >= v.QuorumSize:
		if m.Status.Leader == 0 {
			return CauseCutOff, true
		}
		return CauseWedged, true
	case v.MembershipKnown && v.HealthKnown:
		return CauseNoQuorum, true
	}
	return "", false
}

// healthProbe is the read that decides the member's health.
func (m MemberView) healthProbe() string {
	if m.learner() {
		return ProbeReadSerializable
	}
	return ProbeReadLinearizable
}

// refusalProbes are the probes whose refusals etcdpulse_agent_refused
// reports, in the order the first one found names the reason.
var refusalProbes = []string{ProbeStatus, ProbeReadLinearizable, ProbeReadSerializable, ProbeMemberList, ProbeWrite}

// refused: the run failed for the agent's own reasons.
func (o Outcome) refused() bool { return !o.OK && o.Reason.AgentSide() }

// StatusRefused reports whether the member's last status failed for the
// agent's own reasons: whether it is reachable is then unknown.
func (m MemberView) StatusRefused() bool { return m.Outcomes[ProbeStatus].refused() }

// learner: the member list, or the member itself, says it is a learner.
func (m MemberView) learner() bool {
	return m.IsLearner || m.Status != nil && m.Status.IsLearner
}

// learnerTarget is the raft index a learner must have applied to count as
// caught up: what the leader had committed a round before (so that a
// learner is not unhealthy for the writes of the last second), or, on the
// first round, what it commits now.
func learnerTarget(prev View, rows []MemberView) uint64 {
	for _, views := range [][]MemberView{prev.Members, rows} {
		for _, m := range views {
			if m.Status != nil && m.Status.Leader == m.Status.MemberID && m.Status.MemberID != 0 {
				return m.Status.RaftIndex
			}
		}
	}
	return 0
}
