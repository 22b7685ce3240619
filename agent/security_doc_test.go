package agent

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// docCommands returns the etcdctl commands of docs/security.md's block
// that opens with the comment heading.
func docCommands(t *testing.T, heading string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	in := false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == heading:
			in = true
		case in && line == "```":
			return out
		case in && strings.HasPrefix(line, "etcdctl "):
			out = append(out, line)
		}
	}
	t.Fatalf("docs/security.md: no block opening with %q", heading)
	return nil
}

// The commands docs/security.md gives, run as written with the real
// etcdctl on an auth-enabled cluster, make a user that is enough for the
// agent: healthy members, writes, no refusal.
func TestSecurityDocRole(t *testing.T) {
	etcdctl := etcdtest.EtcdctlBinary(t)
	cmds := docCommands(t, "# role and user for the agent")
	if len(cmds) < 3 {
		t.Fatalf("docs/security.md gives %d etcdctl commands: %q", len(cmds), cmds)
	}
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	c.EnableAuth(t, "root-password")
	for _, line := range cmds {
		cmd := exec.Command("sh", "-c", line)
		cmd.Env = append(os.Environ(),
			"PATH="+filepath.Dir(etcdctl)+":"+os.Getenv("PATH"),
			"ETCDCTL_ENDPOINTS="+strings.Join(c.ClientURLs(), ","),
			"ETCDCTL_USER=root:root-password",
			"ETCDPULSE_PASSWORD=agent-password")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
	}
	a, logs := startLoggedAgent(t, c.ClientURLs()[:1], func(cfg *Config) {
		credentials("agent-password")(cfg)
		cfg.Disk.Enabled = false
		cfg.Probes.Write.Interval = Duration(time.Second)
		cfg.Probes.Hash.Interval = Duration(time.Second)
	})
	exps := append(healthyCluster(3),
		countAtLeast("etcdpulse_write_duration_seconds", 2, "member", c.Member(0).Name()),
		absentFamily("etcdpulse_agent_refused"))
	for _, m := range c.Members() {
		exps = append(exps, countAtLeast("etcdpulse_watch_delivery_seconds", 2, "member", m.Name()))
	}
	// HashKV is etcd's root's alone under authentication: the one thing
	// the role cannot do, reported as such, and nothing else breaks.
	exps = append(exps, gaugeAtLeast("etcdpulse_probe_failures_total", 1, "probe", "hash", "reason", "permission_denied"))
	a.waitFor(t, "healthy, writing, watching, not refused; the hash check refused", exps...)
	if l := logs.Lines("hash consistency check failed", "reason=permission_denied", "only to the root role", "docs/security.md"); len(l) != 1 {
		t.Errorf("%d log lines naming the refused HashKV, want 1; log:\n%s", len(l), logs)
	}
}
