package probes

import (
	"testing"
	"time"
)

func members(n int) []Member {
	var out []Member
	for i := 1; i <= n; i++ {
		out = append(out, Member{ID: uint64(i), Name: string(rune('a' + i - 1)), ClientURLs: []string{"http://m"}})
	}
	return out
}

// result is a target that answered status with (leader, term, index) and
// the given linearizable read outcome.
func result(id, leader, term, index uint64, healthy bool) TargetResults {
	return TargetResults{
		Member:   Member{ID: id},
		Endpoint: "http://m",
		Local:    id == 1,
		Status:   &Status{MemberID: id, Leader: leader, Term: term, RaftIndex: index, AppliedIndex: index},
		Outcomes: map[string]Outcome{ProbeStatus: {OK: true, At: time.Unix(1, 0)}, ProbeReadLinearizable: {OK: healthy, At: time.Unix(1, 0)}, ProbeReadSerializable: {OK: true, At: time.Unix(1, 0)}},
	}
}

func down(id uint64) TargetResults {
	return TargetResults{Member: Member{ID: id}, Endpoint: "http://m", Local: id == 1, Outcomes: map[string]Outcome{}}
}

func TestEvaluate(t *testing.T) {
	cases := []struct {
		name                               string
		members                            []Member
		results                            []TargetResults
		up, hasLeader, disagree            bool
		voters, healthy, quorum, tolerance int
		leaderLabel                        string
		leaderVoters                       int
	}{
		{"healthy 3", members(3), []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), result(3, 2, 5, 9, true)},
			true, true, false, 3, 3, 2, 1, "b", 3},
		{"one member down: quorum at risk", members(3), []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), down(3)},
			true, true, false, 3, 2, 2, 0, "b", 2},
		{"two down: quorum lost on the survivor", members(3), []TargetResults{result(1, 0, 6, 10, false), down(2), down(3)},
			true, false, false, 3, 0, 2, -2, "", 0},
		{"local frozen: view from the others", members(3), []TargetResults{down(1), result(2, 2, 5, 10, true), result(3, 2, 5, 10, true)},
			false, true, false, 3, 2, 2, 0, "b", 2},
		{"members disagree", members(3), []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), result(3, 3, 4, 8, false)},
			true, false, true, 3, 2, 2, 0, "", 2},
		// A member cut off from its peers (its inbound peer traffic lost)
		// becomes a pre-candidate and reports no leader, in the same term:
		// the others still commit with a quorum behind the leader.
		{"one member cut off, reporting no leader", members(3), []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), result(3, 0, 5, 8, false)},
			true, false, true, 3, 2, 2, 0, "", 2},
		{"no two members agree", members(3), []TargetResults{result(1, 1, 5, 10, false), result(2, 2, 6, 10, false), result(3, 0, 7, 8, false)},
			true, false, true, 3, 0, 2, -2, "", 1},
		{"learner does not vote", append(members(3), Member{ID: 4, Name: "d", IsLearner: true}),
			[]TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), result(3, 2, 5, 10, true), result(4, 2, 5, 10, true)},
			true, true, false, 3, 3, 2, 1, "b", 3},
		{"five members, two down", members(5), []TargetResults{result(1, 1, 3, 7, true), result(2, 1, 3, 7, true), result(3, 1, 3, 7, true), down(4), down(5)},
			true, true, false, 5, 3, 3, 0, "a", 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Evaluate(View{}, time.Now(), true, c.members, c.results)
			if v.Up != c.up || v.HasLeader != c.hasLeader || v.LeaderDisagreement != c.disagree {
				t.Errorf("up/hasLeader/disagree = %v/%v/%v, want %v/%v/%v", v.Up, v.HasLeader, v.LeaderDisagreement, c.up, c.hasLeader, c.disagree)
			}
			if v.Voters != c.voters || v.HealthyVoters != c.healthy || v.QuorumSize != c.quorum || v.FaultTolerance != c.tolerance {
				t.Errorf("voters/healthy/quorum/tolerance = %d/%d/%d/%d, want %d/%d/%d/%d",
					v.Voters, v.HealthyVoters, v.QuorumSize, v.FaultTolerance, c.voters, c.healthy, c.quorum, c.tolerance)
			}
			if got := v.LeaderLabel(); got != c.leaderLabel {
				t.Errorf("leader = %q, want %q", got, c.leaderLabel)
			}
			if v.LeaderVoters != c.leaderVoters {
				t.Errorf("leader voters = %d, want %d", v.LeaderVoters, c.leaderVoters)
			}
		})
	}
}

func TestEvaluateRaftIndexLag(t *testing.T) {
	v := Evaluate(View{}, time.Now(), true, members(3), []TargetResults{result(1, 2, 5, 100, true), result(2, 2, 5, 120, true), down(3)})
	m, _ := v.Member("a")
	if m.RaftIndexLag != 20 {
		t.Errorf("lag of a = %d, want 20", m.RaftIndexLag)
	}
	if m, _ := v.Member("c"); m.Reachable || m.RaftIndexLag != 0 {
		t.Errorf("unreachable member c: reachable=%v lag=%d, want false/0", m.Reachable, m.RaftIndexLag)
	}
}

// A leader killed: old leader, an election gap, a new leader. The change
// counts once; the first leader seen and a steady leader do not count.
func TestEvaluateLeaderChanges(t *testing.T) {
	seq := []struct {
		results []TargetResults
		changes uint64
	}{
		{[]TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), result(3, 2, 5, 10, true)}, 0},
		{[]TargetResults{result(1, 2, 5, 11, true), result(2, 2, 5, 11, true), result(3, 2, 5, 11, true)}, 0},
		{[]TargetResults{result(1, 0, 6, 11, false), down(2), result(3, 0, 6, 11, false)}, 0},
		{[]TargetResults{result(1, 3, 6, 12, true), down(2), result(3, 3, 6, 12, true)}, 1},
		{[]TargetResults{result(1, 3, 6, 13, true), result(2, 3, 6, 13, true), result(3, 3, 6, 13, true)}, 1},
		// The same member re-elected in a new term is a change too.
		{[]TargetResults{result(1, 3, 8, 14, true), result(2, 3, 8, 14, true), result(3, 3, 8, 14, true)}, 2},
	}
	var v View
	for i, s := range seq {
		v = Evaluate(v, time.Now(), true, members(3), s.results)
		if v.LeaderChanges != s.changes {
			t.Fatalf("step %d: leader changes = %d, want %d", i, v.LeaderChanges, s.changes)
		}
	}
}

func TestEvaluateUnknownMembership(t *testing.T) {
	v := Evaluate(View{}, time.Now(), false, nil, []TargetResults{result(1, 1, 2, 3, true)})
	if v.MembershipKnown || v.Voters != 0 || v.QuorumSize != 0 {
		t.Errorf("before a member list: known=%v voters=%d quorum=%d, want false/0/0", v.MembershipKnown, v.Voters, v.QuorumSize)
	}
	if !v.Up || len(v.Members) != 1 {
		t.Errorf("up=%v members=%d, want true/1", v.Up, len(v.Members))
	}
}

func TestParseAlarm(t *testing.T) {
	cases := []struct {
		in   string
		want Alarm
		ok   bool
	}{
		{"memberID:10276657743932975437 alarm:NOSPACE ", Alarm{10276657743932975437, "NOSPACE"}, true},
		{"memberID:1 alarm:CORRUPT ", Alarm{1, "CORRUPT"}, true},
		{"etcdserver: no leader", Alarm{}, false},
	}
	for _, c := range cases {
		got, ok := ParseAlarm(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseAlarm(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func refusedBy(id uint64, reason Reason) TargetResults {
	failed := Outcome{Reason: reason, Err: string(reason), At: time.Unix(1, 0)}
	return TargetResults{Member: Member{ID: id}, Endpoint: "http://m", Local: id == 1,
		Outcomes: map[string]Outcome{ProbeStatus: failed, ProbeReadLinearizable: failed, ProbeReadSerializable: failed}}
}

// Members that refuse the agent are neither healthy nor unhealthy: health
// and quorum are unknown, and the leader too unless a quorum is seen
// following one regardless.
func TestEvaluateRefused(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		results                    []TargetResults
		healthKnown, leaderUnknown bool
		hasLeader                  bool
		refused                    []Reason
	}{
		{"every member refuses", []TargetResults{refusedBy(1, ReasonAuthentication), refusedBy(2, ReasonAuthentication), refusedBy(3, ReasonAuthentication)},
			false, true, false, []Reason{ReasonAuthentication, ReasonAuthentication, ReasonAuthentication}},
		{"one refuses, a quorum follows the leader", []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), refusedBy(3, ReasonTLSExpired)},
			false, false, true, []Reason{"", "", ReasonTLSExpired}},
		{"two refuse: the leader is unknown", []TargetResults{result(1, 2, 5, 10, true), refusedBy(2, ReasonTLSUnknownAuthority), refusedBy(3, ReasonTLSUnknownAuthority)},
			false, true, true, []Reason{"", ReasonTLSUnknownAuthority, ReasonTLSUnknownAuthority}},
		{"a timeout is the member's, not the agent's", []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), refusedBy(3, ReasonTimeout)},
			true, false, true, []Reason{"", "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Evaluate(View{}, time.Now(), true, members(3), tc.results)
			if v.HealthKnown != tc.healthKnown || v.LeaderUnknown != tc.leaderUnknown || v.HasLeader != tc.hasLeader {
				t.Errorf("health known %v, leader unknown %v, has leader %v; want %v, %v, %v",
					v.HealthKnown, v.LeaderUnknown, v.HasLeader, tc.healthKnown, tc.leaderUnknown, tc.hasLeader)
			}
			for i, m := range v.Members {
				if m.Refused != tc.refused[i] || m.HealthUnknown != tc.refused[i].AgentSide() {
					t.Errorf("%s: refused %q, health unknown %v; want %q", m.Label, m.Refused, m.HealthUnknown, tc.refused[i])
				}
			}
		})
	}
	// Before any member list: every endpoint refuses, nothing is known.
	v := Evaluate(View{}, time.Now(), false, nil, []TargetResults{refusedBy(0, ReasonAuthentication)})
	if !v.LeaderUnknown || v.HealthKnown {
		t.Errorf("no member list, refused: leader unknown %v, health known %v", v.LeaderUnknown, v.HealthKnown)
	}
	// A read without permission answered: healthy, the refusal kept.
	r := result(1, 1, 5, 10, true)
	r.Outcomes[ProbeReadLinearizable] = Outcome{OK: true, Reason: ReasonPermissionDenied, At: time.Unix(1, 0)}
	v = Evaluate(View{}, time.Now(), true, members(1), []TargetResults{r})
	if m := v.Members[0]; !m.Healthy || m.HealthUnknown || m.Refused != ReasonPermissionDenied || !v.HealthKnown {
		t.Errorf("read refused for permission: healthy %v, health unknown %v, refused %q", m.Healthy, m.HealthUnknown, m.Refused)
	}
}

// A learner refuses linearizable reads: it is healthy when it serves
// serializable reads and has applied what the leader had committed a round
// before.
func TestEvaluateLearner(t *testing.T) {
	ms := append(members(3), Member{ID: 4, Name: "d", IsLearner: true, ClientURLs: []string{"http://m"}})
	learner := func(applied uint64, serializable bool) TargetResults {
		r := result(4, 2, 5, applied, false)
		r.Status.IsLearner = true
		r.Outcomes[ProbeReadLinearizable] = Outcome{Err: "etcdserver: rpc not supported for learner", Reason: ReasonEtcd, At: time.Unix(1, 0)}
		r.Outcomes[ProbeReadSerializable] = Outcome{OK: serializable, At: time.Unix(1, 0)}
		return r
	}
	round := func(prev View, leaderIndex uint64, l TargetResults) View {
		return Evaluate(prev, time.Now(), true, ms, []TargetResults{
			result(1, 2, 5, leaderIndex, true), result(2, 2, 5, leaderIndex, true), result(3, 2, 5, leaderIndex, true), l})
	}
	first := round(View{}, 100, learner(100, true))
	second := round(first, 120, learner(100, true)) // applied what the leader had a round before
	third := round(second, 150, learner(110, true)) // fell behind
	fourth := round(third, 150, learner(150, false))
	for _, tc := range []struct {
		name string
		v    View
		want bool
	}{{"caught up", first, true}, {"a round behind", second, true}, {"fell behind", third, false}, {"no serializable read", fourth, false}} {
		m, _ := tc.v.Member("d")
		if m.Healthy != tc.want {
			t.Errorf("%s: learner healthy %v, want %v", tc.name, m.Healthy, tc.want)
		}
		if tc.v.Voters != 3 || tc.v.HealthyVoters != 3 || !tc.v.HealthKnown {
			t.Errorf("%s: voters %d, healthy %d, known %v; the learner must not count", tc.name, tc.v.Voters, tc.v.HealthyVoters, tc.v.HealthKnown)
		}
	}
}

// wedged is a member that answers status and serializable reads, and
// reports leader in term, but whose linearizable read failed.
func wedged(id, leader, term, index uint64) TargetResults {
	return result(id, leader, term, index, false)
}

// notServing answers status but neither read.
func notServing(id, leader, term, index uint64) TargetResults {
	r := result(id, leader, term, index, false)
	r.Outcomes[ProbeReadSerializable] = Outcome{Reason: ReasonTimeout, At: time.Unix(1, 0)}
	return r
}

// dead is a member whose status and reads all failed: down, or frozen.
func dead(id uint64) TargetResults {
	failed := Outcome{Reason: ReasonTimeout, Err: "no answer", At: time.Unix(1, 0)}
	r := down(id)
	r.Outcomes = map[string]Outcome{ProbeStatus: failed, ProbeReadLinearizable: failed, ProbeReadSerializable: failed}
	return r
}

// without drops the outcomes of probes from r, as before they first ran.
func without(r TargetResults, probes ...string) TargetResults {
	for _, p := range probes {
		delete(r.Outcomes, p)
	}
	return r
}

// Why each member is unhealthy: its own fault (unreachable, not serving,
// wedged, cut off, a learner behind) or the cluster's (no quorum), and
// when the agent cannot tell yet.
func TestEvaluateCause(t *testing.T) {
	const unknown = Cause("?") // CauseKnown false
	ms := members(3)
	learner := func(r TargetResults, serializable bool) TargetResults {
		r.Status.IsLearner = true
		r.Outcomes[ProbeReadLinearizable] = Outcome{Err: "etcdserver: rpc not supported for learner", Reason: ReasonEtcd, At: time.Unix(1, 0)}
		r.Outcomes[ProbeReadSerializable] = Outcome{OK: serializable, At: time.Unix(1, 0)}
		return r
	}
	withLearner := append(members(3), Member{ID: 4, Name: "d", IsLearner: true, ClientURLs: []string{"http://m"}})
	unstarted := append(members(2), Member{ID: 3, Name: "c"}) // added, no client URL yet
	slowStatus := result(3, 2, 5, 10, true)
	slowStatus.Outcomes[ProbeStatus] = Outcome{OK: true, At: time.Unix(1, 0), Duration: 1900 * time.Millisecond}
	healthyNoSerializable := result(3, 2, 5, 10, true)
	healthyNoSerializable.Outcomes[ProbeReadSerializable] = Outcome{Reason: ReasonTimeout, At: time.Unix(1, 0)}
	for _, tc := range []struct {
		name    string
		known   bool
		members []Member
		results []TargetResults
		want    []Cause // by label order
	}{
		{"healthy", true, ms, []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), result(3, 2, 5, 10, true)},
			[]Cause{"", "", ""}},
		{"status slow but answering, reads fine: healthy", true, ms, []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), slowStatus},
			[]Cause{"", "", ""}},
		{"healthy whatever the serializable read says", true, ms, []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), healthyNoSerializable},
			[]Cause{"", "", ""}},
		{"follower down", true, ms, []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), dead(3)},
			[]Cause{"", "", CauseUnreachable}},
		{"follower answers status only", true, ms, []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), notServing(3, 2, 5, 10)},
			[]Cause{"", "", CauseNotServing}},
		// Its WAL or apply stalls: it still knows the leader, the others commit.
		{"follower wedged", true, ms, []TargetResults{result(1, 2, 5, 12, true), result(2, 2, 5, 12, true), wedged(3, 2, 5, 10)},
			[]Cause{"", "", CauseWedged}},
		// A stalled leader stops its heartbeats; the others elect a new
		// leader in a higher term while it still says it leads.
		{"old leader wedged", true, ms, []TargetResults{result(1, 1, 6, 12, true), wedged(2, 2, 5, 10), result(3, 1, 6, 12, true)},
			[]Cause{"", CauseWedged, ""}},
		{"follower cut off from its peers", true, ms, []TargetResults{result(1, 2, 5, 12, true), result(2, 2, 5, 12, true), wedged(3, 0, 5, 10)},
			[]Cause{"", "", CauseCutOff}},
		{"two down: the survivor has no quorum", true, ms, []TargetResults{wedged(1, 0, 6, 10), dead(2), dead(3)},
			[]Cause{CauseNoQuorum, CauseUnreachable, CauseUnreachable}},
		{"every member up, none healthy (an election)", true, ms, []TargetResults{wedged(1, 0, 6, 10), wedged(2, 0, 6, 10), wedged(3, 2, 5, 10)},
			[]Cause{CauseNoQuorum, CauseNoQuorum, CauseNoQuorum}},
		{"five members, two wedged: the quorum of three stands", true, members(5),
			[]TargetResults{result(1, 1, 3, 7, true), result(2, 1, 3, 7, true), result(3, 1, 3, 7, true), wedged(4, 1, 3, 5), wedged(5, 1, 3, 5)},
			[]Cause{"", "", "", CauseWedged, CauseWedged}},
		{"five members, three wedged: no quorum", true, members(5),
			[]TargetResults{result(1, 1, 3, 7, true), result(2, 1, 3, 7, true), wedged(3, 1, 3, 5), wedged(4, 1, 3, 5), wedged(5, 1, 3, 5)},
			[]Cause{"", "", CauseNoQuorum, CauseNoQuorum, CauseNoQuorum}},
		{"learner behind, learner not serving", true, withLearner,
			[]TargetResults{result(1, 2, 5, 100, true), result(2, 2, 5, 100, true), result(3, 2, 5, 100, true), learner(result(4, 2, 5, 90, false), true)},
			[]Cause{"", "", "", CauseLearnerBehind}},
		{"learner not serving", true, withLearner,
			[]TargetResults{result(1, 2, 5, 100, true), result(2, 2, 5, 100, true), result(3, 2, 5, 100, true), learner(result(4, 2, 5, 100, false), false)},
			[]Cause{"", "", "", CauseNotServing}},
		{"learner down", true, withLearner,
			[]TargetResults{result(1, 2, 5, 100, true), result(2, 2, 5, 100, true), result(3, 2, 5, 100, true), dead(4)},
			[]Cause{"", "", "", CauseUnreachable}},
		{"a member with no client URL yet", true, unstarted, []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true)},
			[]Cause{"", "", CauseUnreachable}},
		{"refused: unknown", true, ms, []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), refusedBy(3, ReasonAuthentication)},
			[]Cause{"", "", unknown}},
		// First rounds: a member whose status or health read has not run
		// is not judged; the others are, as far as they can be.
		{"health read not run yet", true, ms, []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), without(result(3, 2, 5, 10, false), ProbeReadLinearizable)},
			[]Cause{"", "", unknown}},
		{"status not run yet", true, ms, []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), without(dead(3), ProbeStatus)},
			[]Cause{"", "", unknown}},
		{"serializable read not run yet", true, ms, []TargetResults{result(1, 2, 5, 10, true), result(2, 2, 5, 10, true), without(notServing(3, 2, 5, 10), ProbeReadSerializable)},
			[]Cause{"", "", unknown}},
		{"wedged beside a quorum, a voter not judged yet", true, members(5),
			[]TargetResults{result(1, 1, 3, 7, true), result(2, 1, 3, 7, true), result(3, 1, 3, 7, true), without(result(4, 1, 3, 7, true), ProbeReadLinearizable), wedged(5, 1, 3, 5)},
			[]Cause{"", "", "", unknown, CauseWedged}},
		{"short of quorum while a voter is not judged: unknown", true, ms, []TargetResults{without(result(1, 2, 5, 10, false), ProbeReadLinearizable), result(2, 2, 5, 10, true), wedged(3, 2, 5, 8)},
			[]Cause{unknown, "", unknown}},
		{"short of quorum while a voter refuses: unknown", true, ms, []TargetResults{refusedBy(1, ReasonTLSExpired), result(2, 2, 5, 10, true), wedged(3, 2, 5, 8)},
			[]Cause{unknown, "", unknown}},
		{"no member list yet", false, nil, []TargetResults{result(1, 2, 5, 10, true), dead(2), wedged(3, 2, 5, 8)},
			[]Cause{"", CauseUnreachable, unknown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Evaluate(View{}, time.Now(), tc.known, tc.members, tc.results)
			if len(v.Members) != len(tc.want) {
				t.Fatalf("%d members, want %d", len(v.Members), len(tc.want))
			}
			for i, m := range v.Members {
				got := m.Cause
				if !m.CauseKnown {
					if m.Cause != "" {
						t.Errorf("%s: cause %q while not known", m.Label, m.Cause)
					}
					got = unknown
				}
				if got != tc.want[i] {
					t.Errorf("%s: cause %q, want %q (healthy %v, reachable %v, serializable %v)", m.Label, got, tc.want[i], m.Healthy, m.Reachable, m.Serializable)
				}
				if m.CauseKnown && (m.Cause == "") != m.Healthy {
					t.Errorf("%s: cause %q with healthy %v", m.Label, m.Cause, m.Healthy)
				}
			}
		})
	}
}
