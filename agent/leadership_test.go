package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
	"github.com/etcdpulse/etcdpulse/probes"
)

const mLeaderCauses = "etcdpulse_leader_changes_total"

// TestExplainLeaderChange weighs histories of the old leader as the views
// would have shown them, one sample a second around a change at t=0.
func TestExplainLeaderChange(t *testing.T) {
	at := time.Unix(1000, 0)
	sec := func(s float64) time.Time { return at.Add(time.Duration(s * float64(time.Second))) }
	ok := func(s float64) leaderSample {
		return leaderSample{at: sec(s), reachable: true, healthy: true, status: probes.Outcome{OK: true, At: sec(s - 0.1)}}
	}
	failed := func(s float64, r probes.Reason) leaderSample {
		return leaderSample{at: sec(s), cause: probes.CauseUnreachable, status: probes.Outcome{At: sec(s - 0.1), Reason: r, Err: "status: " + string(r)}}
	}
	wedged := func(s float64, local bool) leaderSample {
		x := ok(s)
		x.healthy, x.cause, x.local = false, probes.CauseWedged, local
		x.read = probes.Outcome{At: sec(s - 1), Reason: probes.ReasonTimeout, Err: "read_linearizable: no answer within 2s"}
		return x
	}
	// A read that met the transfer: etcd's own error, once.
	lostRead := func(s float64) leaderSample {
		x := wedged(s, true)
		x.read = probes.Outcome{At: sec(s - 0.5), Reason: probes.ReasonEtcd, Err: "read_linearizable: etcdserver: leader changed"}
		return x
	}
	dialed := func(x leaderSample, n uint64) leaderSample { x.dials = n; return x }
	withPID := func(x leaderSample, pid int) leaderSample { x.local, x.pid = true, pid; return x }
	cutOff := func(s float64) leaderSample { x := ok(s); x.healthy, x.cause = false, probes.CauseCutOff; return x }
	peerDown := func(s float64) leaderSample {
		x := ok(s)
		x.network = probes.Outcome{At: sec(s - 0.5), Reason: probes.ReasonTimeout, Err: "network: connect_peer 127.0.0.1:2380: i/o timeout"}
		return x
	}
	stalled := func(s float64) leaderSample { x := ok(s); x.local, x.fsyncStalled = true, true; return x }

	for _, tc := range []struct {
		name    string
		history []leaderSample
		now     float64
		want    LeaderCause // "" while undecided
	}{
		{"planned, held", []leaderSample{ok(-2), ok(-1), ok(0), ok(1), ok(2), ok(3), ok(4), ok(5)}, 5, LeaderPlannedTransfer},
		{"planned, not held yet", []leaderSample{ok(-1), ok(0), ok(1), ok(2)}, 2, ""},
		{"planned, one read lost in the transfer", []leaderSample{ok(-1), lostRead(0), ok(1), ok(5)}, 5, LeaderPlannedTransfer},
		{"transfer then stop, not back", []leaderSample{ok(-1), ok(0), failed(1, probes.ReasonUnreachable), failed(2, probes.ReasonUnreachable)}, 10, LeaderUnreachable},
		{"transfer then stop, waiting", []leaderSample{ok(-1), ok(0), failed(1, probes.ReasonUnreachable)}, 6, ""},
		{"refused then back", []leaderSample{ok(-1), failed(0, probes.ReasonUnreachable), ok(2)}, 2, LeaderRestart},
		{"new PID on its node", []leaderSample{withPID(ok(-1), 10), withPID(ok(2), 11), withPID(ok(3), 11)}, 3, LeaderRestart},
		{"new PID, not answering yet", []leaderSample{withPID(ok(-1), 10), withPID(ok(2), 11)}, 2, ""},
		{"another process while down", []leaderSample{withPID(ok(-1), 10), withPID(ok(0), 12), withPID(failed(1, probes.ReasonUnreachable), 12)}, 10, LeaderUnreachable},
		{"redialed, answering", []leaderSample{dialed(ok(-1), 1), dialed(ok(0), 2), dialed(ok(1), 2)}, 1, LeaderRestart},
		{"same connection", []leaderSample{dialed(ok(-1), 1), dialed(ok(0), 1), dialed(ok(5), 1)}, 5, LeaderPlannedTransfer},
		{"timed out", []leaderSample{ok(-1), ok(0), failed(1.5, probes.ReasonTimeout)}, 1.5, LeaderUnreachable},
		{"frozen, stale success", []leaderSample{ok(-1), ok(0), ok(1)}, 1, ""},
		{"fsync stalled on its node", []leaderSample{ok(-1), stalled(0)}, 0, LeaderDiskStall},
		{"wedged on its node", []leaderSample{wedged(-1, true), wedged(0, true)}, 0, LeaderDiskStall},
		{"wedged elsewhere", []leaderSample{wedged(-1, false), wedged(0, false), wedged(5, false)}, 10, LeaderUnknown},
		{"cut off", []leaderSample{ok(-1), cutOff(0), cutOff(1)}, 1, LeaderCutOff},
		{"peer port only", []leaderSample{ok(-1), peerDown(0)}, 0, LeaderCutOff},
		{"old evidence ignored", []leaderSample{failed(-20, probes.ReasonTimeout), ok(-1), ok(0), ok(5)}, 5, LeaderPlannedTransfer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ev, done := explainLeaderChange(at, sec(-3), tc.history, sec(tc.now))
			if !done {
				got = ""
			}
			if got != tc.want {
				t.Errorf("cause %q (evidence %q), want %q", got, ev, tc.want)
			}
			if done && len(ev) == 0 {
				t.Error("decided without evidence")
			}
		})
	}
}

// leaderAgent is an agent with its log and spans kept.
type leaderAgent struct {
	*testAgent
	member *etcdtest.Member
	logs   *testenv.Buffer
	spans  *tracetest.SpanRecorder
}

// leaderAgents starts one agent per member, each measuring fsync beside
// its member's data directory and finding its etcd process, as on a
// control-plane node.
func leaderAgents(t *testing.T, c *etcdtest.Cluster) []*leaderAgent {
	var out []*leaderAgent
	urls := c.ClientURLs()
	for i, m := range c.Members() {
		cfg := DefaultConfig()
		cfg.Etcd.Endpoints = append([]string{urls[i]}, append(append([]string{}, urls[:i]...), urls[i+1:]...)...)
		cfg.Etcd.DataDir = m.DataDir()
		cfg.Disk.ProbeDir = m.DataDir() + "-probe"
		tp, rec := recorder(t)
		logs := &testenv.Buffer{}
		a := serveAgent(t, Options{Config: &cfg, Logger: slog.New(slog.NewTextHandler(logs, nil)), TracerProvider: tp})
		out = append(out, &leaderAgent{testAgent: a, member: m, logs: logs, spans: rec})
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("agent %s's log:\n%s", m.Name(), strings.Join(logs.Lines("leader"), "\n"))
			}
		})
	}
	return out
}

// causeCounted expects the change counted under want, and under no other
// cause.
func causeCounted(want LeaderCause) expect {
	return func(m metrics) error {
		var others []string
		for _, c := range LeaderCauses {
			v, ok := m.value(mLeaderCauses, "cause", string(c))
			if !ok {
				return fmt.Errorf("%s{cause=%q} absent", mLeaderCauses, c)
			}
			switch {
			case c == want && v < 1:
				return fmt.Errorf("%s{cause=%q} = %v, want >= 1", mLeaderCauses, c, v)
			case c != want && v != 0:
				others = append(others, fmt.Sprintf("%s=%v", c, v))
			}
		}
		if len(others) > 0 {
			return fmt.Errorf("changes counted under other causes too: %v", others)
		}
		return nil
	}
}

// leaderChangeCase starts a 3-member cluster with an agent per member,
// applies fault to its leader and waits until every agent has counted the
// change: under wantLocal on the old leader's node, under want on the
// others.
func leaderChangeCase(t *testing.T, opts etcdtest.Options, fault func(t *testing.T, c *etcdtest.Cluster, old *etcdtest.Member), want, wantLocal LeaderCause) {
	opts.Size = 3
	c := etcdtest.Start(t, opts)
	agents := leaderAgents(t, c)
	for _, a := range agents {
		a.waitFor(t, "agent "+a.member.Name()+" sees a healthy cluster", append(healthyCluster(3), causeCounted(""))...)
	}
	old := leaderOf(t, c)
	t0 := time.Now()
	fault(t, c, old)
	for _, a := range agents {
		w := want
		if a.member == old {
			w = wantLocal
		}
		testenv.Eventually(t, 90*time.Second, "agent "+a.member.Name()+" counts the change as "+string(w), func() error { return a.check(causeCounted(w)) })
		lines := a.logs.Lines("leader change explained")
		if len(lines) == 0 {
			t.Fatalf("agent %s: no log line for the change", a.member.Name())
		}
		t.Logf("agent %s, %.1fs after the fault: %s", a.member.Name(), time.Since(t0).Seconds(), lines[0])
		if !strings.Contains(lines[0], "from="+old.Name()) || !strings.Contains(lines[0], "cause="+string(w)) {
			t.Errorf("agent %s: log line %q, want from=%s cause=%s", a.member.Name(), lines[0], old.Name(), w)
		}
		checkCauseSpan(t, a, old.Name(), w)
	}
}

// checkCauseSpan expects a leader change span with its cause event.
func checkCauseSpan(t *testing.T, a *leaderAgent, from string, want LeaderCause) {
	t.Helper()
	for _, s := range a.spans.Ended() {
		if s.Name() != SpanLeaderChange {
			continue
		}
		for _, e := range s.Events() {
			if e.Name != EventLeaderChangeCause {
				continue
			}
			kv := attrs(e.Attributes)
			if kv[AttrLeaderChangeCause].AsString() == string(want) && kv[probes.AttrPreviousLeaderName].AsString() == from && len(kv[AttrLeaderChangeEvid].AsStringSlice()) > 0 {
				return
			}
		}
	}
	t.Errorf("agent %s: no %s span with a %s event for cause %s from %s", a.member.Name(), SpanLeaderChange, EventLeaderChangeCause, want, from)
}

// TestLeaderChangeMoveLeader: MoveLeader to a follower is a planned
// transfer: the old leader answers and stays healthy throughout.
func TestLeaderChangeMoveLeader(t *testing.T) {
	leaderChangeCase(t, etcdtest.Options{Mode: etcdtest.InProcess}, func(t *testing.T, c *etcdtest.Cluster, old *etcdtest.Member) {
		to := c.Member((indexOf(c, old) + 1) % 3)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := old.Client(t).MoveLeader(ctx, to.ID()); err != nil {
			t.Fatal(err)
		}
	}, LeaderPlannedTransfer, LeaderPlannedTransfer)
}

// TestLeaderChangeKilled: a leader killed and not restarted refuses
// connections past the evidence window: unreachable.
func TestLeaderChangeKilled(t *testing.T) {
	leaderChangeCase(t, etcdtest.Options{Mode: etcdtest.Process}, func(t *testing.T, _ *etcdtest.Cluster, old *etcdtest.Member) {
		if err := old.Kill(); err != nil {
			t.Fatal(err)
		}
	}, LeaderUnreachable, LeaderUnreachable)
}

// TestLeaderChangeRestarted: a leader's process killed and started again
// at once: refused, then answering (and on its own node, a new PID).
func TestLeaderChangeRestarted(t *testing.T) {
	leaderChangeCase(t, etcdtest.Options{Mode: etcdtest.Process}, func(t *testing.T, _ *etcdtest.Cluster, old *etcdtest.Member) {
		if err := old.Kill(); err != nil {
			t.Fatal(err)
		}
		restart(t, old)
	}, LeaderRestart, LeaderRestart)
}

// TestLeaderChangeFrozen: a leader stopped with SIGSTOP answers nothing:
// its status runs time out, unreachable.
func TestLeaderChangeFrozen(t *testing.T) {
	leaderChangeCase(t, etcdtest.Options{Mode: etcdtest.Process}, func(t *testing.T, _ *etcdtest.Cluster, old *etcdtest.Member) {
		if err := old.Freeze(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { old.Thaw() }) //nolint:errcheck
	}, LeaderUnreachable, LeaderUnreachable)
}

// TestLeaderChangeDiskStall: the leader's raft loop sleeps before each WAL
// save (etcd's raftBeforeSave failpoint), as behind a stalled disk. Its
// own agent sees it wedged: disk_stall. The other agents see a member
// that answers but does not serve linearizable reads, which they cannot
// put down to its disk: unknown.
func TestLeaderChangeDiskStall(t *testing.T) {
	leaderChangeCase(t, etcdtest.Options{Mode: etcdtest.Process, Failpoints: true}, func(t *testing.T, _ *etcdtest.Cluster, old *etcdtest.Member) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := old.SetFailpoint(ctx, etcdtest.FailpointRaftBeforeSave, wedgeStall); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { old.ClearFailpoint(context.Background(), etcdtest.FailpointRaftBeforeSave) }) //nolint:errcheck
	}, LeaderUnknown, LeaderDiskStall)
}
