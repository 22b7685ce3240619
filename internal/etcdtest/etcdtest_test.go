package etcdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func putGet(t *testing.T, cli *clientv3.Client, key, val string) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	// A member that has just rejoined its peers can drop a proposal it
	// forwards while its streams to the leader reconnect: etcd says so,
	// and the client is expected to retry.
	testenv.Eventually(t, 30*time.Second, "put "+key, func() error {
		_, err := cli.Put(ctx, key, val)
		transient := errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) || errors.Is(err, rpctypes.ErrTimeout) || errors.Is(err, rpctypes.ErrLeaderChanged)
		if err != nil && !transient {
			t.Fatalf("put %s: %v", key, err)
		}
		return err
	})
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != val {
		t.Fatalf("get %s = %v, want %q", key, resp.Kvs, val)
	}
}

// statusOK asks m for its status through a client pinned to it.
func statusOK(t *testing.T, m *Member) *clientv3.StatusResponse {
	t.Helper()
	cli := m.Client(t)
	var resp *clientv3.StatusResponse
	testenv.Eventually(t, 30*time.Second, "status of "+m.Name(), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		resp, err = cli.Status(ctx, m.ClientURL())
		return err
	})
	return resp
}

func memberCount(t *testing.T, c *Cluster) int {
	t.Helper()
	resp, err := c.Client(t).MemberList(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	return len(resp.Members)
}

func checkIdentity(t *testing.T, c *Cluster, n int) {
	t.Helper()
	ms := c.Members()
	if len(ms) != n || len(c.ClientURLs()) != n {
		t.Fatalf("%d members, %d URLs; want %d", len(ms), len(c.ClientURLs()), n)
	}
	seen := map[uint64]bool{}
	for i, m := range ms {
		if m.Name() != fmt.Sprintf("m%d", i) || c.Member(i) != m || c.ClientURLs()[i] != m.ClientURL() {
			t.Errorf("member %d: name %q, URL %s", i, m.Name(), m.ClientURL())
		}
		if m.ID() == 0 || seen[m.ID()] {
			t.Errorf("member %s: bad or duplicate ID %x", m.Name(), m.ID())
		}
		seen[m.ID()] = true
		if !m.Running() || m.DataDir() == "" || m.PeerURL() == "" {
			t.Errorf("member %s: running %v, data dir %q, peer URL %q", m.Name(), m.Running(), m.DataDir(), m.PeerURL())
		}
	}
}

func TestInProcessSingle(t *testing.T) {
	c := Start(t, Options{Size: 1, Logger: testLogger(t)})
	checkIdentity(t, c, 1)
	putGet(t, c.Client(t), "k", "v")
	if err := c.Member(0).Freeze(); !errors.Is(err, ErrFreezeInProcess) {
		t.Fatalf("Freeze in-process: %v, want ErrFreezeInProcess", err)
	}
	// Kill and restart a single member: data survives.
	m := c.Member(0)
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if m.Running() {
		t.Fatal("killed member still running")
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	resp, err := m.Client(t).Get(ctxT(t, 30*time.Second), "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get after restart: %v %v", resp, err)
	}
	c.Stop()
	c.Stop()
	if m.Running() {
		t.Fatal("member running after Stop")
	}
}

// testKillLeader kills the leader of a 3-member cluster, expects a different
// leader, restarts the old one and expects it to rejoin.
func testKillLeader(t *testing.T, c *Cluster) {
	putGet(t, c.Client(t), "before", "1")
	lead, err := c.Leader(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := lead.Kill(); err != nil {
		t.Fatal(err)
	}
	nl, err := c.WaitLeader(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if nl == lead {
		t.Fatalf("leader still %s after killing it", lead.Name())
	}
	putGet(t, c.Client(t), "during", "2")
	if err := lead.Restart(); err != nil {
		t.Fatal(err)
	}
	if st := statusOK(t, lead); st.Header.MemberId != lead.ID() {
		t.Fatalf("restarted member reports ID %x, want %x", st.Header.MemberId, lead.ID())
	}
	if _, err := c.WaitLeader(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	cli := lead.Client(t)
	testenv.Eventually(t, 30*time.Second, "the restarted member caught up", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, "during", clientv3.WithSerializable())
		if err == nil && len(resp.Kvs) != 1 {
			err = fmt.Errorf("%d keys \"during\"", len(resp.Kvs))
		}
		return err
	})
}

func TestInProcessThree(t *testing.T) {
	c := Start(t, Options{Size: 3, Logger: testLogger(t)})
	checkIdentity(t, c, 3)
	testKillLeader(t, c)

	// Lose quorum: kill two members; the survivor has no leader.
	ms := c.Members()
	lead, err := c.WaitLeader(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var killed []*Member
	for _, m := range ms {
		if m != lead && len(killed) < 1 {
			killed = append(killed, m)
		}
	}
	killed = append(killed, lead)
	for _, m := range killed {
		if err := m.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the survivor without a leader", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if l, err := c.Leader(ctx); err == nil {
			return fmt.Errorf("it still follows %s without quorum", l.Name())
		}
		return nil
	})
	// Waiting out a real timeout: no leader may appear in those 2 s.
	if _, err := c.WaitLeader(ctxT(t, 2*time.Second)); err == nil {
		t.Fatal("WaitLeader succeeded without quorum")
	}
	// Restore quorum.
	for _, m := range killed {
		if err := m.RestartNoWait(); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range killed {
		if err := m.WaitReady(ctxT(t, 60*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitLeader(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	putGet(t, c.Client(t), "after", "3")
}

func TestInProcessAddRemove(t *testing.T) {
	c := Start(t, Options{Size: 3, Logger: testLogger(t)})
	if n := memberCount(t, c); n != 3 {
		t.Fatalf("%d members, want 3", n)
	}
	m := c.AddMember(t)
	if m.Name() != "m3" || !m.Running() || m.ID() == 0 {
		t.Fatalf("added member %s running=%v id=%x", m.Name(), m.Running(), m.ID())
	}
	if n := memberCount(t, c); n != 4 {
		t.Fatalf("%d members after AddMember, want 4", n)
	}
	if st := statusOK(t, m); st.Header.MemberId != m.ID() {
		t.Fatalf("added member reports ID %x, want %x", st.Header.MemberId, m.ID())
	}
	putGet(t, m.Client(t), "added", "yes")
	if _, err := c.WaitLeader(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}

	// Remove the leader, so that leadership has to move.
	lead, err := c.Leader(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c.RemoveMember(t, lead)
	if lead.Running() {
		t.Fatal("removed member still running")
	}
	if len(c.Members()) != 3 {
		t.Fatalf("%d members in Members(), want 3", len(c.Members()))
	}
	if n := memberCount(t, c); n != 3 {
		t.Fatalf("%d members after RemoveMember, want 3", n)
	}
	if nl, err := c.WaitLeader(ctxT(t, 30*time.Second)); err != nil || nl == lead {
		t.Fatalf("leader after removing the leader: %v, %v", nl, err)
	}
	putGet(t, c.Client(t), "removed", "yes")
}

func TestInProcessFive(t *testing.T) {
	c := Start(t, Options{Size: 5, ElectionMs: 1500, HeartbeatMs: 150, Logger: testLogger(t)})
	checkIdentity(t, c, 5)
	putGet(t, c.Client(t), "five", "5")
	// Two dead members still leave a quorum of three.
	lead, err := c.WaitLeader(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range c.Members() {
		if m != lead && n < 2 {
			if err := m.Kill(); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	putGet(t, c.Client(t), "five", "3 left")
	if nl, err := c.WaitLeader(ctxT(t, 30*time.Second)); err != nil || nl != lead {
		t.Fatalf("leader %v, %v; want unchanged %s", nl, err, lead.Name())
	}
}

func TestProcessThree(t *testing.T) {
	c := Start(t, Options{Size: 3, Mode: Process, Logger: testLogger(t)})
	checkIdentity(t, c, 3)
	putGet(t, c.Client(t), "k", "v")

	// Freeze the leader: it stops answering, the others elect a new one.
	lead, err := c.Leader(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	cli := lead.Client(t)
	if err := lead.Freeze(); err != nil {
		t.Fatal(err)
	}
	if !lead.Frozen() || !lead.Running() {
		t.Fatalf("frozen=%v running=%v after Freeze", lead.Frozen(), lead.Running())
	}
	sctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = cli.Status(sctx, lead.ClientURL())
	cancel()
	if err == nil {
		t.Fatal("frozen member answered Status")
	}
	nl, err := c.WaitLeader(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if nl == lead {
		t.Fatal("frozen member is still the leader")
	}
	if err := lead.Thaw(); err != nil {
		t.Fatal(err)
	}
	statusOK(t, lead)
	if _, err := c.WaitLeader(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}

	testKillLeader(t, c)
}

func testTLS(t *testing.T, mode Mode, size int) {
	tl := NewTLS(t)
	c := Start(t, Options{Size: size, Mode: mode, TLS: tl, Logger: testLogger(t)})
	for _, u := range c.ClientURLs() {
		if u[:8] != "https://" {
			t.Fatalf("client URL %s is not https", u)
		}
	}
	putGet(t, c.Client(t), "secure", "yes")
	statusOK(t, c.Member(size-1))

	// A client that trusts the CA but has no client certificate is refused.
	pool, err := tl.CertPool()
	if err != nil {
		t.Fatal(err)
	}
	bad, err := clientv3.New(clientv3.Config{
		Endpoints: c.ClientURLs(),
		TLS:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Logger:    zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := bad.Get(ctx, "secure"); err == nil {
		t.Fatal("client without certificate was served")
	}
}

func TestTLS(t *testing.T) {
	t.Run("InProcess", func(t *testing.T) { testTLS(t, InProcess, 3) })
	t.Run("Process", func(t *testing.T) { testTLS(t, Process, 3) })
}

func TestNewTLSConfig(t *testing.T) {
	tl := NewTLS(t)
	cfg, err := tl.ClientTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || cfg.RootCAs == nil {
		t.Fatalf("client TLS config: %d certificates, roots %v", len(cfg.Certificates), cfg.RootCAs)
	}
	for _, f := range []string{tl.CAFile, tl.ServerCertFile, tl.ServerKeyFile, tl.ClientCertFile, tl.ClientKeyFile} {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPortTaken makes the first port handed out one that is already taken:
// Start must notice and start the cluster again on new ports.
func TestPortTaken(t *testing.T) {
	for _, mode := range []Mode{InProcess, Process} {
		t.Run(mode.String(), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			taken := ln.Addr().(*net.TCPAddr).Port
			ports.Lock()
			ports.force = []int{taken}
			ports.Unlock()
			c := Start(t, Options{Size: 1, Mode: mode, Logger: testLogger(t)})
			if u := c.Member(0).ClientURL(); u == fmt.Sprintf("http://127.0.0.1:%d", taken) {
				t.Fatalf("member uses the taken port: %s", u)
			}
			putGet(t, c.Client(t), "k", "v")
		})
	}
}

func TestProcessAddRemove(t *testing.T) {
	c := Start(t, Options{Size: 1, Mode: Process, Logger: testLogger(t)})
	first := c.Member(0)
	m := c.AddMember(t)
	if n := memberCount(t, c); n != 2 {
		t.Fatalf("%d members after AddMember, want 2", n)
	}
	putGet(t, m.Client(t), "k", "v")
	c.RemoveMember(t, first)
	if first.Running() || len(c.Members()) != 1 || c.Member(0) != m {
		t.Fatalf("after RemoveMember: first running %v, members %d", first.Running(), len(c.Members()))
	}
	if n := memberCount(t, c); n != 1 {
		t.Fatalf("%d members after RemoveMember, want 1", n)
	}
	if l, err := c.WaitLeader(ctxT(t, 30*time.Second)); err != nil || l != m {
		t.Fatalf("leader %v, %v; want %s", l, err, m.Name())
	}
	if err := first.Restart(); err == nil {
		t.Fatal("removed member restarted")
	}
}

// A follower cut off from its peers still answers its clients but reports
// no leader, while the other two keep their leader and commit; restored,
// it follows the leader again.
func TestIsolatePeers(t *testing.T) {
	c := Start(t, Options{Size: 3, PeerProxy: true, Logger: testLogger(t)})
	lead, err := c.WaitLeader(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var cut *Member
	for _, m := range c.Members() {
		if m != lead {
			cut = m
			break
		}
	}
	if err := cut.IsolatePeers(true); err != nil {
		t.Fatal(err)
	}
	waitStatus := func(what string, m *Member, ok func(*clientv3.StatusResponse) bool) {
		t.Helper()
		testenv.Eventually(t, 60*time.Second, what, func() error {
			if s := statusOK(t, m); !ok(s) {
				return fmt.Errorf("%s reports leader %x in term %d", m.Name(), s.Leader, s.RaftTerm)
			}
			return nil
		})
	}
	waitStatus("cut off", cut, func(s *clientv3.StatusResponse) bool { return s.Leader == 0 })
	if s := statusOK(t, lead); s.Leader != lead.ID() {
		t.Errorf("the leader reports leader %x, want itself (%x)", s.Leader, lead.ID())
	}
	cli, err := c.newClient([]string{lead.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	putGet(t, cli, "while-cut", "1")

	if err := cut.IsolatePeers(false); err != nil {
		t.Fatal(err)
	}
	waitStatus("restored", cut, func(s *clientv3.StatusResponse) bool { return s.Leader != 0 })
	if _, err := c.WaitLeader(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	putGet(t, c.Client(t), "after", "2")
}

// A WAL stall injected with etcd's own failpoint: a put hangs while the
// member still answers Status and serializable reads, which is what a
// wedged member looks like to its clients; cleared, puts go through again.
func TestFailpointStallsWAL(t *testing.T) {
	c := Start(t, Options{Size: 1, Mode: Process, Failpoints: true, Logger: testLogger(t)})
	m := c.Member(0)
	cli := m.Client(t)
	putGet(t, cli, "before", "1")

	if err := m.SetFailpoint(ctxT(t, 10*time.Second), "noSuchFailpoint", "sleep(1)"); err == nil {
		t.Error("setting a failpoint etcd does not have: no error")
	}
	if err := m.ClearFailpoint(ctxT(t, 10*time.Second), FailpointRaftBeforeSave); err != nil {
		t.Errorf("clearing a failpoint that is not set: %v", err)
	}
	// Each save of the raft loop sleeps 10 s: a put takes at least that,
	// while Status and serializable reads, given half of it, answer.
	if err := m.SetFailpoint(ctxT(t, 10*time.Second), FailpointRaftBeforeSave, "sleep(10000)"); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := cli.Put(pctx, "stalled", "1")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("put during the stall: err = %v, want a deadline exceeded", err)
	}
	if _, err := m.Status(ctxT(t, 5*time.Second)); err != nil {
		t.Errorf("status during the stall: %v", err)
	}
	if _, err := cli.Get(ctxT(t, 5*time.Second), "before", clientv3.WithSerializable()); err != nil {
		t.Errorf("serializable read during the stall: %v", err)
	}

	if err := m.ClearFailpoint(ctxT(t, 10*time.Second), FailpointRaftBeforeSave); err != nil {
		t.Fatal(err)
	}
	putGet(t, cli, "after", "2")
}

func TestFailpointsOff(t *testing.T) {
	if err := (&Member{}).SetFailpoint(context.Background(), FailpointRaftBeforeSave, "sleep(1)"); !errors.Is(err, errFailpointsOff) {
		t.Errorf("SetFailpoint without Options.Failpoints: err = %v, want %v", err, errFailpointsOff)
	}
}
