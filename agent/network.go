package agent

import (
	"context"
	"time"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// network times the network from the agent to every other member, one
// phase at a time: TCP connect to its peer and client URLs, the TLS
// handshake, and a request on the kept-alive connection.
var network = capability{
	name:  "network",
	title: "Network",
	settings: []Setting{
		setting("network.enabled", "Run the network probe.", func(c *Config) any { return &c.Network.Enabled }),
		setting("network.interval", "Time between two runs against a peer.", func(c *Config) any { return &c.Network.Interval }),
		setting("network.timeout", "Deadline of each phase; a run takes at most four.", func(c *Config) any { return &c.Network.Timeout }),
	},
	metrics:  collectors.NetworkMetrics,
	defaults: func(c *Config) { c.Network = defaultNetworkConfig() },
	validate: func(c *Config, bad badFunc) { c.Network.validate(bad) },
	wire:     wireNetwork,
}

// NetworkConfig configures the peer network probe: TCP connect to each
// other member's peer and client URLs, TLS handshake, and a request on the
// kept-alive connection, each timed apart.
type NetworkConfig struct {
	// Enabled turns the network probe on.
	Enabled bool `yaml:"enabled"`
	// Interval is the time between two runs against a peer.
	Interval Duration `yaml:"interval"`
	// Timeout bounds each phase; a run takes at most four of them.
	Timeout Duration `yaml:"timeout"`
}

// Network defaults; docs/configuration.md says why.
const (
	// DefaultNetworkInterval is close to etcd's own peer prober (every
	// 4 s). Each run opens one or two connections on each peer's
	// listeners (two TCP accepts, a TLS handshake with https): cheap, but
	// paid by every peer for every agent, so not every second.
	DefaultNetworkInterval = 5 * time.Second
	// DefaultNetworkTimeout is etcd's default election timeout: a connect
	// that takes longer costs a member its leadership or its vote, and a
	// SYN lost once (retransmitted after 1 s) shows as a failure. Four
	// phases at most fit within one interval, so a black-holed peer does
	// not make runs overlap.
	DefaultNetworkTimeout = time.Second
)

// networkPhases is how many timed phases a run has at most.
const networkPhases = 4

func defaultNetworkConfig() NetworkConfig {
	return NetworkConfig{
		Enabled:  true,
		Interval: Duration(DefaultNetworkInterval),
		Timeout:  Duration(DefaultNetworkTimeout),
	}
}

// validate reports problems through bad.
func (n NetworkConfig) validate(bad badFunc) {
	if !n.Enabled {
		return
	}
	if n.Interval <= 0 {
		bad("network.interval", "must be positive, got %s", n.Interval)
	}
	switch {
	case n.Timeout <= 0:
		bad("network.timeout", "must be positive, got %s", n.Timeout)
	case n.Interval > 0 && n.Timeout > n.Interval:
		bad("network.timeout", "must not exceed network.interval (%s), got %s", n.Interval, n.Timeout)
	}
}

// wireNetwork adds the probe, run against every member but the local one
// (whose peer port, seen from beside it, would measure loopback, not the
// network), and its metrics.
func wireNetwork(w *wiring) error {
	n := w.cfg.Network
	if !n.Enabled {
		return nil
	}
	rtt, up := collectors.NewNetworkMetrics()
	w.collect(rtt, up)
	timeout := time.Duration(n.Timeout)
	p := &probes.NetworkProbe{
		Targets: w.targets,
		TLS:     w.tls,
		Timeout: timeout,
		Key:     w.cfg.Etcd.KeyPrefix + "health",
		RTT:     rtt,
		Up:      up,
	}
	// Phases run one after another, each within its own timeout.
	w.probe(p, probes.PeerMembers, time.Duration(n.Interval), networkPhases*timeout)
	w.figure("etcdpulse.network.peer_connect_seconds", p.SlowestPeerConnect)
	w.check(func(_ context.Context, in checkInput) []Finding {
		return outcomeLines(in.view, "peer_network", probes.ProbeNetwork, Warn, "EtcdPeerUnreachable", "the peer port of %s answered in %s")
	})
	w.peerConnect = p.SlowestPeerConnect
	return nil
}
