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
	Err      string
}

// TargetResults is everything the probes last learnt about one target.
type TargetResults struct {
	Member   Member
	Endpoint string
	Local    bool
	// Status is nil when the last status probe failed or has not run.
	Status   *Status
	Outcomes map[string]Outcome
	// Requests counts the requests sent to the target, by gRPC method.
	Requests map[string]uint64
}

// MemberView is one member in the evaluated cluster view.
type MemberView struct {
	Member
	Label    string
	Endpoint string
	Local    bool
	// Reachable: the member answered its last status probe.
	Reachable bool
	// Healthy: the member answered its last linearizable read.
	Healthy bool
	// Serializable: the member answered its last serializable read. A member
	// that serves these but not linearizable ones is cut off from quorum.
	Serializable bool
	IsLeader     bool
	// RaftIndexLag is the number of entries behind the highest committed
	// index any reachable member reported.
	RaftIndexLag uint64
	Status       *Status
	Outcomes     map[string]Outcome
	Requests     map[string]uint64
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
	for i := range rows {
		m := &rows[i]
		if m.Reachable {
			m.RaftIndexLag = maxIndex - m.Status.RaftIndex
		}
		if known && !m.IsLearner && m.ID != 0 {
			if m.Endpoint != "" && m.Outcomes[ProbeReadLinearizable].At.IsZero() {
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
		Status:   r.Status,
		Outcomes: r.Outcomes,
		Requests: r.Requests,
	}
	m.Reachable = r.Status != nil
	m.Healthy = r.Outcomes[ProbeReadLinearizable].OK
	m.Serializable = r.Outcomes[ProbeReadSerializable].OK
	return m
}
