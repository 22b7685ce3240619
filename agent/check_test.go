package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// checkAgent builds an agent, not started, whose local member is m, with
// the other members of c after it, as `etcdpulse check` does.
func checkAgent(t *testing.T, c *etcdtest.Cluster, m *etcdtest.Member, mutate func(*Config)) *Agent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Etcd.Endpoints = []string{m.ClientURL()}
	for _, u := range c.ClientURLs() {
		if u != m.ClientURL() {
			cfg.Etcd.Endpoints = append(cfg.Etcd.Endpoints, u)
		}
	}
	cfg.Etcd.DataDir = m.DataDir()
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := New(Options{Config: &cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	return a
}

// checkNow runs a check with the command's default deadline, and fails the
// test when it overran it: a check never hangs past its deadline.
func checkNow(t *testing.T, a *Agent, opts CheckOptions) Report {
	t.Helper()
	const deadline = 30 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	r := a.Check(ctx, opts)
	// The slack is for runs in flight at the deadline, each of which
	// ends at it.
	if took := time.Since(start); took > deadline+10*time.Second {
		t.Errorf("the check took %s, past its deadline of %s", took, deadline)
	}
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "\n  %s %s [%s]", f.Level, f.Summary, f.Check)
	}
	t.Logf("report %s:%s", r.Level, b.String())
	return r
}

// line is an expected line of a report: its check, member and level, and
// words its summary must hold.
type line struct {
	check, member string
	level         Level
	says          string
	runbook       string
}

// expectLines asserts that the report has each line.
func expectLines(t *testing.T, r Report, want ...line) {
	t.Helper()
	for _, w := range want {
		i := slices.IndexFunc(r.Findings, func(f Finding) bool { return f.Check == w.check && f.Member == w.member })
		if i < 0 {
			t.Errorf("no %s line for member %q", w.check, w.member)
			continue
		}
		f := r.Findings[i]
		if f.Level != w.level || !strings.Contains(f.Summary, w.says) || w.runbook != "" && f.Runbook != runbook(w.runbook) {
			t.Errorf("%s line for %q: %s %q (runbook %q), want %s with %q (runbook %q)", w.check, w.member, f.Level, f.Summary, f.Runbook, w.level, w.says, w.runbook)
		}
	}
}

// worst is the level the report's lines give.
func worst(r Report) Level {
	l := Pass
	for _, f := range r.Findings {
		l = max(l, f.Level)
	}
	return l
}

func TestCheckHealthy(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	leader := leaderOf(t, c)
	a := checkAgent(t, c, c.Member(0), nil)
	r := checkNow(t, a, CheckOptions{Disk: time.Second})
	want := []line{
		{check: "leader", level: Pass, says: "leader " + leader.Name()},
		{check: "quorum", level: Pass, says: "fault tolerance 1: 3 of 3 voters healthy, quorum 2"},
		{check: "alarm", level: Pass, says: "no alarm active"},
		{check: "write", member: "m0", level: Pass, says: "a write through m0 committed"},
		{check: "hash", level: Pass, says: "every member's store hashes the same"},
		{check: "defrag", level: Pass, says: "reclaimable by defragmentation: "},
	}
	for _, m := range []string{"m0", "m1", "m2"} {
		want = append(want,
			line{check: "member_health", member: m, level: Pass, says: m + " healthy"},
			line{check: "db_quota", member: m, level: Pass, says: "of its quota of 2.0 GiB"},
			line{check: "replication", member: m, level: Pass, says: "raft entries behind"})
		if m != "m0" {
			want = append(want, line{check: "peer_network", member: m, level: Pass, says: "the peer port of " + m + " answered"})
		}
	}
	expectLines(t, r, want...)
	// The disk line: measured, and graded by etcd's 10 ms whatever this
	// machine's disk does.
	i := slices.IndexFunc(r.Findings, func(f Finding) bool { return f.Check == "fsync_p99" })
	if i < 0 {
		t.Fatal("no fsync_p99 line")
	}
	d := r.Findings[i]
	p99, err := time.ParseDuration(strings.ReplaceAll(d.Value, " ", ""))
	if err != nil || d.Threshold != "10 ms" || (p99 > 10*time.Millisecond) != (d.Level == Fail) || d.Level == Warn {
		t.Errorf("fsync line %s %q value %q threshold %q: want a p99 graded against 10 ms", d.Level, d.Summary, d.Value, d.Threshold)
	}
	if r.Level != worst(r) || r.ExitCode() != map[Level]int{Pass: 0, Info: 0, Warn: 1, Fail: 2}[worst(r)] {
		t.Errorf("report level %s, exit code %d; its lines' worst is %s", r.Level, r.ExitCode(), worst(r))
	}
	for _, f := range r.Findings {
		if f.Check != "fsync_p99" && f.Level != Pass && !(f.Check == "drift_corrupt_check" && f.Level == Info) {
			t.Errorf("healthy cluster: %s %s", f.Level, f.Summary)
		}
	}
	// JSON for machines: the same lines, levels as words.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Findings) != len(r.Findings) || back.Level != r.Level {
		t.Errorf("JSON report does not read back: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), `"level":"PASS"`) {
		t.Errorf("JSON levels are not words: %s", b)
	}
}

func TestCheckQuorumLost(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.Process})
	leaderOf(t, c)
	for _, i := range []int{1, 2} {
		if err := c.Member(i).Kill(); err != nil {
			t.Fatal(err)
		}
	}
	a := checkAgent(t, c, c.Member(0), nil)
	r := checkNow(t, a, CheckOptions{Disk: -1})
	expectLines(t, r,
		line{check: "leader", level: Fail, says: "no leader", runbook: "EtcdNoLeader"},
		line{check: "quorum", level: Fail, says: "fault tolerance -2: 0 of 3 voters healthy, quorum 2", runbook: "EtcdQuorumLost"},
		line{check: "member_health", member: "m0", level: Fail, says: "m0 unhealthy: no_quorum"},
		line{check: "member_health", member: "m1", level: Fail, says: "m1 unhealthy: unreachable", runbook: "EtcdMemberUnhealthy"},
		line{check: "member_health", member: "m2", level: Fail, says: "m2 unhealthy: unreachable"},
		line{check: "write", member: "m0", level: Fail, says: "m0 write failed", runbook: "EtcdWritesFailing"},
		line{check: "hash", level: Warn, says: "hashes not compared"},
	)
	if r.ExitCode() != 2 || r.Findings[0].Level != Fail {
		t.Errorf("exit code %d, first line %s: want 2 and the failures first", r.ExitCode(), r.Findings[0].Level)
	}
}

func TestCheckFrozenMember(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.Process})
	leader := leaderOf(t, c)
	var frozen, local *etcdtest.Member
	for i := range 3 {
		if m := c.Member(i); m != leader && frozen == nil {
			frozen = m
		} else if m != leader {
			local = m
		}
	}
	if err := frozen.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = frozen.Thaw() })
	a := checkAgent(t, c, local, nil)
	r := checkNow(t, a, CheckOptions{Disk: -1})
	expectLines(t, r,
		line{check: "leader", level: Pass, says: "leader " + leader.Name()},
		line{check: "quorum", level: Warn, says: "fault tolerance 0: 2 of 3 voters healthy", runbook: "EtcdQuorumAtRisk"},
		line{check: "member_health", member: frozen.Name(), level: Fail, says: "unhealthy: unreachable"},
		line{check: "member_health", member: local.Name(), level: Pass, says: "healthy"},
		line{check: "write", member: local.Name(), level: Pass, says: "committed"},
	)
	if r.ExitCode() != 2 {
		t.Errorf("exit code %d, want 2", r.ExitCode())
	}
}

func TestCheckNoSpace(t *testing.T) {
	const quota = 2 << 20
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess, QuotaBackendBytes: quota})
	leaderOf(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli := c.Member(0).Client(t)
	value := strings.Repeat("x", 16<<10)
	var err error
	for i := 0; i < 4*quota/len(value) && err == nil; i++ {
		_, err = cli.Put(ctx, fmt.Sprintf("/fill/%04d", i), value)
	}
	if err == nil || !strings.Contains(err.Error(), "database space exceeded") {
		t.Fatalf("filling the database ended with %v, want NOSPACE", err)
	}
	// The alarm is raised by the member whose backend crossed the quota
	// first, not necessarily the one the writes went through.
	alarms, err := cli.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) == 0 {
		t.Fatalf("alarm list: %v, %v; want a NOSPACE alarm", alarms, err)
	}
	var alarmed string
	for _, m := range c.Members() {
		if m.ID() == alarms.Alarms[0].MemberID {
			alarmed = m.Name()
		}
	}
	a := checkAgent(t, c, c.Member(0), nil)
	r := checkNow(t, a, CheckOptions{Disk: -1})
	expectLines(t, r,
		line{check: "alarm", member: alarmed, level: Fail, says: "alarm NOSPACE active on " + alarmed, runbook: "EtcdDatabaseQuotaCritical"},
		line{check: "db_quota", member: "m0", level: Fail, says: "of its quota of 2.0 MiB", runbook: "EtcdDatabaseQuotaCritical"},
		line{check: "write", member: "m0", level: Fail, says: "write failed"},
		// The members themselves are healthy: they serve reads.
		line{check: "member_health", member: "m1", level: Pass, says: "healthy"},
		line{check: "quorum", level: Pass, says: "fault tolerance 1"},
	)
	if r.ExitCode() != 2 {
		t.Errorf("exit code %d, want 2", r.ExitCode())
	}
}

func TestCheckUnreachable(t *testing.T) {
	addr := testenv.RefusedAddr(t)
	cfg := DefaultConfig()
	cfg.Etcd.Endpoints = []string{"http://" + addr}
	cfg.Disk.Enabled = false
	a, err := New(Options{Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	r := checkNow(t, a, CheckOptions{Disk: -1})
	expectLines(t, r, line{check: "cluster", level: Fail, says: "no member answered"})
	if r.ExitCode() != 2 || !strings.Contains(r.Findings[0].Hint, "connection refused") {
		t.Errorf("exit code %d, hint %q: want 2 and the dial error", r.ExitCode(), r.Findings[0].Hint)
	}
}

// gateAt asks a running agent's /maintenance endpoint about a member.
func gateAt(t *testing.T, a *testAgent, member string) (int, Gate) {
	t.Helper()
	resp, err := http.Get(a.url + "/maintenance?output=json&member=" + member)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var g Gate
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, g
}

// gateSays waits until the gate answers code for the member, with a
// reason that holds says.
func gateSays(t *testing.T, a *testAgent, member string, code int, says string) Gate {
	t.Helper()
	var g Gate
	var got int
	testenv.Eventually(t, 60*time.Second, "the gate's answer for "+member, func() error {
		got, g = gateAt(t, a, member)
		if got == code && slices.ContainsFunc(g.Reasons, func(r string) bool { return strings.Contains(r, says) }) {
			return nil
		}
		return fmt.Errorf("%d %q, want %d with %q", got, g.Reasons, code, says)
	})
	return g
}

func TestMaintenanceGate(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	leader := leaderOf(t, c)
	var followers []*etcdtest.Member
	for i := range 3 {
		if c.Member(i) != leader {
			followers = append(followers, c.Member(i))
		}
	}
	a := startAgent(t, append([]string{followers[0].ClientURL()}, leader.ClientURL(), followers[1].ClientURL()), nil)
	a.waitFor(t, "a healthy cluster", healthyCluster(3)...)

	t.Run("follower", func(t *testing.T) {
		g := gateSays(t, a, followers[0].Name(), http.StatusOK, "2 of 3 voters stay healthy (quorum 2)")
		if !g.Allowed || g.Leader || g.HealthyVotersAfter != 2 {
			t.Errorf("gate %+v", g)
		}
	})
	t.Run("leader", func(t *testing.T) {
		g := gateSays(t, a, leader.Name(), http.StatusConflict, "is the leader: move leadership")
		if !g.Leader || len(g.Commands) != 1 {
			t.Fatalf("gate %+v: want the leader and one command", g)
		}
		cmd := g.Commands[0]
		if !strings.Contains(cmd, "--endpoints="+leader.ClientURL()) || !strings.Contains(cmd, "move-leader ") ||
			!strings.Contains(cmd, fmt.Sprintf("%x", followers[0].ID())) && !strings.Contains(cmd, fmt.Sprintf("%x", followers[1].ID())) {
			t.Errorf("command %q: want move-leader to a follower's ID, sent to the leader", cmd)
		}
	})
	t.Run("by ID", func(t *testing.T) {
		gateSays(t, a, fmt.Sprintf("%x", followers[1].ID()), http.StatusOK, "no other member is down")
	})
	t.Run("unknown member", func(t *testing.T) {
		gateSays(t, a, "nosuch", http.StatusConflict, `no member "nosuch"; the members are`)
	})
	t.Run("text, and the agent's own member", func(t *testing.T) {
		resp, err := http.Get(a.url + "/maintenance?member=" + followers[0].Name())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(body), "yes: "+followers[0].Name()+" can be taken down now\n") {
			t.Errorf("text answer %q", body)
		}
		// Without a member: the agent's own, followers[0].
		resp, err = http.Get(a.url + "/maintenance")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "yes: "+followers[0].Name()) {
			t.Errorf("without a member: %d %q, want 200 for the agent's own member", resp.StatusCode, body)
		}
	})
	t.Run("one member down", func(t *testing.T) {
		if err := followers[1].Kill(); err != nil {
			t.Fatal(err)
		}
		g := gateSays(t, a, followers[0].Name(), http.StatusConflict, followers[1].Name()+" is unhealthy (unreachable)")
		if !slices.ContainsFunc(g.Reasons, func(r string) bool { return strings.Contains(r, "fewer than the quorum of 2") }) {
			t.Errorf("reasons %q: want the quorum it would lose", g.Reasons)
		}
	})
}

func TestMaintenanceGateFiveMembers(t *testing.T) {
	// Processes: an embedded member removed from the cluster stops
	// under its own status calls, and etcd 3.7.3 can panic doing so.
	c := etcdtest.Start(t, etcdtest.Options{Size: 5, Mode: etcdtest.Process})
	leader := leaderOf(t, c)
	var followers []*etcdtest.Member
	for i := range 5 {
		if c.Member(i) != leader {
			followers = append(followers, c.Member(i))
		}
	}
	a := startAgent(t, append([]string{followers[0].ClientURL()}, c.ClientURLs()...), nil)
	a.waitFor(t, "a healthy cluster", healthyCluster(5)...)
	gateSays(t, a, followers[0].Name(), http.StatusOK, "4 of 5 voters stay healthy (quorum 3)")

	// One member down: quorum would hold with a second one gone (3 of 5),
	// but the gate allows one member down at a time.
	if err := followers[3].Kill(); err != nil {
		t.Fatal(err)
	}
	g := gateSays(t, a, followers[0].Name(), http.StatusConflict, followers[3].Name()+" is unhealthy (unreachable)")
	if g.HealthyVotersAfter != 3 || slices.ContainsFunc(g.Reasons, func(r string) bool { return strings.Contains(r, "fewer than the quorum") }) {
		t.Errorf("gate %+v: want 3 voters left, quorum kept", g)
	}

	// The agent's own member removed from the cluster (as Cluster API
	// may do before a drain): the gate says so, rather than waiting to
	// identify it.
	restart(t, followers[3])
	cli := leader.Client(t)
	testenv.Eventually(t, 60*time.Second, "removing "+followers[0].Name(), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// etcd refuses while the restarted member is not yet active.
		_, err := cli.MemberRemove(ctx, followers[0].ID())
		return err
	})
	gateSays(t, a, "", http.StatusConflict, "no member at this agent's endpoint "+followers[0].ClientURL())
}

// The gate is a pure function of the view: with the view a check makes,
// the check answers the same question.
func TestCheckMaintenance(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	leader := leaderOf(t, c)
	a := checkAgent(t, c, leader, nil)
	r := checkNow(t, a, CheckOptions{Disk: -1, Maintenance: leader.Name()})
	if r.Maintenance == nil || r.Maintenance.Allowed || !r.Maintenance.Leader || r.ExitCode() != 2 {
		t.Errorf("maintenance %+v, exit code %d: want a no for the leader, and a failed check", r.Maintenance, r.ExitCode())
	}
}

// A handler built from the agent serves the gate under a prefix too.
func TestMaintenanceBeforeFirstRound(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Etcd.Endpoints = []string{"http://" + testenv.RefusedAddr(t)}
	cfg.Disk.Enabled = false
	a, err := New(Options{Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	srv := httptest.NewServer(http.StripPrefix("/etcdpulse", a.Handler()))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/etcdpulse/maintenance?member=m0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("before the first round: %d, want 503", resp.StatusCode)
	}
}

// docs/check.md documents every check a report can hold: each name given
// to a Finding, or to outcomeLines, in the agent's code.
func TestCheckDocsListEveryCheck(t *testing.T) {
	doc, err := os.ReadFile("../docs/check.md")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`Check: "(\w+)"|outcomeLines\(in\.view, "(\w+)"`)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range names.FindAllStringSubmatch(string(src), -1) {
			name := m[1] + m[2]
			found++
			if !strings.Contains(string(doc), "| `"+name+"` |") {
				t.Errorf("%s: check %q has no row in docs/check.md", f, name)
			}
		}
	}
	if found < 10 {
		t.Fatalf("found %d check names in the agent's code; the pattern no longer matches how lines are made", found)
	}
}
