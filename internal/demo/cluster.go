// Package demo runs a small etcd cluster inside the process, on loopback,
// for `etcdpulse demo`.
package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
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

// StartCluster starts size members with their data under dir and returns
// once every member serves clients.
func StartCluster(ctx context.Context, dir string, size int) (*Cluster, error) {
	c := &Cluster{dir: dir}
	var initial []string
	for i := range size {
		client, err := freePort()
		if err != nil {
			return nil, err
		}
		peer, err := freePort()
		if err != nil {
			return nil, err
		}
		metrics, err := freePort()
		if err != nil {
			return nil, err
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
	errc := make(chan error, size)
	for _, m := range c.Members {
		go func() { errc <- c.start(ctx, m, "new") }()
	}
	var errs []error
	for range size {
		errs = append(errs, <-errc)
	}
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
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

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
