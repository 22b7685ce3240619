package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/probes"
)

// copyFile copies src over dst, as a renewal writes a file in place.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// notAfter: the expiry gauge of one certificate, in whole seconds as
// x509 keeps it.
func notAfter(at time.Time, labels ...string) expect {
	return gauge("etcdpulse_certificate_not_after_timestamp_seconds", float64(at.Truncate(time.Second).Unix()), labels...)
}

// membersServe: every member serves a certificate expiring at on both
// ports, from the agent's CA, after a complete handshake.
func membersServe(c *etcdtest.Cluster, at time.Time) []expect {
	var exps []expect
	for _, m := range c.Members() {
		for _, port := range []string{"client", "peer"} {
			exps = append(exps,
				notAfter(at, "source", "member", "member", m.Name(), "port", port),
				gauge("etcdpulse_member_certificate_status", 1, "member", m.Name(), "port", port, "status", "ok"),
				gauge("etcdpulse_member_certificate_ca_mismatch", 0, "member", m.Name(), "port", port))
		}
	}
	return exps
}

// Certificates with short lifetimes, served by a real cluster with client
// and peer TLS, then rotated: the members' served certificates (read from
// handshakes), the agent's own client certificate and the files of
// certificates.dir show their new expiry without a restart of the agent,
// and the check grades each class by the days left.
func TestCertificatesRotated(t *testing.T) {
	tl := etcdtest.NewTLS(t)
	now := time.Now()
	served := now.Add(3 * time.Hour)
	tl.ReplaceServerCert(t, now.Add(-time.Hour), served)
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess, TLS: tl})

	// Within 7 days from the start.
	clientExpiry := now.Add(5 * 24 * time.Hour)
	cert, key := tl.IssueClient(t, "etcdpulse", clientExpiry)
	// A directory as kubeadm's: certificates, keys (never read), and a
	// .pem without a certificate.
	dir := t.TempDir()
	copyFile(t, tl.CAFile, filepath.Join(dir, "ca.crt"))
	copyFile(t, cert, filepath.Join(dir, "healthcheck-client.crt"))
	copyFile(t, key, filepath.Join(dir, "healthcheck-client.key"))
	if err := os.WriteFile(filepath.Join(dir, "notes.pem"), []byte("no certificate here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	configure := func(cfg *Config) {
		cfg.Etcd.TLS = TLSConfig{CAFile: tl.CAFile, CertFile: cert, KeyFile: key}
		cfg.Disk.Enabled = false
		cfg.Certificates.Interval = Duration(2 * time.Second)
		cfg.Certificates.Timeout = Duration(time.Second)
		cfg.Certificates.Dir = dir
	}
	a := startAgent(t, c.ClientURLs(), configure)
	a.waitFor(t, "every certificate's expiry", append(membersServe(c, served),
		notAfter(clientExpiry, "source", "agent"),
		notAfter(clientExpiry, "source", "file", "file", "healthcheck-client.crt"),
		gauge("etcdpulse_capability_success", 1, "capability", "certificates"))...)
	m, err := a.scrape()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.value("etcdpulse_certificate_not_after_timestamp_seconds", "file", "ca.crt"); !ok {
		t.Error("ca.crt of certificates.dir not reported")
	}
	for _, f := range []string{"healthcheck-client.key", "notes.pem"} {
		if _, ok := m.value("etcdpulse_certificate_not_after_timestamp_seconds", "file", f); ok {
			t.Errorf("%s reported: it holds no certificate", f)
		}
	}

	// Rotation: the members' certificate and key files replaced (etcd
	// reads them at each handshake), the agent's renewed in place, and
	// the directory's copy with it.
	served = time.Now().Add(48 * time.Hour)
	tl.ReplaceServerCert(t, time.Now().Add(-time.Hour), served)
	renewedExpiry := time.Now().Add(40 * 24 * time.Hour)
	renewed, renewedKey := tl.IssueClient(t, "etcdpulse", renewedExpiry)
	copyFile(t, renewedKey, key)
	copyFile(t, renewed, cert)
	copyFile(t, renewed, filepath.Join(dir, "healthcheck-client.crt"))
	a.waitFor(t, "the rotated certificates' expiry", append(membersServe(c, served),
		notAfter(renewedExpiry, "source", "agent"),
		notAfter(renewedExpiry, "source", "file", "file", "healthcheck-client.crt"),
		// The renewed client certificate is used, too.
		gauge("etcdpulse_probe_success", 1, "probe", "status", "member", "m0"))...)

	// One check from the same configuration.
	cfg := DefaultConfig()
	cfg.Etcd.Endpoints = c.ClientURLs()
	configure(&cfg)
	ag, err := New(Options{Config: &cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := ag.Check(ctx, CheckOptions{Disk: -1})
	// The renewed client certificate and its copy last 40 days, the
	// members' 2.
	want := map[string]Level{"cert_agent": Pass, "cert_member_client": Fail, "cert_member_peer": Fail, "cert_files": Pass, "cert_handshake": Pass, "cert_ca": Pass}
	got := map[string]Finding{}
	for _, f := range r.Findings {
		if strings.HasPrefix(f.Check, "cert_") {
			got[f.Check] = f
		}
	}
	for check, level := range want {
		f, ok := got[check]
		if !ok {
			t.Errorf("%s: no line", check)
			continue
		}
		if f.Level != level {
			t.Errorf("%s: %s (%s), want %s", check, f.Level, f.Summary, level)
		}
	}
	if f := got["cert_member_peer"]; f.Runbook != runbook("EtcdCertificateExpiringCritical") || !strings.Contains(f.Summary, "2.0 days left") {
		t.Errorf("cert_member_peer: %+v", f)
	}
}

// k3s and RKE2 give the peer ports a CA of their own, and etcd demands a
// client certificate of it (--peer-client-cert-auth): the agent, holding
// none, says so, still reads each peer port's certificate from the
// handshake, and reports it from another CA than its own, unless
// certificates.dir holds that CA.
func TestCertificatesPeerCA(t *testing.T) {
	tl, peer := etcdtest.NewTLS(t), etcdtest.NewTLS(t)
	peerExpiry := time.Now().Add(20 * 24 * time.Hour)
	peer.ReplaceServerCert(t, time.Now().Add(-time.Hour), peerExpiry)
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess, TLS: tl, PeerTLS: peer})
	dir := t.TempDir()
	copyFile(t, peer.CAFile, filepath.Join(dir, "peer-ca.crt"))

	for _, tc := range []struct {
		name     string
		dir      string
		mismatch float64
	}{
		{"peer CA unknown", "", 1},
		{"peer CA in certificates.dir", dir, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startAgent(t, c.ClientURLs(), func(cfg *Config) {
				cfg.Etcd.TLS = TLSConfig{CAFile: tl.CAFile, CertFile: tl.ClientCertFile, KeyFile: tl.ClientKeyFile}
				cfg.Disk.Enabled = false
				cfg.Certificates.Interval = Duration(2 * time.Second)
				cfg.Certificates.Timeout = Duration(time.Second)
				cfg.Certificates.Dir = tc.dir
			})
			defer a.stop()
			var exps []expect
			for _, m := range c.Members() {
				exps = append(exps,
					notAfter(peerExpiry, "source", "member", "member", m.Name(), "port", "peer"),
					gauge("etcdpulse_member_certificate_status", 1, "member", m.Name(), "port", "peer", "status", "client_cert_required"),
					gauge("etcdpulse_member_certificate_status", 0, "member", m.Name(), "port", "peer", "status", "ok"),
					gauge("etcdpulse_member_certificate_ca_mismatch", tc.mismatch, "member", m.Name(), "port", "peer"),
					gauge("etcdpulse_member_certificate_status", 1, "member", m.Name(), "port", "client", "status", "ok"),
					gauge("etcdpulse_member_certificate_ca_mismatch", 0, "member", m.Name(), "port", "client"))
			}
			a.waitFor(t, tc.name, exps...)
		})
	}
}

// The check's lines, graded by the days left, and the ports' access and
// CA lines.
func TestCertFindings(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	in := func(d time.Duration) time.Time { return now.Add(d) }
	day := 24 * time.Hour
	certs := []collectors.CertInfo{
		{Source: "agent", NotAfter: in(100 * day)},
		{Source: "member", Member: "m0", Port: "client", NotAfter: in(20 * day)},
		{Source: "member", Member: "m1", Port: "client", NotAfter: in(25 * day)},
		{Source: "member", Member: "m0", Port: "peer", NotAfter: in(-day)},
		{Source: "file", File: "server.crt", NotAfter: in(6 * day)},
	}
	served := []probes.ServedCert{
		{Member: "m0", Port: "client", Status: probes.CertOK, Read: true},
		{Member: "m0", Port: "peer", Status: probes.CertClientCertRequired, Read: true, CAMismatch: true},
		{Member: "m1", Port: "client", Status: probes.CertOK, Read: true},
		{Member: "m1", Port: "peer", Status: probes.CertUnreachable, Err: "connection refused"},
	}
	fs := certFindings(certs, served, true, "/pki", nil, now)
	want := []struct {
		check   string
		level   Level
		summary string
	}{
		{"cert_agent", Pass, "the agent's client certificate: the first to expire, the agent's, expires 2026-06-09T00:00:00Z (100 days left)"},
		{"cert_member_client", Warn, "m0's on its client port, expires 2026-03-21T00:00:00Z (20 days left)"},
		{"cert_member_peer", Fail, "m0's on its peer port expired at 2026-02-28T00:00:00Z"},
		{"cert_files", Fail, "server.crt, expires 2026-03-07T00:00:00Z (6.0 days left)"},
		{"cert_handshake", Warn, "demand a client certificate the agent does not hold (their certificates were read): m0 peer; no certificate read from: m1 peer (connection refused)"},
		{"cert_ca", Warn, "m0 peer"},
	}
	if len(fs) != len(want) {
		t.Fatalf("got %d lines, want %d: %+v", len(fs), len(want), fs)
	}
	for i, w := range want {
		f := fs[i]
		if f.Check != w.check || f.Level != w.level || !strings.Contains(f.Summary, w.summary) {
			t.Errorf("line %d: %s %s %q, want %s %s containing %q", i, f.Check, f.Level, f.Summary, w.check, w.level, w.summary)
		}
	}

	// Nothing configured and nothing probed: no line at all.
	if fs := certFindings(nil, nil, false, "", nil, now); len(fs) != 0 {
		t.Errorf("want no lines, got %+v", fs)
	}
	// A client certificate configured but unreadable.
	fs = certFindings(nil, nil, true, "", fmt.Errorf("client certificate: open /x: no such file"), now)
	if len(fs) != 1 || fs[0].Check != "cert_agent" || fs[0].Level != Warn || !strings.Contains(fs[0].Summary, "no such file") {
		t.Errorf("unreadable client certificate: %+v", fs)
	}
}

// Every validation rule of the section, with its exact message.
func TestCertificatesConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"certificates: {interval: 0s}", "certificates.interval (--certificates.interval): must be positive, got 0s"},
		{"certificates: {timeout: 0s}", "certificates.timeout (--certificates.timeout): must be positive, got 0s"},
		{"certificates: {interval: 2s, timeout: 3s}", "certificates.timeout (--certificates.timeout): must not exceed certificates.interval (2s), got 3s"},
		{"certificates: {enabled: false, timeout: 0s}", ""},
	} {
		cfg := parseYAML(t, tc.yaml)
		err := cfg.Validate()
		if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
			t.Errorf("%s: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	d := DefaultConfig().Certificates
	if !d.Enabled || time.Duration(d.Interval) != DefaultCertificatesInterval || time.Duration(d.Timeout) != DefaultCertificatesTimeout || d.Dir != "" {
		t.Errorf("defaults = %+v", d)
	}
}
