package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/client/pkg/v3/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcdpulse/etcdpulse/internal/delayproxy"
)

// ErrFreezeInProcess is returned by Freeze and Thaw for in-process members
// of a cluster without peer proxies: SIGSTOP cannot stop a member that
// shares the test's process, and its traffic can only be held at proxies.
var ErrFreezeInProcess = errors.New("etcdtest: Freeze/Thaw of an in-process member need Options{PeerProxy: true} without TLS, or Mode Process")

// Member is one etcd member of a Cluster.
type Member struct {
	c          *Cluster
	name       string
	clientURL  string // advertised client URL (in-process: the proxy)
	backendURL string // in-process only: where the embedded etcd listens for clients
	peerURL    string // advertised peer URL (with Options.PeerProxy: the proxy)
	// peerBackendURL, with Options.PeerProxy only: where etcd listens for
	// peers.
	peerBackendURL string
	// failpointAddr, with Options.Failpoints only: where gofail serves
	// the member's failpoints (GOFAIL_HTTP).
	failpointAddr string
	dataDir       string
	logPath       string

	op sync.Mutex // serializes lifecycle operations (start, kill, freeze, thaw)

	mu             sync.Mutex // guards the fields below
	initialCluster string
	clusterState   string
	id             uint64
	running        bool
	frozen         bool
	removed        bool
	etcd           *embed.Etcd       // in-process
	proxy          *delayproxy.Proxy // in-process: the advertised client port
	peerProxy      *delayproxy.Proxy // Options.PeerProxy: the advertised peer port
	logFile        *os.File          // in-process
	mute           *atomic.Bool      // in-process: stops forwarding etcd logs to Options.Logger
	closing        chan struct{}     // in-process: closed when the last embed.Etcd is fully closed
	proc           *proc             // process
	statusCli      *clientv3.Client
}

// proc is one run of an etcd OS process.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's result, set before exited is closed
}

func (p *proc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Name returns the member's name, e.g. "m0".
func (m *Member) Name() string { return m.name }

// ID returns the etcd member ID (known once the member has started).
func (m *Member) ID() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

// ClientURL returns the member's client URL, e.g. "http://127.0.0.1:23791".
func (m *Member) ClientURL() string { return m.clientURL }

// PeerURL returns the member's peer URL.
func (m *Member) PeerURL() string { return m.peerURL }

// DataDir returns the member's data directory.
func (m *Member) DataDir() string { return m.dataDir }

// LogFile returns the path of the file receiving the member's error-level etcd logs.
func (m *Member) LogFile() string { return m.logPath }

// Running reports whether the member has been started and has neither been
// killed nor stopped by itself (a frozen member is still running).
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runningLocked()
}

func (m *Member) runningLocked() bool {
	if !m.running {
		return false
	}
	if m.proc != nil && m.proc.hasExited() {
		return false
	}
	if m.etcd != nil {
		select {
		case <-m.etcd.Server.StopNotify():
			return false
		default:
		}
	}
	return true
}

// Etcd is the embedded server of a running in-process member; nil in
// Process mode or when it is not running.
func (m *Member) Etcd() *embed.Etcd {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.runningLocked() {
		return nil
	}
	return m.etcd
}

// PID is the member's process ID in Process mode; 0 for an in-process
// member or one not running.
func (m *Member) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil || !m.runningLocked() {
		return 0
	}
	return m.proc.cmd.Process.Pid
}

// Frozen reports whether the member's process is stopped by Freeze.
func (m *Member) Frozen() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.frozen && m.runningLocked()
}

// Kill stops the member abruptly. Process mode: SIGKILL, then wait for the
// process to exit. InProcess: client connections are cut at once (new ones
// refused), then the raft server is hard-stopped without leadership transfer;
// the rest of the embedded etcd is closed in the background. Killing a
// stopped member is a no-op.
func (m *Member) Kill() error {
	m.op.Lock()
	defer m.op.Unlock()
	return m.kill()
}

func (m *Member) kill() error {
	m.mu.Lock()
	if !m.running {
		m.mu.Unlock()
		return nil
	}
	m.running, m.frozen = false, false
	e, p, lf, pr, sc, mute, pp := m.etcd, m.proxy, m.logFile, m.proc, m.statusCli, m.mute, m.peerProxy
	m.etcd, m.proxy, m.logFile, m.statusCli, m.mute, m.peerProxy = nil, nil, nil, nil, nil, nil
	m.mu.Unlock()
	if pp != nil {
		pp.Close() //nolint:errcheck
	}

	if sc != nil {
		sc.Close()
	}
	var err error
	if pr != nil {
		pid := pr.cmd.Process.Pid
		// SIGKILL also ends a SIGSTOPped process; SIGCONT is harmless.
		syscall.Kill(-pid, syscall.SIGKILL) //nolint:errcheck
		syscall.Kill(-pid, syscall.SIGCONT) //nolint:errcheck
		select {
		case <-pr.exited:
		case <-time.After(30 * time.Second):
			err = fmt.Errorf("etcdtest: %s (pid %d) did not exit after SIGKILL", m.name, pid)
		}
	}
	if p != nil {
		p.Close() //nolint:errcheck
	}
	if e != nil {
		if mute != nil {
			mute.Store(true) // shutdown errors are expected
		}
		// Stop raft first: Etcd.Close alone calls EtcdServer.Stop, which
		// transfers leadership away from a leader before stopping.
		e.Server.HardStop()
		// The member is dead to clients (proxy cut) and peers (raft and its
		// transport stopped). Closing the rest can take a second (embed
		// waits up to 1 s for peer connections to drain), so finish it in
		// the background; a restart and Stop wait for it.
		done := make(chan struct{})
		m.mu.Lock()
		m.closing = done
		m.mu.Unlock()
		go func() {
			defer close(done)
			e.Close()
			if lf != nil {
				lf.Close()
			}
		}()
	}
	m.c.log.Info("etcdtest: member killed", "member", m.name)
	return err
}

// waitClosed waits until a killed in-process member is fully closed.
func (m *Member) waitClosed() {
	m.mu.Lock()
	ch := m.closing
	m.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// Freeze stops the member's process with SIGSTOP. An in-process member
// (with Options.PeerProxy, without TLS) is frozen at its proxies instead:
// its client and peer ports black-hole (connections stay open and nothing
// answers, as with a stopped process), and what it sends its peers is
// dropped.
func (m *Member) Freeze() error { return m.signal("Freeze", syscall.SIGSTOP, true) }

// Thaw resumes a frozen member with SIGCONT, or opens its proxies again.
func (m *Member) Thaw() error { return m.signal("Thaw", syscall.SIGCONT, false) }

// signal sends SIGSTOP or SIGCONT to the member's process and waits until
// /proc shows the process stopped or running again.
func (m *Member) signal(op string, sig syscall.Signal, frozen bool) error {
	if m.c.opts.Mode != Process {
		return m.freezeAtProxies(op, frozen)
	}
	m.op.Lock()
	defer m.op.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.runningLocked() {
		return fmt.Errorf("etcdtest: %s: %s is not running", op, m.name)
	}
	pid := m.proc.cmd.Process.Pid
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("etcdtest: %s %s: %w", op, m.name, err)
	}
	m.frozen = frozen
	waitProcState(pid, frozen)
	state := "thawed"
	if frozen {
		state = "frozen"
	}
	m.c.log.Info("etcdtest: member "+state, "member", m.name)
	return nil
}

// dropAtPeers has the other members' peer proxies cut every connection
// whose first bytes hold match (nil: none).
func (m *Member) dropAtPeers(match []byte) {
	for _, o := range m.c.Members() {
		if o == m {
			continue
		}
		o.mu.Lock()
		if o.peerProxy != nil {
			o.peerProxy.SetDropMatching(match)
		}
		o.mu.Unlock()
	}
}

// freezeAtProxies freezes (or thaws) an in-process member at its proxies.
func (m *Member) freezeAtProxies(op string, frozen bool) error {
	c := m.c
	if !c.opts.PeerProxy || c.opts.TLS != nil {
		return ErrFreezeInProcess
	}
	m.op.Lock()
	defer m.op.Unlock()
	m.mu.Lock()
	client, peer, id, running := m.proxy, m.peerProxy, m.id, m.runningLocked()
	m.mu.Unlock()
	if !running || client == nil || peer == nil || id == 0 {
		return fmt.Errorf("etcdtest: %s: %s is not running", op, m.name)
	}
	mode, match := delayproxy.Forward, []byte(nil)
	if frozen {
		mode, match = delayproxy.Blackhole, []byte("X-Server-From: "+types.ID(id).String()+"\r\n")
	}
	for _, p := range []*delayproxy.Proxy{client, peer} {
		if err := p.SetMode(mode); err != nil {
			return fmt.Errorf("etcdtest: %s %s: %w", op, m.name, err)
		}
	}
	m.dropAtPeers(match)
	m.mu.Lock()
	m.frozen = frozen
	m.mu.Unlock()
	state := "thawed"
	if frozen {
		state = "frozen"
	}
	c.log.Info("etcdtest: member "+state+" at its proxies", "member", m.name)
	return nil
}

// waitProcState waits briefly until /proc says the process is (or is no
// longer) stopped, so that Freeze and Thaw have taken effect when they return.
func waitProcState(pid int, stopped bool) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		// The state follows the parenthesized command name.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			return
		}
		st := s[i+2]
		if (st == 'T' || st == 't') == stopped {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Restart starts a killed member again on the same data dir and ports and
// returns once it serves its client port (which needs a quorum to be
// reachable: to restore a lost quorum, use RestartNoWait on several members,
// then WaitReady).
func (m *Member) Restart() error {
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if err = m.RestartNoWait(); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			err = m.WaitReady(ctx)
			cancel()
			if err == nil {
				return nil
			}
		}
		if !isAddrInUse(err) {
			return err
		}
		m.c.log.Warn("etcdtest: restart found a port in use; retrying", "member", m.name, "err", err)
		m.Kill() //nolint:errcheck
		time.Sleep(time.Duration(attempt) * 300 * time.Millisecond)
	}
	return err
}

// RestartNoWait starts a killed member again on the same data dir and ports
// without waiting for it to serve; see WaitReady.
func (m *Member) RestartNoWait() error {
	m.mu.Lock()
	removed := m.removed
	m.clusterState = embed.ClusterStateFlagExisting
	m.mu.Unlock()
	if removed {
		return fmt.Errorf("etcdtest: %s was removed from the cluster", m.name)
	}
	if err := m.launch(); err != nil {
		return err
	}
	m.c.log.Info("etcdtest: member restarted", "member", m.name)
	return nil
}

// launch starts the member without waiting for it to be ready.
func (m *Member) launch() error {
	m.op.Lock()
	defer m.op.Unlock()
	if m.Frozen() || m.Running() {
		return fmt.Errorf("etcdtest: %s is already running", m.name)
	}
	// Clean up after a member that stopped by itself, then wait until the
	// previous embedded etcd has released its ports and data dir.
	if err := m.kill(); err != nil {
		return err
	}
	m.waitClosed()
	m.c.mu.Lock()
	stopped := m.c.stopped
	m.c.mu.Unlock()
	if stopped {
		return fmt.Errorf("etcdtest: cluster of %s is stopped", m.name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.peerBackendURL != "" {
		// Up before the member: until etcd listens, peers' connects
		// through it fail as they would against the member itself.
		pp, err := delayproxy.Listen(mustURL(m.peerURL).Host, mustURL(m.peerBackendURL).Host)
		if err != nil {
			return fmt.Errorf("etcdtest: peer port of %s: %w", m.name, err)
		}
		m.peerProxy = pp
	}
	var err error
	if m.c.opts.Mode == Process {
		err = m.launchProcess()
	} else {
		err = m.launchEmbed()
	}
	if err != nil {
		if m.peerProxy != nil {
			m.peerProxy.Close() //nolint:errcheck
			m.peerProxy = nil
		}
		return err
	}
	m.running = true
	return nil
}

// peerListenURL is where etcd listens for its peers.
func (m *Member) peerListenURL() string {
	if m.peerBackendURL != "" {
		return m.peerBackendURL
	}
	return m.peerURL
}

// IsolatePeers cuts (true) or restores (false) the member's peer traffic
// both ways, while clients still reach it: its own peer port refuses
// connections, and the other members' peer proxies cut every connection
// whose requests it sent (raft's X-Server-From header: a member receives
// its peers' messages over streams it dials itself). A follower so cut off
// hears no heartbeat, becomes a pre-candidate and reports no leader; the
// others keep theirs. Needs Options.PeerProxy (and no TLS: the header is
// read off the wire) and a running member.
func (m *Member) IsolatePeers(isolated bool) error {
	c := m.c
	if !c.opts.PeerProxy || c.opts.TLS != nil {
		return errors.New("etcdtest: IsolatePeers needs Options{PeerProxy: true} without TLS")
	}
	m.mu.Lock()
	own, id := m.peerProxy, m.id
	m.mu.Unlock()
	if own == nil || id == 0 {
		return fmt.Errorf("etcdtest: %s is not running", m.name)
	}
	mode, match := delayproxy.Forward, []byte(nil)
	if isolated {
		mode, match = delayproxy.Refuse, []byte("X-Server-From: "+types.ID(id).String()+"\r\n")
	}
	if err := own.SetMode(mode); err != nil {
		return err
	}
	m.dropAtPeers(match)
	c.log.Info("etcdtest: member's peer traffic", "member", m.name, "isolated", isolated)
	return nil
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}

// quota is the member's --quota-backend-bytes.
func (m *Member) quota() int64 {
	if q, ok := m.c.opts.MemberQuotaBackendBytes[m.name]; ok {
		return q
	}
	return m.c.opts.QuotaBackendBytes
}

func (m *Member) launchEmbed() error {
	c := m.c
	lf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dataDir
	cfg.ListenClientUrls = []url.URL{mustURL(m.backendURL)}
	cfg.AdvertiseClientUrls = []url.URL{mustURL(m.clientURL)}
	cfg.ListenPeerUrls = []url.URL{mustURL(m.peerListenURL())}
	cfg.AdvertisePeerUrls = []url.URL{mustURL(m.peerURL)}
	cfg.ListenMetricsUrls = nil
	cfg.InitialCluster = m.initialCluster
	cfg.ClusterState = m.clusterState
	cfg.InitialClusterToken = c.token
	cfg.TickMs = c.opts.HeartbeatMs
	cfg.ElectionMs = c.opts.ElectionMs
	cfg.QuotaBackendBytes = m.quota()
	cfg.LogLevel = "error"
	mute := new(atomic.Bool)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newEtcdLogger(lf, c.opts.Logger, m.name, mute))
	if tl := c.opts.TLS; tl != nil {
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile:       tl.ServerCertFile,
			KeyFile:        tl.ServerKeyFile,
			TrustedCAFile:  tl.CAFile,
			ClientCertAuth: true,
		}
		pt := c.peerTLS()
		cfg.PeerTLSInfo = transport.TLSInfo{
			CertFile:       pt.ServerCertFile,
			KeyFile:        pt.ServerKeyFile,
			TrustedCAFile:  pt.CAFile,
			ClientCertAuth: true,
		}
	}
	var e *embed.Etcd
	for attempt := 1; ; attempt++ {
		e, err = embed.StartEtcd(cfg)
		// A restart may race with the release of its own old sockets.
		if err == nil || !isAddrInUse(err) || m.clusterState != embed.ClusterStateFlagExisting || attempt == 10 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		lf.Close()
		return fmt.Errorf("etcdtest: starting %s: %w", m.name, err)
	}
	// Clients reach the member through a proxy: cutting it drops every
	// client connection at once and refuses new ones, which is what clients
	// see when a real etcd process dies, though embed's own shutdown drains
	// client RPCs gracefully.
	p, err := delayproxy.Listen(mustURL(m.clientURL).Host, mustURL(m.backendURL).Host)
	if err != nil {
		mute.Store(true)
		e.Server.HardStop()
		e.Close()
		lf.Close()
		return fmt.Errorf("etcdtest: client port of %s: %w", m.name, err)
	}
	m.etcd, m.proxy, m.logFile, m.proc, m.mute = e, p, lf, nil, mute
	return nil
}

func (m *Member) launchProcess() error {
	c := m.c
	args := []string{
		"--name=" + m.name,
		"--data-dir=" + m.dataDir,
		"--listen-client-urls=" + m.clientURL,
		"--advertise-client-urls=" + m.clientURL,
		"--listen-peer-urls=" + m.peerListenURL(),
		"--initial-advertise-peer-urls=" + m.peerURL,
		"--initial-cluster=" + m.initialCluster,
		"--initial-cluster-state=" + m.clusterState,
		"--initial-cluster-token=" + c.token,
		"--heartbeat-interval=" + strconv.FormatUint(uint64(c.opts.HeartbeatMs), 10),
		"--election-timeout=" + strconv.FormatUint(uint64(c.opts.ElectionMs), 10),
		"--log-level=error",
		"--log-outputs=stderr",
	}
	if q := m.quota(); q != 0 {
		args = append(args, "--quota-backend-bytes="+strconv.FormatInt(q, 10))
	}
	args = append(args, c.opts.ExtraFlags...)
	if tl := c.opts.TLS; tl != nil {
		args = append(args,
			"--cert-file="+tl.ServerCertFile,
			"--key-file="+tl.ServerKeyFile,
			"--trusted-ca-file="+tl.CAFile,
			"--client-cert-auth",
			"--peer-cert-file="+c.peerTLS().ServerCertFile,
			"--peer-key-file="+c.peerTLS().ServerKeyFile,
			"--peer-trusted-ca-file="+c.peerTLS().CAFile,
			"--peer-client-cert-auth",
		)
	}
	lf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close() // the child has its own descriptor
	fmt.Fprintf(lf, "=== etcdtest: starting %s at %s: %s %s\n", m.name, time.Now().Format(time.RFC3339Nano), c.etcdBin, strings.Join(args, " "))

	cmd := exec.Command(c.etcdBin, args...)
	cmd.Dir = c.baseDir
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Env = etcdEnv()
	if m.failpointAddr != "" {
		cmd.Env = append(cmd.Env, "GOFAIL_HTTP="+m.failpointAddr)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL, // do not outlive a crashed test binary
	}
	if err := startCmd(cmd); err != nil {
		return fmt.Errorf("etcdtest: starting %s: %w", m.name, err)
	}
	pr := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		close(pr.exited)
	}()
	m.proc, m.etcd, m.proxy, m.logFile = pr, nil, nil, nil
	return nil
}

// Linux delivers Pdeathsig when the OS thread that forked the child exits,
// not the process; Go may end threads (a goroutine exiting while locked to
// its thread), so fork from one goroutine locked to a thread that lives as
// long as the test binary.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startCmd(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread never exits
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawner.reqs <- spawnReq{cmd: cmd, done: done}
	return <-done
}

// etcdEnv is the test's environment without ETCD_* variables, which etcd
// would read as flags, and GOFAIL_* ones, which an etcd with failpoints
// would act on (Options.Failpoints sets its own).
func etcdEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") && !strings.HasPrefix(kv, "GOFAIL_") {
			env = append(env, kv)
		}
	}
	return env
}

// WaitReady waits until a started member serves client requests (which
// needs a quorum of the cluster) and records its ID.
func (m *Member) WaitReady(ctx context.Context) error {
	m.mu.Lock()
	running, e, pr := m.running, m.etcd, m.proc
	m.mu.Unlock()
	if !running {
		return fmt.Errorf("etcdtest: WaitReady: %s is not running", m.name)
	}
	if e != nil {
		select {
		case <-e.Server.ReadyNotify():
		case <-e.Server.StopNotify():
			return fmt.Errorf("etcdtest: %s stopped before becoming ready; log:\n%s", m.name, tail(m.logPath, 20))
		case err := <-e.Err():
			return fmt.Errorf("etcdtest: %s failed before becoming ready: %w", m.name, err)
		case <-ctx.Done():
			return fmt.Errorf("etcdtest: %s not ready: %w", m.name, ctx.Err())
		}
		m.mu.Lock()
		m.id = uint64(e.Server.MemberID())
		m.mu.Unlock()
	} else if pr != nil {
		if err := m.waitServing(ctx, pr); err != nil {
			return err
		}
	}

	cli, err := m.c.newClient([]string{m.clientURL})
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.statusCli != nil {
		m.statusCli.Close()
	}
	m.statusCli = cli
	m.mu.Unlock()

	if pr != nil {
		// Learn the ID from the member itself.
		for {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			resp, err := m.Status(sctx)
			cancel()
			if err == nil {
				m.mu.Lock()
				m.id = resp.Header.MemberId
				m.mu.Unlock()
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("etcdtest: Status of %s: %w", m.name, err)
			case <-pr.exited:
				return fmt.Errorf("etcdtest: %s exited (%v); log:\n%s", m.name, pr.err, tail(m.logPath, 20))
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// waitServing polls the member's HTTP /version endpoint, which etcd serves
// only once the member is ready, until it answers or the process exits.
func (m *Member) waitServing(ctx context.Context, pr *proc) error {
	tr := &http.Transport{DisableKeepAlives: true}
	if m.c.clientTLS != nil {
		tr.TLSClientConfig = m.c.clientTLS.Clone()
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.clientURL+"/version", nil)
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if strings.Contains(string(body), "etcdserver") {
				return nil
			}
			// Someone else answers on the port etcd should own.
			err = fmt.Errorf("unexpected answer %s: %.100q", resp.Status, body)
		}
		select {
		case <-pr.exited:
			log := tail(m.logPath, 20)
			err := fmt.Errorf("etcdtest: %s exited before becoming ready (%v); log:\n%s", m.name, pr.err, log)
			if strings.Contains(log, "address already in use") {
				err = fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("etcdtest: %s not serving: %w (last error: %v)", m.name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Status asks this member alone for its status over a persistent connection.
func (m *Member) Status(ctx context.Context) (*clientv3.StatusResponse, error) {
	m.mu.Lock()
	cli := m.statusCli
	m.mu.Unlock()
	if cli == nil {
		return nil, fmt.Errorf("etcdtest: %s is not running", m.name)
	}
	resp, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return nil, err
	}
	return (*clientv3.StatusResponse)(resp), nil
}

// Client returns a client pinned to this member only, closed at t's cleanup.
func (m *Member) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := m.c.newClient([]string{m.clientURL})
	if err != nil {
		t.Fatalf("etcdtest: client for %s: %v", m.name, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
