package collectors

import "github.com/prometheus/client_golang/prometheus"

// The network probe's rows, made by NewNetworkMetrics.
var (
	NetworkPeerRTT = Metric{"etcdpulse_network_peer_rtt_seconds", Histogram,
		"Time of one network phase from this agent to another member, by phase: connect_peer (TCP connect to its peer URL), connect_client (TCP connect to its client URL), tls_handshake (TLS handshake on that fresh client connection, https only), request (a serializable read of the probe key on the kept-alive client connection).", []string{"peer", "phase"}}
	NetworkPeerUp = Metric{"etcdpulse_network_peer_up", Gauge,
		"1 when the last attempt of the phase to the peer succeeded, 0 when it failed (refused, reset or timed out).", []string{"peer", "phase"}}
)

// NetworkMetrics lists these rows in documentation order.
var NetworkMetrics = []Metric{NetworkPeerRTT, NetworkPeerUp}

// NewNetworkMetrics returns what the network probe fills: the time of each
// phase and whether it last succeeded, by peer and phase. The buckets are
// etcd's own peer RTT buckets: 100 µs (below a loopback connect) to 3.3 s.
func NewNetworkMetrics() (rtt *prometheus.HistogramVec, up *prometheus.GaugeVec) {
	rtt = NewHistogramVec(NetworkPeerRTT, prometheus.ExponentialBuckets(0.0001, 2, 16))
	up = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: NetworkPeerUp.Name, Help: NetworkPeerUp.Help}, NetworkPeerUp.Labels)
	return rtt, up
}
