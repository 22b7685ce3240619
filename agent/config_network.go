package agent

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

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

// validate reports problems through bad(field, flag, format, args...).
func (n NetworkConfig) validate(bad func(field, flag, format string, args ...any)) {
	if !n.Enabled {
		return
	}
	if n.Interval <= 0 {
		bad("network.interval", "", "must be positive, got %s", n.Interval)
	}
	switch {
	case n.Timeout <= 0:
		bad("network.timeout", "", "must be positive, got %s", n.Timeout)
	case n.Interval > 0 && n.Timeout > n.Interval:
		bad("network.timeout", "", "must not exceed network.interval (%s), got %s", n.Interval, n.Timeout)
	}
}

// addNetwork wires the network capability into a new agent: the probe,
// run against every member but the local one (whose peer port, seen from
// beside it, would measure loopback, not the network), and its metrics.
func addNetwork(w *wiring) error {
	n := w.cfg.Network
	if !n.Enabled {
		return nil
	}
	tlsCfg := w.tls
	rtt := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: collectors.NetworkPeerRTT.Name,
		Help: collectors.NetworkPeerRTT.Help,
		// etcd's own peer RTT buckets: 100 µs (below a loopback connect)
		// to 3.3 s.
		Buckets:                         prometheus.ExponentialBuckets(0.0001, 2, 16),
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  100,
		NativeHistogramMinResetDuration: time.Hour,
	}, collectors.NetworkPeerRTT.Labels)
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: collectors.NetworkPeerUp.Name,
		Help: collectors.NetworkPeerUp.Help,
	}, collectors.NetworkPeerUp.Labels)
	for _, c := range []prometheus.Collector{rtt, up} {
		if err := w.registry.Register(c); err != nil {
			return fmt.Errorf("network: register metrics: %w", err)
		}
	}
	timeout := time.Duration(n.Timeout)
	*w.probes = append(*w.probes, probes.Scheduled{
		Probe: &probes.NetworkProbe{
			Targets: w.targets,
			TLS:     tlsCfg,
			Timeout: timeout,
			Key:     w.cfg.Etcd.KeyPrefix + "health",
			RTT:     rtt,
			Up:      up,
		},
		Scope: probes.PeerMembers,
		// Phases run one after another, each within its own timeout.
		Schedule: probes.Schedule{Interval: time.Duration(n.Interval), Timeout: networkPhases * timeout},
	})
	return nil
}
