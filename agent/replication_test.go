package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// gaugeAtLeast: the sample of name with the labels is at least min.
func gaugeAtLeast(name string, min float64, labels ...string) expect {
	return func(m metrics) error {
		got, ok := m.value(name, labels...)
		if !ok {
			return fmt.Errorf("%s%v absent", name, labels)
		}
		if got < min {
			return fmt.Errorf("%s%v = %v, want >= %v", name, labels, got, min)
		}
		return nil
	}
}

// gaugeUnder: the sample of name with the labels is below limit.
func gaugeUnder(name string, limit float64, labels ...string) expect {
	return func(m metrics) error {
		got, ok := m.value(name, labels...)
		if !ok {
			return fmt.Errorf("%s%v absent", name, labels)
		}
		if got >= limit {
			return fmt.Errorf("%s%v = %v, want < %v", name, labels, got, limit)
		}
		return nil
	}
}

// One agent, beside one member of three, follows its own writes on every
// member's watch: each member delivers each write, and none lags.
func TestWatchDelivery(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	a := startAgent(t, c.ClientURLs()[:1], func(cfg *Config) { cfg.Probes.Write.Interval = Duration(time.Second) })
	var exps []expect
	for _, m := range c.Members() {
		exps = append(exps,
			countAtLeast("etcdpulse_watch_delivery_seconds", 5, "member", m.Name()),
			// A healthy member serves a write within milliseconds; the
			// bound only says it is not behind by a write interval.
			gaugeUnder("etcdpulse_member_replication_lag_seconds", 1, "member", m.Name()),
			gauge("etcdpulse_probe_success", 1, "probe", "watch", "member", m.Name()))
	}
	a.waitFor(t, "every member delivering the agent's writes", append(exps, gauge("etcdpulse_watch_enabled", 1))...)
	if err := a.check(counterAtLeast("etcdpulse_watch_restarts_total", 1)); err == nil {
		t.Error("watches re-established on a healthy cluster")
	}
	if m := mustScrape(t, a); m != nil {
		if _, ok := m.value("etcdpulse_probe_failures_total", "probe", "watch"); ok {
			t.Errorf("watch probe failures on a healthy cluster")
		}
	}
}

// A frozen follower (SIGSTOP) serves nothing: its replication lag grows
// second by second and the watch probe reports it; the other members do
// not lag. Thawed, it catches up: its lag returns to 0 and its watch
// delivers again, without being re-established.
func TestReplicationLagFrozenMember(t *testing.T) {
	for _, v := range []struct {
		name string
		bin  func(testing.TB) string
	}{{"3.7", etcdtest.EtcdBinary}, {"3.4", etcdtest.CompatEtcdBinary}} {
		t.Run(v.name, func(t *testing.T) {
			c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.Process, EtcdBin: v.bin(t)})
			leader := leaderOf(t, c)
			var frozen *etcdtest.Member
			for _, m := range c.Members() {
				if m != leader {
					frozen = m
					break
				}
			}
			// The agent beside the leader: its writes go on while the
			// follower is frozen.
			a, logs := startLoggedAgent(t, []string{leader.ClientURL()}, func(cfg *Config) {
				cfg.Probes.Write.Interval = Duration(time.Second)
				cfg.Disk.Enabled = false
			})
			a.waitFor(t, "deliveries from the follower", countAtLeast("etcdpulse_watch_delivery_seconds", 2, "member", frozen.Name()))
			if err := frozen.Freeze(); err != nil {
				t.Fatal(err)
			}
			a.waitFor(t, "the frozen follower lagging, the others not",
				gaugeAtLeast("etcdpulse_member_replication_lag_seconds", 5, "member", frozen.Name()),
				gaugeUnder("etcdpulse_member_replication_lag_seconds", 2, "member", leader.Name()),
				gauge("etcdpulse_probe_success", 0, "probe", "watch", "member", frozen.Name()))
			testenv.Eventually(t, 30*time.Second, "the lag logged with its age", func() error {
				l := logs.Lines("member not serving the agent's writes in time", "member="+frozen.Name(), "has not delivered the write at revision")
				if len(l) == 0 {
					return fmt.Errorf("no such line; log:\n%s", logs)
				}
				t.Log(l[0])
				return nil
			})
			before := deliveries(t, a, frozen.Name())
			if err := frozen.Thaw(); err != nil {
				t.Fatal(err)
			}
			a.waitFor(t, "the thawed follower caught up",
				gaugeUnder("etcdpulse_member_replication_lag_seconds", 2, "member", frozen.Name()),
				countAtLeast("etcdpulse_watch_delivery_seconds", before+2, "member", frozen.Name()),
				gauge("etcdpulse_probe_success", 1, "probe", "watch", "member", frozen.Name()))
			testenv.Eventually(t, 30*time.Second, "the recovery logged", func() error {
				if l := logs.Lines("member serving the agent's writes again", "member="+frozen.Name()); len(l) != 1 {
					return fmt.Errorf("%d such lines; log:\n%s", len(l), logs)
				}
				return nil
			})
			if err := a.check(counterAtLeast("etcdpulse_watch_restarts_total", 1)); err == nil {
				t.Error("the frozen member's watch was re-established: clientv3 should have resumed it")
			}
		})
	}
}

// deliveries is the number of writes the member's watch delivered so far.
func deliveries(t *testing.T, a *testAgent, member string) float64 {
	t.Helper()
	m := mustScrape(t, a)
	for _, s := range m["etcdpulse_watch_delivery_seconds"].GetMetric() {
		for _, l := range s.Label {
			if l.GetName() == "member" && l.GetValue() == member {
				return float64(s.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

// With etcd.read_only there are no writes to follow: the watch probe is
// off and says so.
func TestWatchReadOnly(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess})
	a := startAgent(t, c.ClientURLs(), func(cfg *Config) { cfg.Etcd.ReadOnly = true; cfg.Disk.Enabled = false })
	a.waitFor(t, "a healthy member, watches off", append(healthyCluster(1), gauge("etcdpulse_watch_enabled", 0))...)
	m := mustScrape(t, a)
	for _, name := range []string{"etcdpulse_member_replication_lag_seconds", "etcdpulse_watch_delivery_seconds"} {
		if _, ok := m[name]; ok {
			t.Errorf("%s exported with writes off", name)
		}
	}
	if _, ok := m.value("etcdpulse_probe_success", "probe", "watch"); ok {
		t.Error("the watch probe ran with writes off")
	}
}
