package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// failpointCluster is a 3-member cluster of the failpoint-built etcd, an
// agent beside the leader writing every second, and a follower to break.
func failpointCluster(t *testing.T) (c *etcdtest.Cluster, follower *etcdtest.Member, a *testAgent, logs *testenv.Buffer) {
	t.Helper()
	c = etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.Process, Failpoints: true})
	leader := leaderOf(t, c)
	for _, m := range c.Members() {
		if m != leader {
			follower = m
			break
		}
	}
	a, logs = startLoggedAgent(t, []string{leader.ClientURL()}, func(cfg *Config) {
		cfg.Probes.Write.Interval = Duration(time.Second)
		cfg.Disk.Enabled = false
	})
	a.waitFor(t, "deliveries from the follower", countAtLeast("etcdpulse_watch_delivery_seconds", 2, "member", follower.Name()))
	return c, follower, a, logs
}

func setFailpoint(t *testing.T, m *etcdtest.Member, name, term string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := m.SetFailpoint(ctx, name, term); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.ClearFailpoint(ctx, name) //nolint:errcheck // the member may be gone with its cluster
	})
}

// A follower whose watch responses each wait 3 s before going out
// (etcd's beforeSendWatchResponse failpoint) applies every write, but its
// watch delivers late: the watch probe reports watch_stalled, not behind,
// and the member stays healthy. Cleared, its watch delivers again.
func TestWatchStalledFailpoint(t *testing.T) {
	_, follower, a, logs := failpointCluster(t)
	setFailpoint(t, follower, etcdtest.FailpointBeforeSendWatchResponse, "sleep(3000)")
	a.waitFor(t, "the follower's watch reported stalled, the member healthy",
		gaugeAtLeast("etcdpulse_probe_failures_total", 1, "probe", "watch", "member", follower.Name(), "reason", "watch_stalled"),
		gauge("etcdpulse_member_healthy", 1, "member", follower.Name()))
	if err := a.check(gaugeAtLeast("etcdpulse_probe_failures_total", 1, "probe", "watch", "member", follower.Name(), "reason", "behind")); err == nil {
		t.Error("a member that applies every write reported behind")
	}
	testenv.Eventually(t, 30*time.Second, "the stall logged", func() error {
		if l := logs.Lines("member not serving the agent's writes in time", "member="+follower.Name(), "reason=watch_stalled", "but its watch has not delivered it"); len(l) == 0 {
			return fmt.Errorf("no such line; log:\n%s", logs)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := follower.ClearFailpoint(ctx, etcdtest.FailpointBeforeSendWatchResponse); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, "the follower's watch delivering in time again",
		gauge("etcdpulse_probe_success", 1, "probe", "watch", "member", follower.Name()),
		gaugeUnder("etcdpulse_member_replication_lag_seconds", 2, "member", follower.Name()))
}

// A follower that applies each entry 2 s late (beforeApplyOneEntryNormal)
// falls behind the writes the leader commits: the watch probe reports it
// behind, with the revisions it lacks, and its replication lag in seconds
// grows past the deadline.
func TestReplicationBehindFailpoint(t *testing.T) {
	_, follower, a, logs := failpointCluster(t)
	setFailpoint(t, follower, etcdtest.FailpointBeforeApplyOneEntryNormal, "sleep(2000)")
	a.waitFor(t, "the follower reported behind, lagging in seconds",
		gaugeAtLeast("etcdpulse_probe_failures_total", 1, "probe", "watch", "member", follower.Name(), "reason", "behind"),
		gaugeAtLeast("etcdpulse_member_replication_lag_seconds", 4, "member", follower.Name()))
	testenv.Eventually(t, 30*time.Second, "the lag logged with revisions and entries", func() error {
		if l := logs.Lines("member not serving the agent's writes in time", "member="+follower.Name(), "reason=behind", "has not applied the write committed", "behind, and its last status had applied"); len(l) == 0 {
			return fmt.Errorf("no such line; log:\n%s", logs)
		}
		return nil
	})
}
