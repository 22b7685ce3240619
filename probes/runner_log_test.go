package probes

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// A single-member cluster has fault tolerance 0 by design: the agent says
// so once, at info level, and never warns that quorum is at risk.
func TestLogSingleMemberNoQuorumWarning(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 1})
	logs := &logRecorder{}
	targets, err := NewTargets(c.ClientURLs(), ClientConfig{DialTimeout: 2 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer targets.Close()
	state := NewState()
	every := Schedule{Interval: time.Millisecond, Timeout: 10 * time.Second}
	r := NewRunner(RunnerOptions{
		Targets: targets, State: state, Tick: time.Second, Logger: slog.New(logs),
		Probes: []Scheduled{
			{Probe: &MemberListProbe{Targets: targets}, Scope: AnyMember, Schedule: every},
			{Probe: &StatusProbe{State: state, Targets: targets}, Scope: EveryMember, Schedule: every},
			{Probe: &ReadProbe{Key: "/etcdpulse/health"}, Scope: EveryMember, Schedule: every},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var v View
	testenv.Eventually(t, time.Minute, "the cluster's health known", func() error {
		if v = r.RunOnce(ctx); !v.HealthKnown {
			return errors.New("not known after a round")
		}
		return nil
	})
	// A few more rounds: nothing changes, nothing more is logged.
	for range 3 {
		v = r.RunOnce(ctx)
	}
	if v.Voters != 1 || v.HealthyVoters != 1 || v.FaultTolerance != 0 {
		t.Fatalf("view: %d voters, %d healthy, fault tolerance %d; want 1, 1, 0", v.Voters, v.HealthyVoters, v.FaultTolerance)
	}
	if n := logs.count(slog.LevelWarn, "quorum at risk"); n != 0 {
		t.Errorf("%d quorum-at-risk warnings for a single-member cluster, want none", n)
	}
	if n := logs.count(slog.LevelInfo, "fault tolerance 0"); n != 1 {
		t.Errorf("%d info lines about fault tolerance 0, want 1", n)
	}
	for _, rec := range logs.records() {
		if rec.Level >= slog.LevelWarn {
			t.Errorf("unexpected %s: %s", rec.Level, rec.Message)
		}
	}
}

// Three or more voters with fault tolerance 0 are at risk: that warns,
// once, when first known and when it happens.
func TestLogQuorumAtRisk(t *testing.T) {
	view := func(voters, healthy int) View {
		quorum := voters/2 + 1
		return View{HealthKnown: true, Voters: voters, HealthyVoters: healthy, QuorumSize: quorum, FaultTolerance: healthy - quorum}
	}
	for _, c := range []struct {
		name       string
		prev, v    View
		warn, info int
	}{
		{"3 voters, first known with one down", View{}, view(3, 2), 1, 0},
		{"3 voters, one goes down", view(3, 3), view(3, 2), 1, 0},
		{"3 voters, unchanged", view(3, 2), view(3, 2), 0, 0},
		{"2 voters, first known", View{}, view(2, 2), 0, 1},
		{"1 voter, back after quorum was lost", view(1, 0), view(1, 1), 0, 1},
		{"1 voter, unchanged", view(1, 1), view(1, 1), 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			logs := &logRecorder{}
			logChanges(slog.New(logs), c.prev, c.v)
			if w, i := logs.count(slog.LevelWarn, "quorum at risk"), logs.count(slog.LevelInfo, "fault tolerance 0"); w != c.warn || i != c.info {
				t.Errorf("%d warnings and %d info lines, want %d and %d", w, i, c.warn, c.info)
			}
		})
	}
}
