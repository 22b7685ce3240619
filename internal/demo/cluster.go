// Package demo runs a small etcd cluster inside the process, on loopback,
// for `etcdpulse demo`.
//
// It is internal to etcdpulse: not public API.
package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Member is one embedded etcd member.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	// MetricsURL is the member's own /metrics (etcd's
	// --listen-metrics-urls). Members in one process share etcd's
	// process-wide metrics, so every member's URL serves the same series.
	MetricsURL string
	// Dir is the member's data directory.
	Dir string
	// ProbeDir is a directory beside Dir, on its filesystem, for the
	// member's agent's fsync probe: one per member, as on separate nodes.
	ProbeDir string

	mu   sync.Mutex
	etcd *embed.Etcd
}

// Cluster is an embedded etcd cluster.
type Cluster struct {
	Members []*Member
	dir     string
	initial string
}

// portAttempts bounds how many times StartCluster starts the cluster
// afresh, on new ports, because a port was taken.
const portAttempts = 4

// StartCluster starts size members with their data under dir and returns
// once every member serves clients.
//
// The members' ports are found free, then handed to etcd, which binds them
// itself (embed takes URLs, not listeners): another process may take one in
// between. The cluster is then started again on new ports.
func StartCluster(ctx context.Context, dir string, size int) (*Cluster, error) {
	return startCluster(ctx, dir, size, freePort)
}

// startCluster is StartCluster with the source of free ports as a
// parameter, for tests to hand out a taken one.
func startCluster(ctx context.Context, dir string, size int, port func() (string, error)) (*Cluster, error) {
	for attempt := 1; ; attempt++ {
		c, err := tryCluster(ctx, dir, size, port)
		if err == nil {
			return c, nil
		}
		if !isAddrInUse(err) || attempt == portAttempts {
			return nil, err
		}
		// The next try starts a new cluster: what this one's members wrote
		// would make them restart as members of this one, on other ports.
		for _, m := range c.Members {
			if rerr := os.RemoveAll(m.Dir); rerr != nil {
				return nil, errors.Join(err, rerr)
			}
		}
	}
}

// tryCluster starts the cluster once. On failure it returns the stopped
// cluster with the members it set up, and the error.
func tryCluster(ctx context.Context, dir string, size int, port func() (string, error)) (*Cluster, error) {
	c := &Cluster{dir: dir}
	var initial []string
	for i := range size {
		client, err := port()
		if err != nil {
			return c, err
		}
		peer, err := port()
		if err != nil {
			return c, err
		}
		metrics, err := port()
		if err != nil {
			return c, err
		}
		name := fmt.Sprintf("member-%d", i)
		m := &Member{
			Name:       name,
			ClientURL:  "http://" + client,
			PeerURL:    "http://" + peer,
			MetricsURL: "http://" + metrics + "/metrics",
			Dir:        filepath.Join(dir, name),
			ProbeDir:   filepath.Join(dir, name+".etcdpulse-probe"),
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	c.initial = strings.Join(initial, ",")
	startCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, size)
	for _, m := range c.Members {
		go func() {
			err := c.start(startCtx, m, "new")
			if isAddrInUse(err) {
				// The others may wait for a quorum that needs this member.
				cancel()
			}
			errc <- err
		}()
	}
	var errs []error
	for range size {
		errs = append(errs, <-errc)
	}
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return c, err
	}
	return c, nil
}

// isAddrInUse reports whether err says a port was taken. etcd's errors do
// not always wrap the errno, hence the message as well.
func isAddrInUse(err error) bool {
	return err != nil && (errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use"))
}

func (c *Cluster) start(ctx context.Context, m *Member, state string) error {
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.Dir
	cu, _ := url.Parse(m.ClientURL)
	pu, _ := url.Parse(m.PeerURL)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	mu, _ := url.Parse(m.MetricsURL)
	mu.Path = ""
	cfg.ListenMetricsUrls = []url.URL{*mu}
	cfg.InitialCluster = c.initial
	cfg.InitialClusterToken = "etcdpulse-demo"
	cfg.ClusterState = state
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(c.dir, m.Name+".log")}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("start %s: %w", m.Name, err)
	case <-ctx.Done():
		e.Close()
		return ctx.Err()
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("start %s: not ready after 60s", m.Name)
	}
	m.mu.Lock()
	m.etcd = e
	m.mu.Unlock()
	return nil
}

// Running reports whether the member is up.
// Etcd is the member's embedded server, nil while it is killed.
func (m *Member) Etcd() *embed.Etcd {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd
}

// Running reports whether the member's server runs.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd != nil
}

// ID returns the member's ID, 0 while it is stopped.
func (m *Member) ID() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd == nil {
		return 0
	}
	return uint64(m.etcd.Server.MemberID())
}

// IsLeader reports whether the member is running and leads.
func (m *Member) IsLeader() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd != nil && m.etcd.Server.Leader() == m.etcd.Server.MemberID()
}

// Kill stops the member abruptly: raft stops at once, without the leadership
// transfer a graceful stop would do, as when a process dies.
func (m *Member) Kill() {
	m.mu.Lock()
	e := m.etcd
	m.etcd = nil
	m.mu.Unlock()
	if e == nil {
		return
	}
	e.Server.HardStop()
	e.Close()
}

// Restart starts a killed member again on its data.
func (c *Cluster) Restart(ctx context.Context, m *Member) error {
	if m.Running() {
		return nil
	}
	return c.start(ctx, m, "existing")
}

// Close stops every member.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, m := range c.Members {
		wg.Add(1)
		go func() { defer wg.Done(); m.Kill() }()
	}
	wg.Wait()
}

// ClientURLs lists every member's client URL.
func (c *Cluster) ClientURLs() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// freePort returns a loopback host:port that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
