package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/probes"
)

const mReason = "etcdpulse_member_unhealthy_reason"

// reasonIs expects the member's unhealthy reason series: want at 1 and
// every other reason at 0, or all 0 when want is "" (healthy).
func reasonIs(member string, want probes.Cause) expect {
	return func(m metrics) error {
		for _, r := range probes.Causes {
			v := 0.0
			if r == want {
				v = 1
			}
			if err := gauge(mReason, v, "member", member, "reason", string(r))(m); err != nil {
				return err
			}
		}
		return nil
	}
}

// wedgeStall is the failpoint term that wedges a member: each pass of its
// raft loop sleeps 5 s before saving to the WAL, as behind a disk that
// stalls. Its linearizable reads (at least two passes) cannot make the 2 s
// probe deadline; Status and serializable reads do not go through the
// loop. Once cleared, the member recovers within one more sleep.
const wedgeStall = "sleep(5000)"

// unhealthySeen is when an agent's view first showed a member unhealthy,
// and first with a given cause, as the time from t0 to the view that
// showed it (the view's own timestamp, not the poll's); -1 when never.
type unhealthySeen struct {
	unhealthy, cause time.Duration
	// The cluster as that view of the cause saw it.
	hasLeader, disagreement bool
}

func (s unhealthySeen) String() string {
	return fmt.Sprintf("unhealthy in the view %.2fs after the fault, reason after %.2fs (then has_leader %v, leader_disagreement %v)",
		s.unhealthy.Seconds(), s.cause.Seconds(), s.hasLeader, s.disagreement)
}

// firstUnhealthy polls a's view until stop, then sends what it saw.
func firstUnhealthy(t0 time.Time, a *testAgent, member string, cause probes.Cause, stop <-chan struct{}) <-chan unhealthySeen {
	out := make(chan unhealthySeen, 1)
	go func() {
		seen := unhealthySeen{unhealthy: -1, cause: -1}
		for {
			v := a.View()
			if m, ok := v.Member(member); ok && v.At.After(t0) {
				if seen.unhealthy < 0 && !m.Healthy && !m.HealthUnknown {
					seen.unhealthy = v.At.Sub(t0)
				}
				if seen.cause < 0 && m.CauseKnown && m.Cause == cause {
					seen.cause = v.At.Sub(t0)
					seen.hasLeader, seen.disagreement = v.HasLeader, v.LeaderDisagreement
				}
			}
			select {
			case <-stop:
				out <- seen
				return
			case <-time.After(detectPoll):
			}
		}
	}()
	return out
}

// TestWedgedMember stalls one member's WAL with etcd's own failpoint
// (raftBeforeSave) on a 3-member cluster of etcd processes, with one agent
// per member at default settings. The member keeps answering Status and
// serializable reads while its writes and linearizable reads hang: it must
// read as unhealthy, wedged, with the cluster short of one unit of fault
// tolerance but committing (not as lost quorum, not as a dead member).
// The detection time is logged, not asserted (docs/benchmarks.md has the
// figures).
func TestWedgedMember(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.Process, Failpoints: true})
	agents := agentsFor(t, c)
	for i, a := range agents {
		a.waitFor(t, "agent "+c.Member(i).Name()+" sees a healthy cluster", healthyCluster(3)...)
	}

	// wedge stalls victim, waits until every agent reports it wedged
	// (beside what the case adds), clears the stall and waits until every
	// agent reports the cluster healthy again.
	wedge := func(t *testing.T, victim *etcdtest.Member, watcher *testAgent, extra ...expect) {
		others := []expect{}
		for _, m := range c.Members() {
			if m != victim {
				others = append(others, gauge(mMember, 1, "member", m.Name()), reasonIs(m.Name(), ""))
			}
		}
		wedged := append([]expect{
			gauge(mReachable, 1, "member", victim.Name()), gauge(mMember, 0, "member", victim.Name()),
			reasonIs(victim.Name(), probes.CauseWedged),
			gauge(mVoters, 3), gauge(mHealthy, 2), gauge(mQuorum, 2), gauge(mTolerance, 0),
		}, append(others, extra...)...)

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stop := make(chan struct{})
		t0 := time.Now()
		if err := victim.SetFailpoint(ctx, etcdtest.FailpointRaftBeforeSave, wedgeStall); err != nil {
			t.Fatal(err)
		}
		seen := firstUnhealthy(t0, watcher, victim.Name(), probes.CauseWedged, stop)
		t.Cleanup(func() { victim.ClearFailpoint(context.Background(), etcdtest.FailpointRaftBeforeSave) }) //nolint:errcheck
		watcher.waitFor(t, victim.Name()+" wedged", wedged...)
		close(stop)
		t.Logf("%s wedged (%s=%s): %v", victim.Name(), etcdtest.FailpointRaftBeforeSave, wedgeStall, <-seen)
		for i, a := range agents {
			if a != watcher {
				a.waitFor(t, "agent "+c.Member(i).Name()+": "+victim.Name()+" wedged", wedged...)
			}
		}
		// The wedged member's own agent: its member is up.
		if err := agents[indexOf(c, victim)].check(gauge(mUp, 1)); err != nil {
			t.Errorf("the wedged member's own agent: %v", err)
		}

		if err := victim.ClearFailpoint(ctx, etcdtest.FailpointRaftBeforeSave); err != nil {
			t.Fatal(err)
		}
		for i, a := range agents {
			a.waitFor(t, "agent "+c.Member(i).Name()+": recovered", append(healthyCluster(3), reasonIs(victim.Name(), ""))...)
		}
	}

	t.Run("follower", func(t *testing.T) {
		leader := leaderOf(t, c)
		victim := c.Member((indexOf(c, leader) + 1) % 3)
		// The wedged follower still follows the leader (three voters
		// report it): nothing changes at the cluster level but the lost
		// unit of fault tolerance.
		wedge(t, victim, agents[indexOf(c, leader)], gauge(mHasLeader, 1), leaderIs(leader.Name()), gauge(mFollowing, 3))
	})

	// A stalled leader sends no heartbeats: the others elect a new leader
	// and commit without it, while it still says it leads, in its old
	// term, until it steps down (has_leader 0 and leader_disagreement 1
	// meanwhile, which a disk hung for good would keep). It is wedged, and
	// a quorum follows the new leader: not a lost leader.
	t.Run("leader", func(t *testing.T) {
		old := leaderOf(t, c)
		wedge(t, old, agents[(indexOf(c, old)+1)%3], gauge(mFollowing, 2))
		if l := leaderOf(t, c); l == old {
			t.Errorf("%s still leads after its stall", old.Name())
		}
	})
}
