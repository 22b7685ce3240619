package agent

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

func TestMembershipChanges(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	a := startAgent(t, []string{c.Member(0).ClientURL()}, nil)
	a.waitFor(t, "a healthy 3-member cluster", healthyCluster(3)...)

	added := c.AddMember(t)
	a.waitFor(t, "the added member followed",
		gauge("etcdpulse_cluster_members", 4), gauge(mVoters, 4), gauge(mHealthy, 4), gauge(mQuorum, 3),
		gauge(mTolerance, 1), gauge(mMember, 1, "member", added.Name()))

	c.RemoveMember(t, added)
	a.waitFor(t, "the removed member dropped", healthyCluster(3)...)
	m := mustScrape(t, a)
	if _, ok := m.value(mMember, "member", added.Name()); ok {
		t.Errorf("removed member %s still exported", added.Name())
	}
}

func TestTLS(t *testing.T) {
	certs := etcdtest.NewTLS(t)
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess, TLS: certs})
	url := c.Member(0).ClientURL()
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("client URL %s is not https", url)
	}

	t.Run("client certificate", func(t *testing.T) {
		a := startAgent(t, []string{url}, func(cfg *Config) {
			cfg.Etcd.TLS = TLSConfig{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}
		})
		a.waitFor(t, "a healthy member over TLS", healthyCluster(1)...)
	})

	t.Run("no client certificate", func(t *testing.T) {
		// The server demands a client certificate: the member is reported
		// down, and the agent keeps running.
		a := startAgent(t, []string{url}, func(cfg *Config) {
			cfg.Etcd.TLS = TLSConfig{CAFile: certs.CAFile}
		})
		a.waitFor(t, "the member reported unreachable", gauge(mUp, 0),
			gauge("etcdpulse_probe_success", 0, "probe", "status", "member", url))
	})

	t.Run("wrong files", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Etcd.Endpoints = []string{url}
		cfg.Etcd.TLS = TLSConfig{CAFile: certs.ClientKeyFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}
		_, err := New(Options{Config: &cfg})
		want := `etcd.tls.ca_file (--etcd.tls.ca-file): "` + certs.ClientKeyFile + `" holds no PEM certificate`
		if err == nil || err.Error() != want {
			t.Fatalf("error = %v\nwant %s", err, want)
		}
		cfg.Etcd.TLS = TLSConfig{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.CAFile}
		_, err = New(Options{Config: &cfg})
		if err == nil || !strings.HasPrefix(err.Error(), "etcd.tls.cert_file (--etcd.tls.cert-file): cannot load the client certificate") {
			t.Fatalf("error = %v, want one naming --etcd.tls.cert-file", err)
		}
	})
}

// An endpoint where nothing listens: the agent becomes ready, reports the
// member down and keeps serving.
func TestUnreachableEndpoint(t *testing.T) {
	url := closedEndpoint(t)
	a := startAgent(t, []string{url}, nil)
	a.waitFor(t, "the endpoint reported down", gauge(mUp, 0),
		gauge("etcdpulse_probe_success", 0, "probe", "status", "member", url),
		gauge("etcdpulse_probe_success", 0, "probe", "read_linearizable", "member", url),
		gauge(mHasLeader, 0))
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(a.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s = %s, want 200", path, resp.Status)
		}
	}
	if m := mustScrape(t, a); m["etcdpulse_cluster_fault_tolerance"] != nil {
		t.Error("fault tolerance exported although no member list was ever read")
	}
}

// The live /metrics of an agent on a real cluster: every family is in the
// catalogue (or one of client_golang's standard families about the agent
// itself), every catalogue family is there, each capability exports what it
// declares, the text is promlint-clean, and OpenMetrics is served when
// asked.
func TestLiveMetrics(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	pidFile := filepath.Join(t.TempDir(), "etcd.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	backups := t.TempDir()
	writeSnapshot(t, c.Client(t), backups, "snapshot.db")
	// A Kubernetes key space for the keyspace capability to count.
	putKube(t, c.Client(t), "events", 3, "default")
	a := startAgent(t, []string{c.Member(0).ClientURL()}, func(cfg *Config) {
		// Everything on: the member's own data dir, this process as
		// "etcd" (the members run in it), etcd's own metrics, and the
		// slower probes at a test pace.
		cfg.Etcd.DataDir = c.Member(0).DataDir()
		cfg.Etcd.MetricsURL = c.Member(0).ClientURL() + "/metrics"
		cfg.Host.PIDFile = pidFile
		cfg.Network.Interval = Duration(time.Second)
		cfg.Disk.Interval = Duration(time.Second)
		cfg.Disk.Timeout = Duration(time.Second)
		cfg.Certificates.Dir = etcdtest.NewTLS(t).Dir
		cfg.Backups.Dirs = []string{backups}
		cfg.Backups.Interval = Duration(time.Second)
	})
	a.waitFor(t, "a healthy cluster", healthyCluster(3)...)
	a.waitFor(t, "every probe succeeded once",
		gauge("etcdpulse_probe_success", 1, "probe", "member_list"),
		gauge("etcdpulse_probe_success", 1, "probe", "fsync"),
		gauge("etcdpulse_probe_success", 1, "probe", "network"),
		gauge("etcdpulse_probe_success", 1, "probe", "hash"),
		gauge("etcdpulse_etcd_metrics_up", 1),
		gauge("etcdpulse_network_peer_up", 1, "phase", "request"),
		gauge("etcdpulse_backup_status", 1, "status", "verified"),
		gauge("etcdpulse_keyspace_resource_keys", 3, "resource", "events"))
	// Present only in some states: a refused fsync probe, etcd's own peer
	// RTT, which etcd records every 30 s, an agent that etcd refuses,
	// failed probe runs, and watches etcd ended.
	optional := map[string]bool{
		collectors.WatchRestarts.Name: true,
		collectors.FsyncRefused.Name:  true,
		collectors.EtcdPeerRTT.Name:   true,
		collectors.AgentRefused.Name:  true,
		collectors.ProbeFailures.Name: true,
		// Only while a member is a learner.
		collectors.MemberLearnerSeconds.Name: true,
		// Only with https URLs (TestCertificatesRotated scrapes them).
		collectors.MemberCertStatus.Name:     true,
		collectors.MemberCertCAMismatch.Name: true,
	}

	body := get(t, a.url+"/metrics", "")
	m := mustScrape(t, a)
	// The agent's registry holds the agent's metrics and nothing else.
	for name := range m {
		if _, ok := collectors.Find(Catalogue(), name); !ok {
			t.Errorf("%s exported but not in the catalogue", name)
		}
	}
	for _, row := range Catalogue() {
		if _, ok := m[row.Name]; !ok && !optional[row.Name] {
			t.Errorf("%s in the catalogue but not exported", row.Name)
		}
	}
	// Each capability exports what it declares, and only that.
	for _, cp := range a.caps {
		reg := prometheus.NewPedanticRegistry()
		for _, c := range cp.Collectors {
			reg.MustRegister(c)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("%s: %v", cp.Name, err)
		}
		declared := capabilityMetrics(cp.Name)
		for _, mf := range mfs {
			if _, ok := collectors.Find(declared, mf.GetName()); !ok {
				t.Errorf("capability %s exports %s, which it does not declare", cp.Name, mf.GetName())
			}
		}
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	om := get(t, a.url+"/metrics", "application/openmetrics-text; version=1.0.0")
	if !bytes.HasSuffix(bytes.TrimSpace(om), []byte("# EOF")) {
		t.Error("OpenMetrics output does not end with # EOF")
	}
}

func get(t *testing.T, url, accept string) []byte {
	t.Helper()
	_, body := testenv.Get(t, url, accept)
	return body
}

// The handler mounts under any prefix and takes nothing but its own paths;
// with a registerer that cannot be gathered, the program serves the
// metrics itself and the handler has no /metrics.
func TestHandlerUnderPrefix(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reg     prometheus.Registerer
		metrics int
	}{
		{"own registry", nil, http.StatusOK},
		{"a registry of the program's", prometheus.NewRegistry(), http.StatusOK},
		{"a registerer only", registerOnly{prometheus.NewRegistry()}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Disk.Enabled, cfg.Host.Enabled = false, false
			a, err := New(Options{Endpoints: []string{closedEndpoint(t)}, Config: &cfg, Registerer: tc.reg})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = a.Stop() })
			mux := http.NewServeMux()
			mux.Handle("/etcdpulse/", http.StripPrefix("/etcdpulse", a.Handler()))
			mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "the program's own page") })
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			for path, want := range map[string]int{
				"/etcdpulse/metrics": tc.metrics, "/etcdpulse/healthz": http.StatusOK,
				"/etcdpulse/debug/tracez": http.StatusNotFound, // no SDK tracer provider given
				"/etcdpulse/":             http.StatusNotFound,
			} {
				if code, body := testenv.Get(t, srv.URL+path, ""); code != want {
					t.Errorf("%s: %d %.100q, want %d", path, code, body, want)
				}
			}
			if _, body := testenv.Get(t, srv.URL+"/", ""); string(body) != "the program's own page" {
				t.Errorf("the program's / answered %q", body)
			}
		})
	}
}

// registerOnly is a prometheus.Registerer that cannot be gathered.
type registerOnly struct{ r *prometheus.Registry }

func (o registerOnly) Register(c prometheus.Collector) error   { return o.r.Register(c) }
func (o registerOnly) MustRegister(cs ...prometheus.Collector) { o.r.MustRegister(cs...) }
func (o registerOnly) Unregister(c prometheus.Collector) bool  { return o.r.Unregister(c) }
