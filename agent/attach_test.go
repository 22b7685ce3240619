package agent

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"

	"go.etcd.io/etcd/server/v3/storage"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// attachAgents attaches an agent to each in-process member of c, the way a
// program that embeds etcd would, the other members as fallbacks.
func attachAgents(t *testing.T, c *etcdtest.Cluster) []*testAgent {
	t.Helper()
	var out []*testAgent
	urls := c.ClientURLs()
	for i, m := range c.Members() {
		cfg := DefaultConfig()
		cfg.Disk.ProbeDir = m.DataDir() + "-probe" // the members share a parent directory
		a, err := Attach(m.Etcd(), Options{
			Endpoints: append([]string{urls[i]}, slices.Delete(slices.Clone(urls), i, i+1)...),
			Config:    &cfg,
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, serveAttached(t, a))
	}
	return out
}

// The fault set against in-process members through Attach, with sidecar
// agents beside the same members: both modes report the same cluster.
func TestAttachFaults(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess, PeerProxy: true})
	attached := attachAgents(t, c)
	sidecars := agentsWith(t, c, func(m *etcdtest.Member, cfg *Config) {
		cfg.Etcd.DataDir = m.DataDir()
		cfg.Disk.ProbeDir = m.DataDir() + "-sidecar-probe"
	})
	both := func(i int) []*testAgent { return []*testAgent{attached[i], sidecars[i]} }
	for i := range attached {
		for _, a := range both(i) {
			a.waitFor(t, "healthy, seen by agent "+c.Member(i).Name(), healthyCluster(3)...)
		}
	}
	// Attached, the member's own status is read in process: the same
	// figures as its status call, and its etcd metrics through its
	// client URL.
	local := c.Member(0).Name()
	attached[0].waitFor(t, "the local member's figures in process",
		gauge("etcdpulse_local_member_info", 1, "member", local, "member_id", fmt.Sprintf("%x", c.Member(0).ID())),
		gauge("etcdpulse_member_is_learner", 0, "member", local),
		gauge("etcdpulse_etcd_metrics_up", 1),
		// The quota from the embedded server's configuration: unset,
		// etcd's default.
		quotaFrom(local, float64(storage.DefaultQuotaBytes), collectors.QuotaFromStatus),
		histCountAtLeast(mFsyncDuration, DefaultDiskSyncs))
	sameView(t, attached[0], sidecars[0])
	// In process means no Status call to the local member, where the
	// sidecar makes one a second.
	if v, _ := mustScrape(t, attached[0]).value("etcdpulse_etcd_requests_total", "member", local, "method", "Status"); v != 0 {
		t.Errorf("the attached agent sent %v Status calls to its own member, want none", v)
	}
	if v, _ := mustScrape(t, sidecars[0]).value("etcdpulse_etcd_requests_total", "member", local, "method", "Status"); v == 0 {
		t.Error("the sidecar sent no Status call to its member")
	}

	t.Run("peer frozen", func(t *testing.T) {
		leader := leaderOf(t, c)
		victim := c.Member((indexOf(c, leader) + 1) % 3)
		if err := victim.Freeze(); err != nil {
			t.Fatal(err)
		}
		for i := range attached {
			if c.Member(i) == victim {
				continue // its own member answers it in process, not over the frozen ports
			}
			for _, a := range both(i) {
				a.waitFor(t, "the frozen peer reported by agent "+c.Member(i).Name(),
					gauge(mMember, 0, "member", victim.Name()), gauge(mHealthy, 2), gauge(mTolerance, 0), gauge(mHasLeader, 1))
			}
			sameView(t, attached[i], sidecars[i])
		}
		if err := victim.Thaw(); err != nil {
			t.Fatal(err)
		}
		for i := range attached {
			attached[i].waitFor(t, "recovery after the thaw", healthyCluster(3)...)
		}
	})

	t.Run("member killed", func(t *testing.T) {
		leader := leaderOf(t, c)
		victim := c.Member((indexOf(c, leader) + 1) % 3)
		vi := indexOf(c, victim)
		if err := victim.Kill(); err != nil { // closes its embedded server
			t.Fatal(err)
		}
		for i := range attached {
			for _, a := range both(i) {
				a.waitFor(t, "the killed member reported by agent "+c.Member(i).Name(),
					gauge(mMember, 0, "member", victim.Name()), gauge(mHealthy, 2), gauge(mTolerance, 0), gauge(mHasLeader, 1))
			}
			sameView(t, attached[i], sidecars[i])
		}
		// The attached agent whose server closed says so, like a sidecar
		// whose member died.
		for _, a := range both(vi) {
			a.waitFor(t, "own member down", gauge(mUp, 0), gauge(mReachable, 0, "member", victim.Name()))
		}
		restart(t, victim)
		for i := range attached {
			for _, a := range both(i) {
				a.waitFor(t, "recovery after the restart", healthyCluster(3)...)
			}
		}
	})
}

// sameView checks that two agents beside one member export the same
// cluster and member verdicts.
func sameView(t *testing.T, a, b *testAgent) {
	t.Helper()
	ma, mb := mustScrape(t, a), mustScrape(t, b)
	for _, name := range []string{mUp, mHasLeader, mVoters, mHealthy, mQuorum, mTolerance, mFollowing, mDisagree} {
		va, oka := ma.value(name)
		vb, okb := mb.value(name)
		if va != vb || oka != okb {
			t.Errorf("%s: attached %v (%v), sidecar %v (%v)", name, va, oka, vb, okb)
		}
	}
	for _, name := range []string{mMember, mReachable} {
		if la, lb := ma.labelsWhere(name, 1), mb.labelsWhere(name, 1); !slices.Equal(la, lb) {
			t.Errorf("%s == 1: attached %v, sidecar %v", name, la, lb)
		}
	}
}
