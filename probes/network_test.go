package probes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/etcdpulse/etcdpulse/internal/delayproxy"
	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// netFixture is a network probe aimed at a real etcd member whose peer and
// client ports are seen through delay proxies, as another member's would be.
type netFixture struct {
	probe          *NetworkProbe
	targets        *Targets
	target         *Target
	peer, client   *delayproxy.Proxy
	lastCount      map[string]uint64
	lastSumSeconds map[string]float64
}

func newNetFixture(t *testing.T, opts etcdtest.Options) *netFixture {
	t.Helper()
	c := etcdtest.Start(t, opts)
	m := c.Member(0)
	proxy := func(rawURL string) *delayproxy.Proxy {
		u, err := url.Parse(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		p, err := delayproxy.New(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	f := &netFixture{peer: proxy(m.PeerURL()), client: proxy(m.ClientURL()), lastCount: map[string]uint64{}, lastSumSeconds: map[string]float64{}}
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	tlsCfg := c.ClientTLSConfig()
	local := "http://127.0.0.1:1" // the agent's own member; never dialled here
	ts, err := NewTargets([]string{local}, ClientConfig{TLS: tlsCfg, DialTimeout: 2 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	ts.Update([]Member{
		{ID: 1, Name: "local", ClientURLs: []string{local}},
		{ID: m.ID(), Name: "m0", ClientURLs: []string{f.client.URL(scheme)}, PeerURLs: []string{f.peer.URL(scheme)}},
	})
	for _, tg := range ts.All() {
		if !tg.Local {
			f.target = tg
		}
	}
	f.targets = ts
	f.probe = &NetworkProbe{
		Targets: ts,
		TLS:     tlsCfg,
		Timeout: time.Second,
		Key:     "/etcdpulse/health",
		RTT:     prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rtt", Help: "h", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"peer", "phase"}),
		Up:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "up", Help: "h"}, []string{"peer", "phase"}),
	}
	return f
}

func (f *netFixture) run() error {
	return f.probe.Run(context.Background(), f.target)
}

// waitOK runs the probe until a run succeeds with every given phase
// observed at least once (the first request on a new connection is not).
func (f *netFixture) waitOK(t *testing.T, phases ...string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "the network probe succeeding", func() error {
		if err := f.run(); err != nil {
			return err
		}
		if i := slices.IndexFunc(phases, func(p string) bool { return f.count(p) == 0 }); i >= 0 {
			return fmt.Errorf("no %s observed yet", phases[i])
		}
		return nil
	})
	f.mark(phases...)
}

func (f *netFixture) histogram(phase string) *dto.Histogram {
	var m dto.Metric
	if err := f.probe.RTT.WithLabelValues("m0", phase).(prometheus.Histogram).Write(&m); err != nil {
		panic(err)
	}
	return m.Histogram
}

func (f *netFixture) count(phase string) uint64 { return f.histogram(phase).GetSampleCount() }

// mark remembers the phases' histograms, for since.
func (f *netFixture) mark(phases ...string) {
	for _, p := range phases {
		h := f.histogram(p)
		f.lastCount[p], f.lastSumSeconds[p] = h.GetSampleCount(), h.GetSampleSum()
	}
}

// since returns the one sample observed for phase since mark.
func (f *netFixture) since(t *testing.T, phase string) time.Duration {
	t.Helper()
	h := f.histogram(phase)
	if n := h.GetSampleCount() - f.lastCount[phase]; n != 1 {
		t.Fatalf("%s: %d samples observed since the last run, want 1", phase, n)
	}
	d := time.Duration((h.GetSampleSum() - f.lastSumSeconds[phase]) * float64(time.Second))
	f.mark(phase)
	t.Logf("%s: %v", phase, d)
	return d
}

func (f *netFixture) up(phase string) float64 {
	return testutil.ToFloat64(f.probe.Up.WithLabelValues("m0", phase))
}

func phasesOf(err error) []string {
	var ne NetworkError
	if !errors.As(err, &ne) {
		return nil
	}
	return ne.Phases()
}

// The phases against a real member through delay proxies: added latency
// shows in the phase it delays, dropped connections fail the phases that
// need them (named in the error, up 0), and the probe recovers.
func TestNetworkProbePhases(t *testing.T) {
	f := newNetFixture(t, etcdtest.Options{Mode: etcdtest.InProcess})
	plain := []string{PhaseConnectPeer, PhaseConnectClient, PhaseRequest}
	f.waitOK(t, plain...)
	for _, p := range plain {
		if f.up(p) != 1 {
			t.Errorf("peer_up{phase=%q} = %v, want 1", p, f.up(p))
		}
	}
	if n := testutil.CollectAndCount(f.probe.Up); n != len(plain) {
		t.Errorf("%d peer_up series, want %d (no tls_handshake over http)", n, len(plain))
	}

	t.Run("request delay", func(t *testing.T) {
		f.client.SetDelay(200 * time.Millisecond)
		defer f.client.SetDelay(0)
		if err := f.run(); err != nil {
			t.Fatal(err)
		}
		if d := f.since(t, PhaseRequest); d < 200*time.Millisecond {
			t.Errorf("request through a 200ms delay took %v", d)
		}
		f.mark(plain...)
	})

	t.Run("connect delay", func(t *testing.T) {
		// Connects started while the peer port's accept queue is full
		// complete after a SYN retransmission once it drains.
		f.probe.Timeout = 5 * time.Second
		defer func() { f.probe.Timeout = time.Second }()
		if err := f.peer.SetMode(delayproxy.Blackhole); err != nil {
			t.Fatal(err)
		}
		go func() {
			// The sleep is the black hole's length, which the connect
			// must be seen to wait out.
			time.Sleep(200 * time.Millisecond)
			f.peer.SetMode(delayproxy.Forward) //nolint:errcheck
		}()
		if err := f.run(); err != nil {
			t.Fatal(err)
		}
		if d := f.since(t, PhaseConnectPeer); d < 200*time.Millisecond {
			t.Errorf("connect_peer through a 200ms black hole took %v", d)
		}
		f.mark(plain...)
	})

	t.Run("refused", func(t *testing.T) {
		for _, p := range []*delayproxy.Proxy{f.peer, f.client} {
			if err := p.SetMode(delayproxy.Refuse); err != nil {
				t.Fatal(err)
			}
		}
		err := f.run()
		if got := phasesOf(err); !slices.Equal(got, plain) {
			t.Fatalf("failed phases = %v (%v), want %v", got, err, plain)
		}
		if !strings.HasPrefix(err.Error(), "network: connect_peer "+f.peer.Addr()) {
			t.Errorf("error %q does not start with the probe, phase and address", err)
		}
		for _, p := range plain {
			if f.up(p) != 0 {
				t.Errorf("peer_up{phase=%q} = %v with the member unreachable, want 0", p, f.up(p))
			}
		}
		f.mark(plain...)
	})

	t.Run("black hole", func(t *testing.T) {
		f.probe.Timeout = 300 * time.Millisecond
		defer func() { f.probe.Timeout = time.Second }()
		if err := f.peer.SetMode(delayproxy.Blackhole); err != nil {
			t.Fatal(err)
		}
		err := f.run()
		if got := phasesOf(err); len(got) == 0 || got[0] != PhaseConnectPeer {
			t.Fatalf("failed phases = %v (%v), want connect_peer first", got, err)
		}
		if !strings.Contains(err.Error(), "no answer within 300ms") {
			t.Errorf("error %q does not say the phase timed out", err)
		}
		// The runner turns deadline errors into "no answer within <run
		// timeout>"; a phase's own timeout must not look like one.
		if errors.Is(err, context.DeadlineExceeded) {
			t.Error("a phase timeout unwraps to context.DeadlineExceeded")
		}
	})

	t.Run("recovers", func(t *testing.T) {
		for _, p := range []*delayproxy.Proxy{f.peer, f.client} {
			if err := p.SetMode(delayproxy.Forward); err != nil {
				t.Fatal(err)
			}
		}
		f.waitOK(t)
		for _, p := range plain {
			if f.up(p) != 1 {
				t.Errorf("peer_up{phase=%q} = %v after recovery, want 1", p, f.up(p))
			}
		}
	})

	t.Run("forgets removed peers", func(t *testing.T) {
		f.targets.Update([]Member{{ID: 1, Name: "local", ClientURLs: []string{"http://127.0.0.1:1"}}})
		f.probe.forgetGone()
		if n := testutil.CollectAndCount(f.probe.Up); n != 0 {
			t.Errorf("%d peer_up series left for a removed peer", n)
		}
		if n := testutil.CollectAndCount(f.probe.RTT); n != 0 {
			t.Errorf("%d RTT series left for a removed peer", n)
		}
	})
}

// Over https the handshake is its own phase, made with the agent's client
// TLS configuration; a member that resets connections fails it while the
// TCP connect still succeeds.
func TestNetworkProbeTLS(t *testing.T) {
	f := newNetFixture(t, etcdtest.Options{Mode: etcdtest.InProcess, TLS: etcdtest.NewTLS(t)})
	all := []string{PhaseConnectPeer, PhaseConnectClient, PhaseTLSHandshake, PhaseRequest}
	f.waitOK(t, all...)

	f.client.SetDelay(200 * time.Millisecond)
	if err := f.run(); err != nil {
		t.Fatal(err)
	}
	if d := f.since(t, PhaseTLSHandshake); d < 200*time.Millisecond {
		t.Errorf("tls_handshake through a 200ms delay took %v", d)
	}
	if d := f.since(t, PhaseRequest); d < 200*time.Millisecond {
		t.Errorf("request through a 200ms delay took %v", d)
	}
	f.client.SetDelay(0)

	if err := f.client.SetMode(delayproxy.Reset); err != nil {
		t.Fatal(err)
	}
	err := f.run()
	if got := phasesOf(err); !slices.Equal(got, []string{PhaseTLSHandshake, PhaseRequest}) {
		t.Fatalf("failed phases = %v (%v), want tls_handshake and request", got, err)
	}
	if f.up(PhaseConnectClient) != 1 || f.up(PhaseTLSHandshake) != 0 {
		t.Errorf("connect_client up = %v, tls_handshake up = %v; want 1 and 0", f.up(PhaseConnectClient), f.up(PhaseTLSHandshake))
	}
}
