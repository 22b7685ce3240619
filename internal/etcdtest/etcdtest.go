// Package etcdtest runs real etcd clusters for tests, in-process (embed) or
// as separate etcd processes, with fault injection: killing, freezing
// (SIGSTOP), restarting, adding and removing members.
//
// Members listen on random loopback ports below the kernel's ephemeral range;
// a start that finds a port taken is retried on new ports. In InProcess mode
// each member's advertised client URL is a small TCP proxy in front of the
// embedded etcd, so that Kill can drop client connections at once, as the
// death of a real process would. Process mode runs the etcd binary returned
// by EtcdBinary; its members die with the test binary (Pdeathsig), and their
// error-level logs go to Member.LogFile, printed when the test fails.
// With Options.Failpoints, Process mode runs etcd built with its own
// failpoints (FailpointEtcdBinary), which Member.SetFailpoint switches at
// run time: a stalled WAL, a stuck apply.
//
// It is internal to etcdpulse: not public API.
package etcdtest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Mode selects how members run.
type Mode int

const (
	// InProcess runs members via go.etcd.io/etcd/server/v3/embed in this process.
	InProcess Mode = iota
	// Process runs members as separate etcd OS processes.
	Process
)

// String returns "InProcess" or "Process".
func (m Mode) String() string {
	switch m {
	case InProcess:
		return "InProcess"
	case Process:
		return "Process"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Options configures a cluster started by Start.
type Options struct {
	Size        int          // number of members; 0 means 1
	Mode        Mode         // InProcess or Process
	TLS         *TLS         // nil = plain http; else https with client cert auth, and peer TLS with the same CA
	ElectionMs  uint         // election timeout; 0 = etcd default (1000)
	HeartbeatMs uint         // heartbeat interval; 0 = etcd default (100)
	Logger      *slog.Logger // optional; receives harness events and in-process etcd error logs
	// EtcdBin, in Process mode, is the etcd binary to run (for example
	// CompatEtcdBinary); empty means EtcdBinary.
	EtcdBin string
	// PeerProxy routes each member's inbound peer traffic through a proxy
	// in the test process, at its advertised peer URL, so that
	// Member.IsolatePeers can cut it.
	PeerProxy bool
	// PeerTLS, with TLS, gives the peer ports their own CA and certificate
	// (as k3s and RKE2 do): members serve PeerTLS's server certificate on
	// their peer port and accept only client certificates of its CA.
	PeerTLS *TLS
	// QuotaBackendBytes is every member's --quota-backend-bytes; 0 means
	// etcd's default (2 GiB), negative turns the quota off.
	QuotaBackendBytes int64
	// MemberQuotaBackendBytes, when it names a member ("m0"), is that
	// member's --quota-backend-bytes instead of QuotaBackendBytes: a
	// cluster whose members disagree.
	MemberQuotaBackendBytes map[string]int64
	// ExtraFlags, in Process mode, are added to every member's command
	// line (--feature-gates=..., say).
	ExtraFlags []string
	// Failpoints, in Process mode, gives each member its own loopback
	// port for gofail's HTTP endpoint (GOFAIL_HTTP), for
	// Member.SetFailpoint and ClearFailpoint; EtcdBin then defaults to
	// FailpointEtcdBinary, which has the failpoints compiled in.
	Failpoints bool
}

// Timeouts used by Start, AddMember and RemoveMember.
const (
	startTimeout  = 60 * time.Second
	statusTimeout = 500 * time.Millisecond
	pollInterval  = 75 * time.Millisecond
)

// Cluster is a running etcd cluster owned by a test.
type Cluster struct {
	opts      Options
	log       *slog.Logger
	baseDir   string
	token     string
	clientTLS *tls.Config
	etcdBin   string

	mu sync.Mutex
	// rootPassword, once EnableAuth has run, is what the harness's own
	// clients authenticate with, as root.
	rootPassword string
	members      []*Member // current members, in order of creation
	all          []*Member // every member ever started, for Stop
	next         int       // index for the next member name
	stopped      bool
}

// Start starts the cluster, waits until it has a leader, and registers
// t.Cleanup to stop all members and remove their data.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Size < 0 {
		t.Fatalf("etcdtest: invalid Size %d", opts.Size)
	}
	if opts.Size == 0 {
		opts.Size = 1
	}
	if opts.ElectionMs == 0 {
		opts.ElectionMs = 1000
	}
	if opts.HeartbeatMs == 0 {
		opts.HeartbeatMs = 100
	}
	if opts.Mode != InProcess && opts.Mode != Process {
		t.Fatalf("etcdtest: invalid Mode %v", opts.Mode)
	}
	c := &Cluster{opts: opts, log: opts.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if len(opts.ExtraFlags) > 0 && opts.Mode != Process {
		t.Fatalf("etcdtest: ExtraFlags need Mode Process")
	}
	if opts.Failpoints && opts.Mode != Process {
		t.Fatalf("etcdtest: Failpoints need Mode Process (the failpoints are compiled into FailpointEtcdBinary)")
	}
	if opts.Mode == Process {
		c.etcdBin = opts.EtcdBin
		if c.etcdBin == "" && opts.Failpoints {
			c.etcdBin = FailpointEtcdBinary(t)
		}
		if c.etcdBin == "" {
			c.etcdBin = EtcdBinary(t)
		}
	}
	if opts.TLS != nil {
		cfg, err := opts.TLS.ClientTLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		c.clientTLS = cfg
	}
	sweepOnce.Do(sweepStale)
	dir, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	c.baseDir = dir
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs(t)
		}
		c.Stop()
		removeAll(t, dir)
	})

	for attempt := 1; ; attempt++ {
		err := c.bootstrap()
		if err == nil {
			break
		}
		if !isAddrInUse(err) || attempt == 4 {
			t.Fatalf("etcdtest: starting %d-member %v cluster: %v", opts.Size, opts.Mode, err)
		}
		c.log.Warn("etcdtest: a port was taken; restarting the cluster on new ports", "attempt", attempt, "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatalf("etcdtest: %d-member %v cluster: %v", opts.Size, opts.Mode, err)
	}
	c.log.Info("etcdtest: cluster ready", "size", opts.Size, "mode", opts.Mode.String(), "endpoints", c.ClientURLs())
	return c
}

// ownerFile in a cluster's base directory holds the test process's PID.
const ownerFile = "owner.pid"

var sweepOnce sync.Once

// sweepStale removes base directories left behind by test processes that
// died without running their cleanups (their etcd processes die with them).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "etcdtest-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

func removeAll(t testing.TB, dir string) {
	var err error
	for range 10 {
		if err = os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("etcdtest: removing %s: %v", dir, err)
}

func (c *Cluster) dumpLogs(t testing.TB) {
	c.mu.Lock()
	all := slices.Clone(c.all)
	c.mu.Unlock()
	for _, m := range all {
		if s := tail(m.logPath, 40); s != "" {
			t.Logf("etcdtest: last log lines of %s (%s):\n%s", m.name, m.logPath, s)
		}
	}
}

func randomToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "etcdtest-" + hex.EncodeToString(b)
}

// newMember allocates ports and paths for a member (not started).
func (c *Cluster) newMember(name string) (*Member, error) {
	scheme := "http"
	if c.opts.TLS != nil {
		scheme = "https"
	}
	n := 2
	if c.opts.Mode == InProcess {
		n++ // the client proxy's backend
	}
	if c.opts.PeerProxy {
		n++ // the peer proxy's backend
	}
	if c.opts.Failpoints {
		n++ // gofail's HTTP endpoint
	}
	var ps []int
	for range n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	m := &Member{
		c:         c,
		name:      name,
		clientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ps[0]),
		peerURL:   fmt.Sprintf("%s://127.0.0.1:%d", scheme, ps[1]),
		dataDir:   filepath.Join(c.baseDir, name+".etcd"),
		logPath:   filepath.Join(c.baseDir, name+".log"),
	}
	ps = ps[2:]
	if c.opts.Mode == InProcess {
		m.backendURL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, ps[0])
		ps = ps[1:]
	}
	if c.opts.PeerProxy {
		m.peerBackendURL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, ps[0])
		ps = ps[1:]
	}
	if c.opts.Failpoints {
		m.failpointAddr = fmt.Sprintf("127.0.0.1:%d", ps[0])
	}
	if err := os.RemoveAll(m.dataDir); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.all = append(c.all, m)
	c.mu.Unlock()
	return m, nil
}

// bootstrap starts a new cluster of opts.Size members and waits until all
// are ready. On failure every member it started is killed.
func (c *Cluster) bootstrap() error {
	c.token = randomToken()
	ms := make([]*Member, c.opts.Size)
	var ic []string
	for i := range ms {
		m, err := c.newMember(fmt.Sprintf("m%d", i))
		if err != nil {
			return err
		}
		ms[i] = m
		ic = append(ic, m.name+"="+m.peerURL)
	}
	for _, m := range ms {
		m.initialCluster = strings.Join(ic, ",")
		m.clusterState = embed.ClusterStateFlagNew
	}
	killAll := func() {
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Go(func() {
				m.Kill() //nolint:errcheck
				m.waitClosed()
			})
		}
		wg.Wait()
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			if err := m.launch(); err != nil {
				errs[i] = err
				cancel()
				return
			}
			if err := m.WaitReady(ctx); err != nil {
				errs[i] = err
				cancel()
			}
		})
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		killAll()
		return err
	}
	c.mu.Lock()
	c.members = ms
	c.next = len(ms)
	c.mu.Unlock()
	return nil
}

// firstError prefers a port-in-use error, which makes the start retryable,
// over errors that are consequences of another member's failure.
func firstError(errs []error) error {
	for _, err := range errs {
		if isAddrInUse(err) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

// Members returns the current members, in order of creation.
func (c *Cluster) Members() []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.members)
}

// Member returns the i-th current member; it panics if i is out of range.
func (c *Cluster) Member(i int) *Member {
	return c.Members()[i]
}

// ClientURLs returns the client URL of every current member, in order.
func (c *Cluster) ClientURLs() []string {
	var urls []string
	for _, m := range c.Members() {
		urls = append(urls, m.ClientURL())
	}
	return urls
}

// peerTLS is the peer ports' TLS material: Options.PeerTLS, else TLS.
func (c *Cluster) peerTLS() *TLS {
	if c.opts.PeerTLS != nil {
		return c.opts.PeerTLS
	}
	return c.opts.TLS
}

// ClientTLSConfig returns the client TLS configuration, or nil for a plain cluster.
func (c *Cluster) ClientTLSConfig() *tls.Config {
	if c.clientTLS == nil {
		return nil
	}
	return c.clientTLS.Clone()
}

// runningURLs returns the client URLs of running members other than skip,
// or of all members if none is running.
func (c *Cluster) runningURLs(skip *Member) []string {
	var urls []string
	ms := c.Members()
	for _, m := range ms {
		if m != skip && m.Running() {
			urls = append(urls, m.ClientURL())
		}
	}
	if len(urls) == 0 {
		for _, m := range ms {
			urls = append(urls, m.ClientURL())
		}
	}
	return urls
}

// newClient returns a client for the endpoints with the cluster's TLS
// configuration, a silent logger and fast reconnection.
func (c *Cluster) newClient(endpoints []string) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints: endpoints,
		Logger:    zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		})},
	}
	if c.clientTLS != nil {
		cfg.TLS = c.clientTLS.Clone()
	}
	c.mu.Lock()
	if c.rootPassword != "" {
		cfg.Username, cfg.Password = "root", c.rootPassword
		cfg.DialTimeout = 10 * time.Second // clientv3 authenticates within New
	}
	c.mu.Unlock()
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: client for %v: %w", endpoints, err)
	}
	return cli, nil
}

// Client returns a client over all running members (with TLS if
// configured), closed at t's cleanup.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := c.newClient(c.runningURLs(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

type statusResult struct {
	m    *Member
	resp *clientv3.StatusResponse
	err  error
}

// statusAll asks every running, non-frozen member for its status in parallel.
func (c *Cluster) statusAll(ctx context.Context) []statusResult {
	var res []statusResult
	for _, m := range c.Members() {
		if m.Running() && !m.Frozen() {
			res = append(res, statusResult{m: m})
		}
	}
	var wg sync.WaitGroup
	for i := range res {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			res[i].resp, res[i].err = res[i].m.Status(sctx)
		})
	}
	wg.Wait()
	return res
}

func memberIn(res []statusResult, id uint64) *Member {
	for _, r := range res {
		if r.m.ID() == id {
			return r.m
		}
	}
	return nil
}

// WaitLeader waits until all running, non-frozen members agree on a leader
// that is itself one of them, and returns it.
func (c *Cluster) WaitLeader(ctx context.Context) (*Member, error) {
	var last error
	for {
		res := c.statusAll(ctx)
		last = agreedLeader(res)
		if last == nil {
			return memberIn(res, res[0].resp.Leader), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("etcdtest: members do not agree on a leader: %w (last: %v)", ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// agreedLeader returns nil if every result reports the same leader, which is
// one of the answering members.
func agreedLeader(res []statusResult) error {
	if len(res) == 0 {
		return errors.New("no running member")
	}
	var lead uint64
	for _, r := range res {
		if r.err != nil {
			return fmt.Errorf("status of %s: %w", r.m.name, r.err)
		}
		if r.resp.Leader == 0 {
			return fmt.Errorf("%s has no leader", r.m.name)
		}
		if lead != 0 && r.resp.Leader != lead {
			return fmt.Errorf("%s sees leader %x, another member sees %x", r.m.name, r.resp.Leader, lead)
		}
		lead = r.resp.Leader
	}
	if memberIn(res, lead) == nil {
		return fmt.Errorf("leader %x is not a running, non-frozen member", lead)
	}
	return nil
}

// Leader returns the current leader as seen by the running, non-frozen
// members, or an error if there is none.
func (c *Cluster) Leader(ctx context.Context) (*Member, error) {
	res := c.statusAll(ctx)
	var best *Member
	var bestTerm uint64
	var errs []error
	// Prefer a member that says it is the leader, in the highest term.
	for _, r := range res {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.m.name, r.err))
			continue
		}
		if r.resp.Leader != 0 && r.resp.Leader == r.resp.Header.MemberId && (best == nil || r.resp.RaftTerm > bestTerm) {
			best, bestTerm = r.m, r.resp.RaftTerm
		}
	}
	if best != nil {
		return best, nil
	}
	// Else a leader reported by others (it may not have answered in time).
	for _, r := range res {
		if r.err == nil && r.resp.Leader != 0 {
			if m := memberIn(res, r.resp.Leader); m != nil {
				return m, nil
			}
		}
	}
	if len(res) == 0 {
		return nil, errors.New("etcdtest: no leader: no running member")
	}
	return nil, fmt.Errorf("etcdtest: no leader: %w", errors.Join(errs...))
}

// EnableAuth turns etcd's authentication on with a root user of the given
// password; the harness's own clients authenticate as root from then on.
// Other users are the test's to add, with the client from Client.
func (c *Cluster) EnableAuth(t testing.TB, rootPassword string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cli, err := c.newClient(c.runningURLs(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", rootPassword); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcdtest: enabling auth: %v", err)
		}
	}
	c.mu.Lock()
	c.rootPassword = rootPassword
	members := append([]*Member(nil), c.members...)
	c.mu.Unlock()
	// The members' status clients hold no token: replace them.
	for _, m := range members {
		if !m.Running() {
			continue
		}
		sc, err := c.newClient([]string{m.clientURL})
		if err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		if m.statusCli != nil {
			m.statusCli.Close()
		}
		m.statusCli = sc
		m.mu.Unlock()
	}
}

// AddMember adds a member via the MemberAdd API, starts it with
// initial-cluster-state=existing, and returns once it serves clients.
func (c *Cluster) AddMember(t testing.TB) *Member {
	t.Helper()
	m, err := c.addMember(false)
	if err != nil {
		t.Fatalf("etcdtest: AddMember: %v", err)
	}
	return m
}

// AddLearner adds a learner via the MemberAddAsLearner API, starts it,
// and returns once it serves clients.
func (c *Cluster) AddLearner(t testing.TB) *Member {
	t.Helper()
	m, err := c.addMember(true)
	if err != nil {
		t.Fatalf("etcdtest: AddLearner: %v", err)
	}
	return m
}

func (c *Cluster) addMember(learner bool) (*Member, error) {
	c.mu.Lock()
	name := fmt.Sprintf("m%d", c.next)
	c.next++
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
	defer cancel()
	cli, err := c.newClient(c.runningURLs(nil))
	if err != nil {
		return nil, err
	}
	defer cli.Close()

	for attempt := 1; ; attempt++ {
		m, err := c.newMember(name)
		if err != nil {
			return nil, err
		}
		var resp *clientv3.MemberAddResponse
		err = retry(ctx, func(ctx context.Context) error {
			if learner {
				resp, err = cli.MemberAddAsLearner(ctx, []string{m.peerURL})
			} else {
				resp, err = cli.MemberAdd(ctx, []string{m.peerURL})
			}
			if errors.Is(err, rpctypes.ErrPeerURLExist) {
				// An earlier try succeeded but its answer was lost.
				return findAdded(ctx, cli, m.peerURL, &resp)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("MemberAdd %s: %w", m.peerURL, err)
		}
		id := resp.Member.ID
		var ic []string
		for _, mm := range resp.Members {
			n := mm.Name
			if mm.ID == id {
				n = name
			}
			for _, u := range mm.PeerURLs {
				ic = append(ic, n+"="+u)
			}
		}
		m.mu.Lock()
		m.id = id
		m.initialCluster = strings.Join(ic, ",")
		m.clusterState = embed.ClusterStateFlagExisting
		m.mu.Unlock()

		err = m.launch()
		if err == nil {
			err = m.WaitReady(ctx)
		}
		if err == nil {
			c.mu.Lock()
			c.members = append(c.members, m)
			c.mu.Unlock()
			c.log.Info("etcdtest: member added", "member", name, "id", fmt.Sprintf("%x", id))
			return m, nil
		}
		m.Kill() //nolint:errcheck
		m.waitClosed()
		// Undo the MemberAdd so that the cluster is as before.
		rerr := retry(ctx, func(ctx context.Context) error {
			_, err := cli.MemberRemove(ctx, id)
			if errors.Is(err, rpctypes.ErrMemberNotFound) {
				return nil
			}
			return err
		})
		if !isAddrInUse(err) || attempt == 4 || rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		c.log.Warn("etcdtest: a port was taken; adding the member on new ports", "member", name, "err", err)
	}
}

// findAdded fills *resp from the member list for a member whose MemberAdd
// answer was lost.
func findAdded(ctx context.Context, cli *clientv3.Client, peerURL string, resp **clientv3.MemberAddResponse) error {
	l, err := cli.MemberList(ctx)
	if err != nil {
		return err
	}
	for _, mm := range l.Members {
		if slices.Contains(mm.PeerURLs, peerURL) {
			*resp = &clientv3.MemberAddResponse{Header: l.Header, Member: mm, Members: l.Members}
			return nil
		}
	}
	return fmt.Errorf("peer URL %s exists but is in no member", peerURL)
}

// retry calls f with a short per-call timeout until it succeeds or ctx ends.
// Membership changes are refused for a few seconds after a member starts
// (strict reconfig check), hence the retries.
func retry(ctx context.Context, f func(context.Context) error) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// RemoveMember removes m via the MemberRemove API, then stops it.
func (c *Cluster) RemoveMember(t testing.TB, m *Member) {
	t.Helper()
	if err := c.removeMember(m); err != nil {
		t.Fatalf("etcdtest: RemoveMember %s: %v", m.name, err)
	}
}

func (c *Cluster) removeMember(m *Member) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cli, err := c.newClient(c.runningURLs(m))
	if err != nil {
		return err
	}
	defer cli.Close()
	id := m.ID()
	err = retry(ctx, func(ctx context.Context) error {
		_, err := cli.MemberRemove(ctx, id)
		if errors.Is(err, rpctypes.ErrMemberNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.removed = true
	m.mu.Unlock()
	kerr := m.Kill()
	c.mu.Lock()
	c.members = slices.DeleteFunc(c.members, func(x *Member) bool { return x == m })
	c.mu.Unlock()
	c.log.Info("etcdtest: member removed", "member", m.name, "id", fmt.Sprintf("%x", id))
	return kerr
}

// Stop kills every member (idempotent). Data is removed at t's cleanup.
func (c *Cluster) Stop() {
	c.mu.Lock()
	all := slices.Clone(c.all)
	c.stopped = true
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range all {
		wg.Go(func() {
			m.Kill() //nolint:errcheck
			m.waitClosed()
		})
	}
	wg.Wait()
}
