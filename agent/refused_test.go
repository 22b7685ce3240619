package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// startLoggedAgent is startAgent with the agent's log kept.
func startLoggedAgent(t testing.TB, endpoints []string, mutate func(*Config)) (*testAgent, *testenv.Buffer) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Etcd.Endpoints = endpoints
	cfg.Disk.Enabled = false
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &testenv.Buffer{}
	return serveAgent(t, Options{Config: &cfg, Logger: slog.New(slog.NewTextHandler(logs, nil))}), logs
}

// unknownHealth is what an agent that etcd refuses must report: neither
// the members' health nor the quorum nor the leader, rather than wrong
// values.
func unknownHealth() []expect {
	return []expect{
		absentFamily("etcdpulse_member_healthy"),
		absentFamily("etcdpulse_member_reachable"),
		absentFamily("etcdpulse_cluster_fault_tolerance"),
		absentFamily("etcdpulse_cluster_healthy_voting_members"),
		absentFamily("etcdpulse_cluster_has_leader"),
		absentFamily("etcdpulse_cluster_leader_voters"),
	}
}

func refusedAt(member, reason string) []expect {
	return []expect{gauge("etcdpulse_agent_refused", 1, "member", member, "reason", reason)}
}

func refusedAll(c *etcdtest.Cluster, reason string) []expect {
	var out []expect
	for _, m := range c.Members() {
		out = append(out, gauge("etcdpulse_agent_refused", 1, "member", m.Name(), "reason", reason))
	}
	return out
}

// withAuth turns auth on and adds user etcdpulse with the given password
// and a role that may read and write /etcdpulse/ (or nothing, when
// readWrite is false).
func withAuth(t *testing.T, c *etcdtest.Cluster, password string, readWrite bool) *clientv3.Client {
	t.Helper()
	c.EnableAuth(t, "root-password")
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.RoleAdd(ctx, "etcdpulse"); return err },
		func() error { _, err := cli.UserAdd(ctx, "etcdpulse", password); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "etcdpulse", "etcdpulse"); return err },
	}
	if readWrite {
		steps = append(steps, func() error {
			_, err := cli.RoleGrantPermission(ctx, "etcdpulse", DefaultKeyPrefix, clientv3.GetPrefixRangeEnd(DefaultKeyPrefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		})
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	return cli
}

func credentials(password string) func(*Config) {
	return func(cfg *Config) { cfg.Etcd.Username, cfg.Etcd.Password = "etcdpulse", password }
}

// The password every agent uses is changed in etcd under the running
// agents: they report that etcd refuses them, and the health, leader and
// quorum figures as unknown, never as a lost quorum. With the password set
// back, they recover by themselves.
func TestAuthPasswordChanged(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	cli := withAuth(t, c, "old-password", true)
	urls := c.ClientURLs()
	var agents []*testAgent
	var logs []*testenv.Buffer
	for i := range urls {
		eps := append([]string{urls[i]}, append(append([]string{}, urls[:i]...), urls[i+1:]...)...)
		a, l := startLoggedAgent(t, eps, credentials("old-password"))
		agents, logs = append(agents, a), append(logs, l)
	}
	for _, a := range agents {
		a.waitFor(t, "healthy with auth", healthyCluster(3)...)
	}

	if _, err := cli.UserChangePassword(t.Context(), "etcdpulse", "new-password"); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		exps := append(refusedAll(c, "authentication"), unknownHealth()...)
		exps = append(exps, counterAtLeast("etcdpulse_probe_failures_total", 1))
		a.waitFor(t, "credentials refused, health unknown", exps...)
	}
	// Held over more refused runs, not a passing state: each agent has
	// been refused at least nine more times (three rounds of its three
	// status calls) and still reports the health as unknown.
	for _, a := range agents {
		refused := func() float64 {
			v, _ := mustScrape(t, a).value("etcdpulse_probe_failures_total", "probe", "status", "reason", "authentication")
			return v
		}
		before := refused()
		a.waitFor(t, "nine more refused status runs", func(metrics) error {
			if n := refused(); n < before+9 {
				return fmt.Errorf("%v refused status runs since, want 9", n-before)
			}
			return nil
		})
		if err := a.check(unknownHealth()...); err != nil {
			t.Errorf("after more refused runs: %v", err)
		}
	}
	for i, l := range logs {
		if got := l.Lines("refuses the agent's credentials", "reason=authentication", "etcd.username", "authentication failed"); len(got) != len(urls) {
			t.Errorf("agent %d: want one line per member naming the reason and the error, got %d:\n%s", i, len(got), l)
		}
		if got := l.Lines("quorum lost"); len(got) != 0 {
			t.Errorf("agent %d logged a lost quorum: %v", i, got)
		}
	}

	if _, err := cli.UserChangePassword(t.Context(), "etcdpulse", "old-password"); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		a.waitFor(t, "healthy again with the old password", append(healthyCluster(3), absentFamily("etcdpulse_agent_refused"))...)
	}
	for i, l := range logs {
		if got := l.Lines("etcd accepts the agent again", "was=authentication"); len(got) != len(urls) {
			t.Errorf("agent %d: want one recovery line per member, got %d:\n%s", i, len(got), l)
		}
	}
}

// With auth configured, the agent starts while etcd is down (New does not
// wait for a token) and reports etcd unreachable, then healthy once etcd
// is back. A wrong password at startup is a refusal that names the
// username and password settings, not a configuration error about the
// endpoints.
func TestAuthAtStartup(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess})
	withAuth(t, c, "pw", true)
	m := c.Member(0)
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	a, _ := startLoggedAgent(t, c.ClientURLs(), credentials("pw"))
	a.waitFor(t, "etcd down reported", gauge("etcdpulse_up", 0),
		gauge("etcdpulse_probe_success", 0, "probe", "status"),
		func(ms metrics) error {
			if v, _ := ms.value("etcdpulse_probe_failures_total", "probe", "status", "reason", "unreachable"); v < 1 {
				return fmt.Errorf("no status failure counted as unreachable")
			}
			return nil
		})
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, "healthy once etcd is back", healthyCluster(1)...)

	// Refused from the start, the agent never learns the member's name:
	// the member is labelled with its endpoint.
	wrong, logs := startLoggedAgent(t, c.ClientURLs(), credentials("wrong"))
	wrong.waitFor(t, "wrong password refused", append(refusedAt(c.ClientURLs()[0], "authentication"), unknownHealth()...)...)
	if got := logs.Lines("reason=authentication", `user \"etcdpulse\" (etcd.username, etcd.password)`); len(got) == 0 {
		t.Errorf("no log line names the username and password settings:\n%s", logs)
	}
}

// A role without read permission on the agent's prefix: etcd checks
// permissions after the read index is agreed, so the member is healthy;
// the refusal is reported beside that.
func TestRoleWithoutReadPermission(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess})
	withAuth(t, c, "pw", false)
	a, logs := startLoggedAgent(t, c.ClientURLs(), credentials("pw"))
	member := c.Member(0).Name()
	a.waitFor(t, "healthy, with the permission refusal reported",
		append(healthyCluster(1),
			gauge("etcdpulse_agent_refused", 1, "member", member, "reason", "permission_denied"),
			gauge("etcdpulse_probe_success", 1, "probe", "read_linearizable", "member", member))...)
	if got := logs.Lines("denies the agent a permission", "reason=permission_denied", "read permission on its key prefix"); len(got) != 1 {
		t.Errorf("want one log line naming the missing permission, got %d:\n%s", len(got), logs)
	}
}

// TLS failures name their x509 reason in the metrics and the log: a CA
// that did not sign etcd's certificate, a name the certificate does not
// carry, and an expired server certificate.
func TestTLSFailuresNamed(t *testing.T) {
	tl := etcdtest.NewTLS(t)
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess, TLS: tl})
	tlsConfig := func(ca, serverName string) func(*Config) {
		return func(cfg *Config) {
			cfg.Etcd.TLS = TLSConfig{CAFile: ca, CertFile: tl.ClientCertFile, KeyFile: tl.ClientKeyFile, ServerName: serverName}
		}
	}
	cases := []struct {
		name, reason, logged string
		mutate               func(*Config)
	}{
		{"wrong CA", "tls_unknown_authority", "x509: certificate signed by unknown authority", tlsConfig(etcdtest.NewTLS(t).CAFile, "")},
		{"name mismatch", "tls_name_mismatch", "x509: certificate is valid for", tlsConfig(tl.CAFile, "etcd.invalid")},
	}
	run := func(name, reason, logged string, mutate func(*Config)) {
		t.Run(name, func(t *testing.T) {
			a, logs := startLoggedAgent(t, c.ClientURLs(), mutate)
			defer a.stop()
			// Refused from the start: labelled with the endpoint.
			a.waitFor(t, name, append(refusedAt(c.ClientURLs()[0], reason), unknownHealth()...)...)
			if got := logs.Lines("TLS between the agent and the etcd member fails", "reason="+reason, logged); len(got) != 1 {
				t.Errorf("want one log line with the reason and the x509 error, got %d:\n%s", len(got), logs)
			}
		})
	}
	for _, tc := range cases {
		run(tc.name, tc.reason, tc.logged, tc.mutate)
	}
	// etcd reads its certificate at every handshake: new connections get
	// the expired one.
	tl.ReplaceServerCert(t, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	run("expired server certificate", "tls_certificate_expired", "x509: certificate has expired", tlsConfig(tl.CAFile, ""))
}

// The agent's client certificate expires while it runs: etcd refuses the
// next connection, and the agent says so instead of reporting the member
// down. A renewed certificate written over the files is picked up at the
// next connection, without a restart.
func TestClientCertExpiresWhileRunning(t *testing.T) {
	tl := etcdtest.NewTLS(t)
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess, TLS: tl})
	notAfter := time.Now().Add(10 * time.Second)
	cert, key := tl.IssueClient(t, "etcdpulse", notAfter)
	a, logs := startLoggedAgent(t, c.ClientURLs(), func(cfg *Config) {
		cfg.Etcd.TLS = TLSConfig{CAFile: tl.CAFile, CertFile: cert, KeyFile: key}
	})
	a.waitFor(t, "healthy with the short-lived certificate", healthyCluster(1)...)
	time.Sleep(time.Until(notAfter) + time.Second)
	// An open connection outlives its certificate: a restart of the
	// member makes the agent connect again.
	m := c.Member(0)
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, "expired client certificate refused", append(refusedAll(c, "tls_certificate_expired"), unknownHealth()...)...)
	if got := logs.Lines("reason=tls_certificate_expired", "remote error: tls: expired certificate"); len(got) != 1 {
		t.Errorf("want one log line naming etcd's refusal of the expired certificate, got %d:\n%s", len(got), logs)
	}

	renewed, renewedKey := tl.IssueClient(t, "etcdpulse", time.Now().Add(time.Hour))
	for src, dst := range map[string]string{renewed: cert, renewedKey: key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a.waitFor(t, "healthy with the renewed certificate", append(healthyCluster(1), absentFamily("etcdpulse_agent_refused"))...)
}

// A learner refuses linearizable reads; once caught up it is healthy by
// what a learner can do, and it never counts as a voter.
func TestLearnerHealthy(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	learner := c.AddLearner(t)
	a := startAgent(t, c.ClientURLs(), func(cfg *Config) { cfg.Disk.Enabled = false })
	a.waitFor(t, "learner healthy, three voters",
		append(healthyCluster(3),
			gauge("etcdpulse_member_is_learner", 1, "member", learner.Name()),
			gauge("etcdpulse_member_healthy", 1, "member", learner.Name()),
			gauge("etcdpulse_probe_success", 0, "probe", "read_linearizable", "member", learner.Name()),
			gauge("etcdpulse_probe_success", 1, "probe", "read_serializable", "member", learner.Name()),
			gauge("etcdpulse_cluster_members", 4))...)
	// Held while the cluster takes writes.
	cli := c.Client(t)
	for i := range 50 {
		if _, err := cli.Put(t.Context(), fmt.Sprintf("/test/%d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	// Caught up again once it has applied them, with status rounds run
	// since the writes.
	statusRuns := func(m metrics) float64 {
		mf := m["etcdpulse_probe_duration_seconds"]
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "probe" && l.GetValue() == "status" {
					return float64(s.GetHistogram().GetSampleCount())
				}
			}
		}
		return 0
	}
	before := statusRuns(mustScrape(t, a))
	a.waitFor(t, "the learner caught up after the writes", gauge("etcdpulse_member_healthy", 1, "member", learner.Name()),
		func(m metrics) error {
			if n := statusRuns(m); n < before+8 {
				return fmt.Errorf("%v status runs since the writes, want two rounds", n-before)
			}
			return nil
		})
}
