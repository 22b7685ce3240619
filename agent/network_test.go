package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

const (
	mPeerUp  = "etcdpulse_network_peer_up"
	mPeerRTT = "etcdpulse_network_peer_rtt_seconds"
)

// peersUp expects every phase to every peer to be up (1) or down (0).
func peersUp(v float64, peers []string, phases ...string) []expect {
	var out []expect
	for _, p := range peers {
		for _, ph := range phases {
			out = append(out, gauge(mPeerUp, v, "peer", p, "phase", ph))
		}
	}
	return out
}

// rttSeries lists the peer/phase pairs of the RTT histogram with samples.
func (m metrics) rttSeries() []string {
	var out []string
	if mf, ok := m[mPeerRTT]; ok {
		for _, s := range mf.Metric {
			if s.Histogram.GetSampleCount() == 0 {
				continue
			}
			l := map[string]string{}
			for _, lp := range s.Label {
				l[lp.GetName()] = lp.GetValue()
			}
			out = append(out, l["peer"]+"/"+l["phase"])
		}
	}
	return out
}

// The agent beside m0 probes the network to m1 and m2, never to m0 itself;
// a killed peer is reported down phase by phase and comes back.
func TestNetworkPeers(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	a := startAgent(t, []string{c.Member(0).ClientURL()}, func(cfg *Config) {
		cfg.Network.Interval = Duration(time.Second)
	})
	peers := []string{"m1", "m2"}
	plain := []string{"connect_peer", "connect_client", "request"}
	a.waitFor(t, "every phase to every peer up",
		append(peersUp(1, peers, plain...),
			gauge("etcdpulse_probe_success", 1, "probe", "network", "member", "m1"),
			gauge("etcdpulse_probe_success", 1, "probe", "network", "member", "m2"))...)
	// The first request on a new connection is not observed: wait for the
	// next run.
	a.waitFor(t, "every phase observed", func(m metrics) error {
		if got := strings.Join(m.rttSeries(), " "); len(m.rttSeries()) != len(peers)*len(plain) {
			return fmt.Errorf("RTT series with samples: %s; want 3 phases × 2 peers", got)
		}
		return nil
	})

	m := mustScrape(t, a)
	for _, s := range m[mPeerUp].GetMetric() {
		for _, l := range s.Label {
			if l.GetName() == "peer" && l.GetValue() == "m0" {
				t.Error("the local member m0 is probed as a peer")
			}
			if l.GetName() == "phase" && l.GetValue() == "tls_handshake" {
				t.Error("tls_handshake reported over http")
			}
		}
	}

	if err := c.Member(2).Kill(); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, "the killed peer reported down, the other up",
		append(append(peersUp(0, []string{"m2"}, plain...), peersUp(1, []string{"m1"}, plain...)...),
			gauge("etcdpulse_probe_success", 0, "probe", "network", "member", "m2"))...)
	if err := c.Member(2).Restart(); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, "the restarted peer up again", peersUp(1, peers, plain...)...)
}

// Over TLS the handshake to each peer's client URL is a phase of its own,
// made with the agent's client certificate.
func TestNetworkPeersTLS(t *testing.T) {
	certs := etcdtest.NewTLS(t)
	c := etcdtest.Start(t, etcdtest.Options{Size: 2, Mode: etcdtest.InProcess, TLS: certs})
	a := startAgent(t, []string{c.Member(0).ClientURL()}, func(cfg *Config) {
		cfg.Etcd.TLS = TLSConfig{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}
		cfg.Network.Interval = Duration(time.Second)
	})
	a.waitFor(t, "every phase to the peer up, the handshake included",
		peersUp(1, []string{"m1"}, "connect_peer", "connect_client", "tls_handshake", "request")...)
}

func TestNetworkConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"network: {timeout: 0s}", "network.timeout (--network.timeout): must be positive, got 0s"},
		{"network: {interval: 2s, timeout: 3s}", "network.timeout (--network.timeout): must not exceed network.interval (2s), got 3s"},
		{"network: {interval: -1s}", "network.interval (--network.interval): must be positive, got -1s"},
		{"network: {enabled: false, timeout: 0s}", ""},
	} {
		cfg := parseYAML(t, tc.yaml)
		err := cfg.Validate()
		if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
			t.Errorf("%s: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	d := DefaultConfig().Network
	if !d.Enabled || time.Duration(d.Interval) != DefaultNetworkInterval || time.Duration(d.Timeout) != DefaultNetworkTimeout {
		t.Errorf("defaults = %+v", d)
	}
}
