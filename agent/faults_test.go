package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/probes"
)

const (
	mUp        = "etcdpulse_up"
	mHasLeader = "etcdpulse_cluster_has_leader"
	mChanges   = "etcdpulse_cluster_leader_changes_total"
	mVoters    = "etcdpulse_cluster_voting_members"
	mHealthy   = "etcdpulse_cluster_healthy_voting_members"
	mQuorum    = "etcdpulse_cluster_quorum_size"
	mTolerance = "etcdpulse_cluster_fault_tolerance"
	mMember    = "etcdpulse_member_healthy"
	mReachable = "etcdpulse_member_reachable"
	mFollowing = "etcdpulse_cluster_leader_voters"
	mDisagree  = "etcdpulse_cluster_leader_disagreement"
)

func healthyCluster(voters float64) []expect {
	return []expect{
		gauge(mUp, 1), gauge(mHasLeader, 1), gauge(mVoters, voters), gauge(mHealthy, voters),
		gauge(mQuorum, float64(int(voters)/2+1)), gauge(mTolerance, voters-float64(int(voters)/2+1)),
		gauge(mFollowing, voters), gauge(mDisagree, 0),
	}
}

func leaderOf(t *testing.T, c *etcdtest.Cluster) *etcdtest.Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func restart(t *testing.T, ms ...*etcdtest.Member) {
	t.Helper()
	for _, m := range ms {
		if err := m.Restart(); err != nil {
			t.Fatalf("restart %s: %v", m.Name(), err)
		}
	}
}

// indexOf returns the position of m in the cluster, which is also the
// index of its agent.
func indexOf(c *etcdtest.Cluster, m *etcdtest.Member) int {
	for i, x := range c.Members() {
		if x == m {
			return i
		}
	}
	return -1
}

// TestFaultDetection injects every fault the agent must report, one after
// the other on one 3-member cluster of real etcd processes (SIGSTOP needs a
// process), with one agent per member at default settings. Peer traffic
// goes through proxies so that a member can be cut off from its peers.
func TestFaultDetection(t *testing.T) {
	faultDetection(t, etcdtest.EtcdBinary(t), "3.7.")
}

// The same faults against the older etcd the agent stays compatible with
// (Debian 12's etcd-server, 3.4).
func TestFaultDetectionEtcd34(t *testing.T) {
	faultDetection(t, etcdtest.CompatEtcdBinary(t), "3.4.")
}

// faultDetection runs the faults on a cluster of bin, whose members must
// report a version starting with version.
func faultDetection(t *testing.T, bin, version string) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.Process, PeerProxy: true, EtcdBin: bin})
	// Each agent also reads its member's own /metrics and measures fsync
	// beside its data directory, as on a control-plane node.
	agents := agentsWith(t, c, func(m *etcdtest.Member, cfg *Config) {
		cfg.Etcd.DataDir = m.DataDir()
		cfg.Etcd.MetricsURL = m.ClientURL() + "/metrics"
		cfg.Disk.ProbeDir = m.DataDir() + "-probe" // the members share a parent directory
	})
	for i, a := range agents {
		a.waitFor(t, "agent "+c.Member(i).Name()+" sees a healthy cluster", healthyCluster(3)...)
	}
	agents[0].waitFor(t, "etcd's own metrics read and a round of fsyncs measured",
		gauge("etcdpulse_etcd_metrics_up", 1), histCountAtLeast("etcdpulse_etcd_wal_fsync_duration_seconds", 1),
		histCountAtLeast(mFsyncDuration, DefaultDiskSyncs), absentFamily(mFsyncRefused))
	infos := mustScrape(t, agents[0])["etcdpulse_member_info"].GetMetric()
	if len(infos) != 3 {
		t.Fatalf("%d etcdpulse_member_info samples, want 3", len(infos))
	}
	for _, m := range infos {
		for _, l := range m.GetLabel() {
			if l.GetName() == "version" && !strings.HasPrefix(l.GetValue(), version) {
				t.Fatalf("a member reports etcd %q, want %s*", l.GetValue(), version)
			}
		}
	}

	t.Run("leader killed", func(t *testing.T) {
		old := leaderOf(t, c)
		other := agents[(indexOf(c, old)+1)%3]
		before, _ := mustScrape(t, other).value(mChanges)
		if err := old.Kill(); err != nil {
			t.Fatal(err)
		}
		other.waitFor(t, "a new leader, counted",
			gauge(mHasLeader, 1), leaderIsNot(old.Name()), counterAtLeast(mChanges, before+1),
			gauge(mMember, 0, "member", old.Name()), reasonIs(old.Name(), probes.CauseUnreachable), gauge(mTolerance, 0))
		restart(t, old)
		other.waitFor(t, "recovery after the restart", healthyCluster(3)...)
	})

	t.Run("follower killed", func(t *testing.T) {
		leader := leaderOf(t, c)
		victim := c.Member((indexOf(c, leader) + 1) % 3)
		watcher := agents[indexOf(c, leader)]
		if err := victim.Kill(); err != nil {
			t.Fatal(err)
		}
		watcher.waitFor(t, "the killed member reported",
			gauge(mMember, 0, "member", victim.Name()), gauge(mReachable, 0, "member", victim.Name()), reasonIs(victim.Name(), probes.CauseUnreachable),
			gauge(mHealthy, 2), gauge(mTolerance, 0), gauge(mHasLeader, 1))
		// The dead member's own agent stays up and says its member is gone.
		agents[indexOf(c, victim)].waitFor(t, "own member down, cluster view kept",
			gauge(mUp, 0), gauge(mHasLeader, 1), gauge(mHealthy, 2), gauge(mTolerance, 0))
		restart(t, victim)
		watcher.waitFor(t, "recovery after the restart", healthyCluster(3)...)
		agents[indexOf(c, victim)].waitFor(t, "own member back", healthyCluster(3)...)
	})

	t.Run("follower frozen", func(t *testing.T) {
		leader := leaderOf(t, c)
		victim := c.Member((indexOf(c, leader) + 2) % 3)
		watcher := agents[indexOf(c, leader)]
		if err := victim.Freeze(); err != nil {
			t.Fatal(err)
		}
		watcher.waitFor(t, "the frozen member reported unhealthy",
			gauge(mMember, 0, "member", victim.Name()), gauge(mReachable, 0, "member", victim.Name()), reasonIs(victim.Name(), probes.CauseUnreachable),
			gauge(mHealthy, 2), gauge(mTolerance, 0))
		agents[indexOf(c, victim)].waitFor(t, "own member frozen, cluster view kept",
			gauge(mUp, 0), gauge(mMember, 0, "member", victim.Name()), gauge(mHasLeader, 1), gauge(mHealthy, 2))
		if err := victim.Thaw(); err != nil {
			t.Fatal(err)
		}
		watcher.waitFor(t, "recovery after SIGCONT", healthyCluster(3)...)
		agents[indexOf(c, victim)].waitFor(t, "own member thawed", healthyCluster(3)...)
	})

	t.Run("leader frozen", func(t *testing.T) {
		old := leaderOf(t, c)
		if err := old.Freeze(); err != nil {
			t.Fatal(err)
		}
		other := agents[(indexOf(c, old)+1)%3]
		other.waitFor(t, "a new leader while the old one is frozen",
			gauge(mHasLeader, 1), leaderIsNot(old.Name()), gauge(mMember, 0, "member", old.Name()), gauge(mTolerance, 0))
		agents[indexOf(c, old)].waitFor(t, "own frozen leader replaced",
			gauge(mUp, 0), gauge(mHasLeader, 1), leaderIsNot(old.Name()))
		if err := old.Thaw(); err != nil {
			t.Fatal(err)
		}
		other.waitFor(t, "recovery after SIGCONT", healthyCluster(3)...)
	})

	// The cut-off follower answers clients but reports no leader: no agent
	// sees agreement (has_leader 0), yet two voters follow the leader, a
	// quorum, so the cluster commits (EtcdNoLeader stays silent), and the
	// follower reads as cut off, not wedged.
	t.Run("follower cut off from its peers", func(t *testing.T) {
		leader := leaderOf(t, c)
		victim := c.Member((indexOf(c, leader) + 1) % 3)
		if err := victim.IsolatePeers(true); err != nil {
			t.Fatal(err)
		}
		cutOff := []expect{
			gauge(mHasLeader, 0), gauge(mDisagree, 1), gauge(mFollowing, 2), gauge(mQuorum, 2),
			gauge(mReachable, 1, "member", victim.Name()), gauge(mMember, 0, "member", victim.Name()),
			reasonIs(victim.Name(), probes.CauseCutOff), reasonIs(leader.Name(), ""),
			gauge(mHealthy, 2), gauge(mTolerance, 0),
		}
		agents[indexOf(c, leader)].waitFor(t, "the leader's agent: cut-off member reported, leader kept by a quorum", cutOff...)
		agents[indexOf(c, victim)].waitFor(t, "the cut-off member's own agent: the same view", append(cutOff, gauge(mUp, 1))...)
		if err := victim.IsolatePeers(false); err != nil {
			t.Fatal(err)
		}
		for i, a := range agents {
			a.waitFor(t, "recovery on agent "+c.Member(i).Name(), healthyCluster(3)...)
		}
	})

	t.Run("two of three stopped", func(t *testing.T) {
		survivor := c.Member(0)
		for _, m := range c.Members()[1:] {
			if err := m.Kill(); err != nil {
				t.Fatal(err)
			}
		}
		agents[0].waitFor(t, "quorum lost on the survivor's agent",
			gauge(mUp, 1), gauge(mHasLeader, 0), gauge(mVoters, 3), gauge(mQuorum, 2),
			gauge(mHealthy, 0), gaugeBelow(mTolerance, 0), gauge(mMember, 0, "member", survivor.Name()),
			reasonIs(survivor.Name(), probes.CauseNoQuorum), reasonIs(c.Member(1).Name(), probes.CauseUnreachable))
		restart(t, c.Members()[1:]...)
		for i, a := range agents {
			a.waitFor(t, "recovery on agent "+c.Member(i).Name(), healthyCluster(3)...)
		}
	})
}

func mustScrape(t *testing.T, a *testAgent) metrics {
	t.Helper()
	m, err := a.scrape()
	if err != nil {
		t.Fatal(err)
	}
	return m
}
