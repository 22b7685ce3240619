package probes

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"
)

// ProbeNetwork is the network probe's name.
const ProbeNetwork = "network"

// The network probe's phases: the values of its `phase` label.
const (
	// PhaseConnectPeer is a TCP connect to the member's peer URL; nothing
	// is sent on it: an agent must not speak raft.
	PhaseConnectPeer = "connect_peer"
	// PhaseConnectClient is a TCP connect to the member's client URL.
	PhaseConnectClient = "connect_client"
	// PhaseTLSHandshake is a TLS handshake on that fresh client
	// connection, when the client URL is https.
	PhaseTLSHandshake = "tls_handshake"
	// PhaseRequest is a serializable read on the member's kept-alive
	// client connection.
	PhaseRequest = "request"
)

// NetworkPhases lists the phases in the order they run.
var NetworkPhases = []string{PhaseConnectPeer, PhaseConnectClient, PhaseTLSHandshake, PhaseRequest}

// NetworkProbe measures the network from the agent to another member, one
// phase at a time, so that a slow TCP path, a slow TLS setup and a slow
// server are told apart (a kept-alive connection hides the first two).
// Each phase has its own timeout: a firewalled peer port does not keep the
// client port from being measured.
type NetworkProbe struct {
	// Targets lets the probe forget peers that left the member list.
	Targets *Targets
	// TLS is the agent's client TLS configuration, used for the handshake
	// phase; nil means Go's defaults (system roots).
	TLS *tls.Config
	// Timeout bounds each phase.
	Timeout time.Duration
	// Key is read serializably, count only, in the request phase.
	Key string
	// RTT observes the time of each successful phase, by peer and phase.
	RTT *prometheus.HistogramVec
	// Up is set after each attempt of a phase: 1 succeeded, 0 failed.
	Up *prometheus.GaugeVec

	mu    sync.Mutex
	peers map[string]bool // peer labels that have series
	// lastConnect is each peer's last peer-port connect time, nil while
	// its last attempt failed.
	lastConnect map[string]*time.Duration
}

// SlowestPeerConnect returns the slowest of the peers' last TCP connects to
// their peer ports, the figure that explains a leader change; ok is false
// before any connect succeeded.
func (p *NetworkProbe) SlowestPeerConnect() (seconds float64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.lastConnect {
		if d != nil {
			seconds, ok = max(seconds, d.Seconds()), true
		}
	}
	return seconds, ok
}

func (p *NetworkProbe) setConnect(peer string, d *time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastConnect == nil {
		p.lastConnect = map[string]*time.Duration{}
	}
	p.lastConnect[peer] = d
}

// Name implements Probe.
func (p *NetworkProbe) Name() string { return ProbeNetwork }

// Run implements Probe. It returns an error naming every failed phase.
func (p *NetworkProbe) Run(ctx context.Context, t *Target) error {
	p.forgetGone()
	peer := t.Label()
	p.track(peer)
	var errs NetworkError
	record := func(phase, addr string, d time.Duration, err error, observe bool) {
		if err != nil {
			p.Up.WithLabelValues(peer, phase).Set(0)
			errs = append(errs, &PhaseError{Phase: phase, Addr: addr, Err: err})
			return
		}
		p.Up.WithLabelValues(peer, phase).Set(1)
		if observe {
			p.RTT.WithLabelValues(peer, phase).Observe(d.Seconds())
		}
	}

	if m := t.Member(); len(m.PeerURLs) > 0 {
		addr, err := hostPort(m.PeerURLs[0])
		var d time.Duration
		if err == nil {
			var c net.Conn
			if c, d, err = p.connect(ctx, addr); err == nil {
				c.Close()
			}
		}
		record(PhaseConnectPeer, addr, d, err, true)
		if err != nil {
			p.setConnect(peer, nil)
		} else {
			p.setConnect(peer, &d)
		}
	}

	if u, err := url.Parse(t.Endpoint); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		addr, _ := hostPort(t.Endpoint)
		c, d, err := p.connect(ctx, addr)
		record(PhaseConnectClient, addr, d, err, true)
		if u.Scheme == "https" {
			if err != nil {
				// No connection, no handshake: the phase failed too,
				// for the reason already given.
				p.Up.WithLabelValues(peer, PhaseTLSHandshake).Set(0)
			} else {
				d, err := p.handshake(ctx, c, u.Hostname())
				record(PhaseTLSHandshake, addr, d, err, true)
			}
		}
		if c != nil {
			c.Close()
		}
	}

	if t.Client != nil {
		d, warm, err := p.request(ctx, t)
		// A call that had to (re)connect first measures the dial, not the
		// request: it counts for up but is not observed.
		record(PhaseRequest, t.Endpoint, d, err, warm)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// connect resolves addr (untimed), then times a TCP connect to it.
func (p *NetworkProbe) connect(ctx context.Context, addr string) (net.Conn, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, err
	}
	// Name resolution is not network latency to the peer: do it apart.
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return nil, 0, p.flatten(ctx, err)
	}
	d := net.Dialer{KeepAlive: -1}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ips[0], port))
	elapsed := time.Since(start)
	if err != nil {
		return nil, 0, p.flatten(ctx, err)
	}
	return c, elapsed, nil
}

// handshake times a TLS handshake on c with the agent's client TLS
// configuration; c is closed by the caller.
func (p *NetworkProbe) handshake(ctx context.Context, c net.Conn, host string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.TLS != nil {
		cfg = p.TLS.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	// What etcd's gRPC client offers, so the handshake is the one it makes.
	cfg.NextProtos = []string{"h2"}
	tc := tls.Client(c, cfg)
	start := time.Now()
	err := tc.HandshakeContext(ctx)
	elapsed := time.Since(start)
	if err != nil {
		return 0, p.flatten(ctx, err)
	}
	return elapsed, nil
}

// request times a serializable, count-only read of the probe key on the
// target's pinned connection: answered from the member's own store, with
// neither the leader nor a quorum involved, it is the cheapest call that
// crosses etcd's gRPC stack. warm says the connection was ready before.
func (p *NetworkProbe) request(ctx context.Context, t *Target) (time.Duration, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	warm := t.Client.ActiveConnection().GetState() == connectivity.Ready
	start := time.Now()
	_, err := t.Client.KV.Get(ctx, p.Key, clientv3.WithSerializable(), clientv3.WithCountOnly())
	elapsed := time.Since(start)
	// Like the read probe: a refusal for lack of permission is an answer.
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		return 0, false, p.flatten(ctx, err)
	}
	return elapsed, warm, nil
}

// flatten turns a phase's own timeout into a plain message. Wrapped, it
// would make the runner report the whole run as timed out, hiding which
// phase failed.
func (p *NetworkProbe) flatten(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s", p.Timeout)
	}
	return err
}

func (p *NetworkProbe) track(peer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.peers == nil {
		p.peers = map[string]bool{}
	}
	p.peers[peer] = true
}

// forgetGone deletes the series of peers no longer in the member list (or
// renamed: a learner's hex ID becomes its name once it starts).
func (p *NetworkProbe) forgetGone() {
	if p.Targets == nil {
		return
	}
	members, known := p.Targets.Known()
	if !known {
		return
	}
	current := map[string]bool{}
	for _, m := range members {
		current[m.Label()] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for peer := range p.peers {
		if !current[peer] {
			delete(p.peers, peer)
			delete(p.lastConnect, peer)
			p.RTT.DeletePartialMatch(prometheus.Labels{"peer": peer})
			p.Up.DeletePartialMatch(prometheus.Labels{"peer": peer})
		}
	}
}

// hostPort returns the host:port of a URL, with the scheme's default port
// when none is given.
func hostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host", raw)
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// PhaseError is one failed phase of the network probe.
type PhaseError struct {
	Phase string
	// Addr is the host:port or URL the phase went to.
	Addr string
	Err  error
}

func (e *PhaseError) Error() string {
	if e.Addr == "" {
		return e.Phase + ": " + e.Err.Error()
	}
	return e.Phase + " " + e.Addr + ": " + e.Err.Error()
}

func (e *PhaseError) Unwrap() error { return e.Err }

// NetworkError lists the failed phases of one network probe run.
type NetworkError []*PhaseError

func (e NetworkError) Error() string {
	parts := make([]string, len(e))
	for i, pe := range e {
		parts[i] = pe.Error()
	}
	return "network: " + strings.Join(parts, "; ")
}

// Unwrap returns the phase errors.
func (e NetworkError) Unwrap() []error {
	out := make([]error, len(e))
	for i, pe := range e {
		out[i] = pe
	}
	return out
}

// Phases returns the names of the failed phases.
func (e NetworkError) Phases() []string {
	out := make([]string, len(e))
	for i, pe := range e {
		out[i] = pe.Phase
	}
	return out
}
