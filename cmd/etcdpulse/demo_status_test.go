package main

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/etcdpulse/etcdpulse/probes"
)

// The status screen in the states chaos brings: the killed leader reads
// as down and formerly leader, the first fault is announced, and every
// line fits 80 columns, long paths and errors included.
func TestDemoStatusScreen(t *testing.T) {
	now := time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)
	member := func(id uint64, label string, reachable, leader bool) probes.MemberView {
		m := probes.MemberView{Label: label, Reachable: reachable, Healthy: reachable, IsLeader: leader,
			Outcomes: map[string]probes.Outcome{probes.ProbeStatus: {OK: reachable, At: now.Add(-time.Second)}}}
		m.ID = id
		if reachable {
			m.Status = &probes.Status{MemberID: id, DBSize: 20 << 10}
		}
		return m
	}
	agents := []agentRow{
		{"member-0", "http://127.0.0.1:12379/metrics", "p99 1.23 ms (48 syncs)"},
		{"member-1", "http://127.0.0.1:12380/metrics", "refused: other_device"},
		{"member-2", "http://127.0.0.1:12381/metrics", "STALLED (disk op outstanding)"},
	}
	longPath := "/tmp/" + strings.Repeat("a-very-long-directory-name/", 5) + "prometheus.yml"
	cases := []struct {
		name   string
		screen statusScreen
		want   []string
	}{
		{
			name: "leader just killed, no leader yet",
			screen: statusScreen{
				view: probes.View{MembershipKnown: true, HealthKnown: true, HasLeader: false, Leader: 1, Term: 2,
					Voters: 3, HealthyVoters: 2, QuorumSize: 2, FaultTolerance: 0,
					Members: []probes.MemberView{member(1, "member-0", false, false), member(2, "member-1", true, false), member(3, "member-2", true, false)}},
				chaos: true, next: "fault", nextAt: now.Add(30 * time.Second),
			},
			want: []string{
				"  leader NONE (last member-0) term 2",
				"  << quorum at risk: one more failure loses it",
				"  member-0  down (was leader) NO        NO",
				"  member-1  follower          yes       yes",
				"  first fault at 15:04:35 (in 30s)",
			},
		},
		{
			name: "new leader elected: the old one is remembered",
			screen: statusScreen{
				view: probes.View{MembershipKnown: true, HealthKnown: true, HasLeader: true, Leader: 2, Term: 3,
					Voters: 3, HealthyVoters: 2, QuorumSize: 2, FaultTolerance: 0, LeaderChanges: 1,
					Members: []probes.MemberView{member(1, "member-0", false, false), member(2, "member-1", true, true), member(3, "member-2", false, false)}},
				wasLeader: map[string]bool{"member-0": true, "member-1": false, "member-2": false},
				chaos:     true,
				events:    []string{"15:03:35 chaos: killing leader member-0", "15:03:50 chaos: restart of member-2 failed: " + strings.Repeat("a long error message ", 8)},
				next:      "restart of member-0", nextAt: now.Add(4500 * time.Millisecond),
			},
			want: []string{
				"  leader member-1   term 3",
				"  member-0  down (was leader) NO",
				"  member-1  LEADER            yes",
				"  member-2  down              NO",
				"  next: restart of member-0 at 15:04:10 (in 5s)",
			},
		},
		{
			name: "first round: members not probed yet are not down",
			screen: statusScreen{
				view: probes.View{MembershipKnown: true, HasLeader: true, Leader: 1, Term: 2,
					Voters: 3, HealthyVoters: 1, QuorumSize: 2, FaultTolerance: -1,
					Members: []probes.MemberView{member(1, "member-0", true, true), {Label: "member-1"}, {Label: "member-2"}}},
			},
			want: []string{"  member-1  not probed yet    -         -", "  voting members 3, healthy 1, quorum 2, fault tolerance -1\n\n"},
		},
		{
			name: "one voter: fault tolerance 0 is no risk",
			screen: statusScreen{
				view: probes.View{MembershipKnown: true, HealthKnown: true, HasLeader: true, Leader: 1, Term: 2,
					Voters: 1, HealthyVoters: 1, QuorumSize: 1, FaultTolerance: 0,
					Members: []probes.MemberView{member(1, "member-0", true, true)}},
			},
			want: []string{"  member-0  LEADER", "Run with --chaos"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.screen
			s.now, s.source, s.agents, s.promConfig = now, "member-1", agents, longPath
			s.promURL = "http://127.0.0.1:9090"
			out := s.render(false)
			for _, w := range append(c.want,
				"  member-0  http://127.0.0.1:12379/metrics  p99 1.23 ms (48 syncs)",
				"  member-1  http://127.0.0.1:12380/metrics  refused: other_device",
				"Prometheus: http://127.0.0.1:9090   (alerts: http://127.0.0.1:9090/alerts)") {
				if !strings.Contains(out, w) {
					t.Errorf("screen lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "quorum at risk") != (c.screen.view.Voters >= 3 && c.screen.view.FaultTolerance == 0) {
				t.Errorf("quorum-at-risk note wrong for %d voters:\n%s", c.screen.view.Voters, out)
			}
			checkWidth(t, out)
		})
	}
}

// fit keeps every line within the width and every word of the text.
func TestFit(t *testing.T) {
	text := "short line\n  " + strings.Repeat("word ", 30) + "\n" + strings.Repeat("x", 200) + " tail\n— ünïcode " + strings.Repeat("é", 90)
	out := fit(text, 40)
	for _, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > 40 {
			t.Errorf("line of %d runes: %q", n, l)
		}
	}
	if got, want := strings.Join(strings.Fields(out), ""), strings.Join(strings.Fields(text), ""); got != want {
		t.Errorf("fit lost or changed text:\n%s", out)
	}
	if short := "short line\nanother"; fit(short, 40) != short {
		t.Errorf("fit changed lines that fit: %q", fit(short, 40))
	}
}
