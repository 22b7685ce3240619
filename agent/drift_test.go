package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/probes"
)

const (
	mVersions    = "etcdpulse_cluster_versions"
	mQuotas      = "etcdpulse_cluster_db_quotas"
	mVotersEven  = "etcdpulse_cluster_voting_members_even"
	mDowngrade   = "etcdpulse_cluster_downgrade_enabled"
	mClusterIDs  = "etcdpulse_cluster_ids"
	mHeartbeat   = "etcdpulse_etcd_heartbeat_interval_seconds"
	mElection    = "etcdpulse_etcd_election_timeout_seconds"
	mCorruptOn   = "etcdpulse_etcd_corrupt_check_enabled"
	driftPrefix  = "drift_"
	checkTimeout = time.Minute
)

// driftCheck runs a one-off check, as `etcdpulse check` does, and returns
// its drift lines by check name.
func driftCheck(t *testing.T, endpoints []string, mutate func(*Config)) map[string]Finding {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Etcd.Endpoints = endpoints
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := New(Options{Config: &cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	r := a.Check(ctx, CheckOptions{Disk: -1})
	out := map[string]Finding{}
	for _, f := range r.Findings {
		if strings.HasPrefix(f.Check, driftPrefix) {
			t.Logf("%s %s: %s (value %q, threshold %q) %s", f.Level, f.Check, f.Summary, f.Value, f.Threshold, f.Runbook)
			out[f.Check] = f
		}
	}
	return out
}

// wantLevel checks a drift line's level, and that a warning says what to
// do and where to read more.
func wantLevel(t *testing.T, fs map[string]Finding, check string, want Level) {
	t.Helper()
	f, ok := fs[check]
	if !ok {
		t.Errorf("no %s line", check)
		return
	}
	if f.Level != want {
		t.Errorf("%s: %s %q, want %s", check, f.Level, f.Summary, want)
	}
	if f.Runbook == "" || f.Value == "" || f.Threshold == "" {
		t.Errorf("%s: runbook %q, value %q, threshold %q: want all three", check, f.Runbook, f.Value, f.Threshold)
	}
	if _, err := os.Stat(filepath.Join("..", f.Runbook)); err != nil {
		t.Errorf("%s: runbook: %v", check, err)
	}
	if want != Pass && f.Hint == "" {
		t.Errorf("%s: a warning without a hint", check)
	}
}

// Members started with different --quota-backend-bytes: etcd 3.7 reports
// each member's own in its status, so every agent sees the drift.
func TestDriftQuotaMismatch(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess, QuotaBackendBytes: 64 << 20,
		MemberQuotaBackendBytes: map[string]int64{"m2": 128 << 20}})
	a := startAgent(t, c.ClientURLs(), nil)
	a.waitFor(t, "two quotas",
		gauge(mQuotas, 2), gauge(mQuota, 64<<20, "member", "m0"), gauge(mQuota, 128<<20, "member", "m2"),
		gauge(mVersions, 1), gauge(mVotersEven, 0))
	fs := driftCheck(t, c.ClientURLs(), nil)
	wantLevel(t, fs, "drift_quota", Warn)
	if f := fs["drift_quota"]; f.Summary != "2 quotas: 64 MiB (m0, m1), 128 MiB (m2)" {
		t.Errorf("drift_quota: %q", f.Summary)
	}
	wantLevel(t, fs, "drift_voters", Pass)
}

// Four voters tolerate one failure, as three do.
func TestDriftEvenVoters(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 4, Mode: etcdtest.InProcess})
	a := startAgent(t, c.ClientURLs(), nil)
	a.waitFor(t, "an even number of voters", gauge(mVotersEven, 1), gauge("etcdpulse_cluster_voting_members", 4))
	fs := driftCheck(t, c.ClientURLs(), nil)
	wantLevel(t, fs, "drift_voters", Warn)
	if f := fs["drift_voters"]; f.Value != "4" {
		t.Errorf("drift_voters value %q, want 4", f.Value)
	}
	wantLevel(t, fs, "drift_quota", Pass)
}

// A healthy cluster of etcd processes, run as it should be: tuned timing
// (read from the local member's command line through /proc), etcd's
// corruption checks on through its 3.6+ feature gates. Every drift gauge
// says so and every drift line passes.
func TestDriftHealthyProcesses(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.Process, HeartbeatMs: 150, ElectionMs: 1500,
		ExtraFlags: []string{"--feature-gates=InitialCorruptCheck=true,CompactHashCheck=true"}})
	pidFile := filepath.Join(t.TempDir(), "etcd.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(c.Member(0).PID())), 0o644); err != nil {
		t.Fatal(err)
	}
	local := func(cfg *Config) { cfg.Host.PIDFile = pidFile }
	a := startAgent(t, c.ClientURLs(), local)
	a.waitFor(t, "no drift, and the local member's flags",
		gauge(mVersions, 1), gauge(mQuotas, 1), gauge(mVotersEven, 0), gauge(mDowngrade, 0), gauge(mClusterIDs, 1),
		gauge(mHeartbeat, 0.15), gauge(mElection, 1.5),
		gauge(mCorruptOn, 1, "check", collectors.CorruptCheckInitial),
		gauge(mCorruptOn, 0, "check", collectors.CorruptCheckPeriodic),
		gauge(mCorruptOn, 1, "check", collectors.CorruptCheckCompactHash),
		gauge("etcdpulse_capability_success", 1, "capability", "drift"))
	m := mustScrape(t, a)
	if _, ok := m["etcdpulse_member_learner_seconds"]; ok {
		t.Error("learner seconds without a learner")
	}
	fs := driftCheck(t, c.ClientURLs(), local)
	for _, check := range []string{"drift_versions", "drift_quota", "drift_voters", "drift_learners", "drift_timeouts", "drift_corrupt_check", "drift_downgrade", "drift_cluster_id"} {
		wantLevel(t, fs, check, Pass)
	}
	if f := fs["drift_timeouts"]; !strings.HasPrefix(f.Summary, "heartbeat 150 ms, election timeout 1500 ms, peer RTT") {
		t.Errorf("drift_timeouts: %q", f.Summary)
	}
}

// The lines no test cluster can easily be brought to: a view that has
// drifted in every way.
func TestDriftFindings(t *testing.T) {
	st := func(id uint64, version string, cluster uint64) *probes.Status {
		return &probes.Status{MemberID: id, Version: version, ClusterID: cluster, DBQuota: 2 << 30}
	}
	down := st(3, "3.6.5", 7)
	down.Downgrade = &probes.Downgrade{Enabled: true, TargetVersion: "3.6"}
	v := probes.View{MembershipKnown: true, Voters: 3, Members: []probes.MemberView{
		{Member: probes.Member{ID: 1}, Label: "m0", Status: st(1, "3.7.3", 7)},
		{Member: probes.Member{ID: 2}, Label: "m1", Status: st(2, "3.7.3", 9)},
		{Member: probes.Member{ID: 3}, Label: "m2", Status: down},
		{Member: probes.Member{ID: 4, IsLearner: true}, Label: "m3"},
	}}
	capa := collectors.NewCapacityCollector(collectors.CapacityOptions{})
	c := collectors.NewDriftCollector(collectors.DriftOptions{Quota: capa.Quota, Flags: func() (collectors.EtcdFlags, error) {
		return collectors.EtcdFlags{Heartbeat: 100 * time.Millisecond, Election: time.Second}, nil
	}})
	start := time.Now().Add(-2 * time.Hour)
	v.At = start
	c.Observe(v)
	rtt := func() (float64, bool) { return 0.2, true }
	fs := map[string]Finding{}
	for _, f := range driftFindings(v, c, rtt, time.Now()) {
		fs[f.Check] = f
	}
	for check, want := range map[string]string{
		"drift_versions":      "2 etcd versions: 3.6.5 (m2), 3.7.3 (m0, m1)",
		"drift_quota":         "members' quota 2 GiB (m0, m1, m2)",
		"drift_learners":      "learners not promoted: m3 (seen for 2h0m0s)",
		"drift_timeouts":      "heartbeat 100 ms, election timeout 1000 ms, short for a peer RTT of 200 ms",
		"drift_corrupt_check": "corruption checks off: initial, periodic, compact_hash",
		"drift_downgrade":     "a downgrade to 3.6 is enabled (reported by m2)",
		"drift_cluster_id":    "members disagree on the cluster ID: 7 (m0, m2), 9 (m1)",
	} {
		f := fs[check]
		if f.Summary != want {
			t.Errorf("%s: %q, want %q", check, f.Summary, want)
		}
		level := Warn
		switch check {
		case "drift_quota":
			level = Pass
		case "drift_corrupt_check":
			level = Info // etcd's default
		}
		wantLevel(t, fs, check, level)
	}
	wantLevel(t, fs, "drift_voters", Pass)
}

// An attached agent reads its member's timing and corruption checks from
// the embedded server's configuration: here etcd's defaults but for the
// timing, so the corruption checks are off.
func TestDriftAttached(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess, HeartbeatMs: 200, ElectionMs: 2000})
	a := attachAgents(t, c)[0]
	a.waitFor(t, "the embedded member's settings",
		gauge(mHeartbeat, 0.2), gauge(mElection, 2),
		gauge(mCorruptOn, 0, "check", collectors.CorruptCheckInitial),
		gauge(mCorruptOn, 0, "check", collectors.CorruptCheckPeriodic),
		gauge(mCorruptOn, 0, "check", collectors.CorruptCheckCompactHash),
		gauge(mVersions, 1), gauge(mVotersEven, 0), gauge(mClusterIDs, 1),
		gauge("etcdpulse_capability_success", 1, "capability", "drift"))
}
