package agent

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// sharedURLCluster starts three etcd processes that all advertise the
// first one's client URL, as k0s advertises https://127.0.0.1:2379 for
// every member, and returns that URL.
func sharedURLCluster(t *testing.T) string {
	t.Helper()
	bin := etcdtest.EtcdBinary(t)
	var client, peer [3]int
	for i := range 3 {
		client[i], peer[i] = loopbackPort(t), loopbackPort(t)
	}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, peer[i]))
	}
	advertised := fmt.Sprintf("http://127.0.0.1:%d", client[0])
	dir := t.TempDir()
	for i := range 3 {
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("m%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i)),
			"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client[i]),
			"--advertise-client-urls", advertised,
			"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer[i]),
			"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer[i]),
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "shared-url",
			"--log-level", "error")
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			log.Close()
		})
	}
	return advertised
}

func loopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Members that all advertise one client URL (k0s) are answered there by
// one member only. The agent must not take that member's answers for the
// others' (it reported them healthy, and a dead member too): it reports
// them refused, wrong_member, and their health and the quorum as unknown.
func TestSharedAdvertisedClientURL(t *testing.T) {
	url := sharedURLCluster(t)
	a, logs := startLoggedAgent(t, []string{url}, nil)
	absentFor := func(member string) expect {
		return func(m metrics) error {
			if v, ok := m.value("etcdpulse_member_healthy", "member", member); ok {
				return fmt.Errorf("etcdpulse_member_healthy{member=%q} = %v, want absent", member, v)
			}
			return nil
		}
	}
	a.waitFor(t, "m1 and m2 refused as wrong_member with their health unknown, m0 healthy",
		gauge("etcdpulse_member_healthy", 1, "member", "m0"),
		gauge("etcdpulse_agent_refused", 1, "member", "m1", "reason", "wrong_member"),
		gauge("etcdpulse_agent_refused", 1, "member", "m2", "reason", "wrong_member"),
		absentFor("m1"), absentFor("m2"),
		absentFamily("etcdpulse_cluster_fault_tolerance"),
		absentFamily("etcdpulse_cluster_healthy_voting_members"),
	)
	testenv.Eventually(t, 30*time.Second, "the refusal logged with its cause", func() error {
		if len(logs.Lines("another member answers at this member's advertised client URL", "is its advertised client URL a loopback address")) == 0 {
			return fmt.Errorf("not yet; log:\n%s", logs.String())
		}
		return nil
	})
}
