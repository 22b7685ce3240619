package agent

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// certificates reports when certificates expire: the agent's own client
// certificate and the files of certificates.dir, read at each scrape, and
// the certificate each member serves on its client and peer port, read
// from a TLS handshake every few minutes (probes.CertProbe). A rotated
// file or a member serving a new certificate shows without a restart. A
// peer port that demands a client certificate the agent does not hold is
// reported as such, its certificate still read; a member's certificate
// that does not chain to the agent's CA is reported as a mismatch.
var certificates = capability{
	name:  "certificates",
	title: "Certificates",
	settings: []Setting{
		setting("certificates.enabled", "Report the expiry of the agent's client certificate, of the members' served certificates and of certificates.dir.", func(c *Config) any { return &c.Certificates.Enabled }),
		setting("certificates.interval", "Time between two TLS handshakes with each member's client and peer port.", func(c *Config) any { return &c.Certificates.Interval }),
		setting("certificates.timeout", "Deadline of each handshake.", func(c *Config) any { return &c.Certificates.Timeout }),
		setting("certificates.dir", fmt.Sprintf("Directory whose *.crt and *.pem files (not its subdirectories; at most %d) are read at each scrape (kubeadm: /etc/kubernetes/pki/etcd); its CA certificates also count as trusted for a member's certificate. Empty: none.", collectors.MaxCertFiles),
			func(c *Config) any { return &c.Certificates.Dir }),
	},
	metrics:  collectors.CertMetrics,
	defaults: func(c *Config) { c.Certificates = defaultCertificatesConfig() },
	validate: func(c *Config, bad badFunc) { c.Certificates.validate(bad) },
	wire:     wireCertificates,
}

// CertificatesConfig configures the certificates capability.
type CertificatesConfig struct {
	// Enabled turns the capability on.
	Enabled bool `yaml:"enabled"`
	// Interval is the time between two handshakes with a member's ports.
	Interval Duration `yaml:"interval"`
	// Timeout bounds each handshake.
	Timeout Duration `yaml:"timeout"`
	// Dir holds certificate files to report (kubeadm:
	// /etc/kubernetes/pki/etcd); empty: none.
	Dir string `yaml:"dir"`
}

// Certificates defaults: a handshake is cheap but not free for the
// member, and an expiry measured in days needs no finer look.
const (
	DefaultCertificatesInterval = 5 * time.Minute
	DefaultCertificatesTimeout  = 5 * time.Second
)

// Thresholds of the certificate lines, as the rules' (alerts/groups.go).
const (
	certWarnWithin = 30 * 24 * time.Hour
	certFailWithin = 7 * 24 * time.Hour
)

func defaultCertificatesConfig() CertificatesConfig {
	return CertificatesConfig{
		Enabled:  true,
		Interval: Duration(DefaultCertificatesInterval),
		Timeout:  Duration(DefaultCertificatesTimeout),
	}
}

// validate reports problems through bad.
func (c CertificatesConfig) validate(bad badFunc) {
	if !c.Enabled {
		return
	}
	if c.Interval <= 0 {
		bad("certificates.interval", "must be positive, got %s", c.Interval)
	}
	switch {
	case c.Timeout <= 0:
		bad("certificates.timeout", "must be positive, got %s", c.Timeout)
	case c.Interval > 0 && c.Timeout > c.Interval:
		bad("certificates.timeout", "must not exceed certificates.interval (%s), got %s", c.Interval, c.Timeout)
	}
}

func wireCertificates(w *wiring) error {
	c := w.cfg.Certificates
	if !c.Enabled {
		return nil
	}
	timeout := time.Duration(c.Timeout)
	p := &probes.CertProbe{Targets: w.targets, TLS: w.tls, Timeout: timeout}
	if dir := c.Dir; dir != "" {
		p.ExtraRoots = func() []*x509.Certificate {
			files, _, _ := collectors.ReadCertDir(dir)
			var cas []*x509.Certificate
			for _, f := range files {
				cas = append(cas, f.CAs...)
			}
			return cas
		}
	}
	col := collectors.NewCertCollector(collectors.CertOptions{
		ClientCert: w.cfg.Etcd.TLS.CertFile,
		Dir:        c.Dir,
		Served:     p.Served,
		Logger:     w.logger.With("collector", "certificates"),
	})
	w.collect(col)
	// Two ports, one after the other, each with its handshake and the
	// wait for a refusal.
	w.probe(p, probes.EveryMember, time.Duration(c.Interval), 2*(timeout+time.Second))
	w.check(func(_ context.Context, _ checkInput) []Finding {
		certs, _, err := col.Certificates()
		return certFindings(certs, p.Served(), w.cfg.Etcd.TLS.CertFile != "", c.Dir, err, time.Now())
	})
	return nil
}

// certClass is one line of the check: a class of certificates.
type certClass struct {
	check, what string
	match       func(collectors.CertInfo) bool
}

var certClasses = []certClass{
	{"cert_agent", "the agent's client certificate", func(c collectors.CertInfo) bool { return c.Source == collectors.CertSourceAgent }},
	{"cert_member_client", "the members' client-port certificates", func(c collectors.CertInfo) bool {
		return c.Source == collectors.CertSourceMember && c.Port == probes.PortClient
	}},
	{"cert_member_peer", "the members' peer-port certificates", func(c collectors.CertInfo) bool {
		return c.Source == collectors.CertSourceMember && c.Port == probes.PortPeer
	}},
	{"cert_files", "the certificates of certificates.dir", func(c collectors.CertInfo) bool { return c.Source == collectors.CertSourceFile }},
}

// certFindings are the certificate lines of a check report: for each
// class, the certificate that expires first against 30 and 7 days; the
// ports that demand a client certificate the agent lacks or could not be
// read; and the certificates of another CA.
func certFindings(certs []collectors.CertInfo, served []probes.ServedCert, agentCert bool, dir string, readErr error, now time.Time) []Finding {
	var fs []Finding
	for _, cl := range certClasses {
		var in []collectors.CertInfo
		for _, c := range certs {
			if cl.match(c) {
				in = append(in, c)
			}
		}
		f := Finding{Check: cl.check, Threshold: fmt.Sprintf("more than %s left (WARN), %s (FAIL)", days(certWarnWithin), days(certFailWithin))}
		if len(in) == 0 {
			switch {
			case cl.check == "cert_agent" && !agentCert, cl.check == "cert_files" && dir == "":
				continue // not configured
			case cl.check == "cert_member_client" || cl.check == "cert_member_peer":
				if !anyPort(served, strings.TrimPrefix(cl.check, "cert_member_")) {
					continue // plain http, or no member probed yet
				}
			}
			f.Level, f.Summary = Warn, "no certificate read: "+cl.what
			if readErr != nil {
				f.Summary += ": " + readErr.Error()
			}
			fs = append(fs, f)
			continue
		}
		first := slices.MinFunc(in, func(a, b collectors.CertInfo) int { return a.NotAfter.Compare(b.NotAfter) })
		left := first.NotAfter.Sub(now)
		f.Value = days(left)
		f.Summary = fmt.Sprintf("%s: the first to expire, %s, expires %s (%s left)", cl.what, certName(first), first.NotAfter.UTC().Format(time.RFC3339), days(left))
		switch {
		case left < certFailWithin:
			f.Level, f.Runbook = Fail, runbook("EtcdCertificateExpiringCritical")
			f.Hint = "renew it now: docs/runbooks/EtcdCertificateExpiringCritical.md has the commands for kubeadm, k3s and RKE2"
			if left <= 0 {
				f.Summary = fmt.Sprintf("%s: %s expired at %s", cl.what, certName(first), first.NotAfter.UTC().Format(time.RFC3339))
			}
		case left < certWarnWithin:
			f.Level, f.Runbook = Warn, runbook("EtcdCertificateExpiring")
			f.Hint = "renew it within the next weeks: the runbook has the commands for kubeadm, k3s and RKE2"
		}
		fs = append(fs, f)
	}
	if f, ok := certAccessFinding(served); ok {
		fs = append(fs, f)
	}
	if f, ok := certCAFinding(served); ok {
		fs = append(fs, f)
	}
	return fs
}

// certAccessFinding: the ports whose certificate was read without a
// completed handshake, or not at all.
func certAccessFinding(served []probes.ServedCert) (Finding, bool) {
	if len(served) == 0 {
		return Finding{}, false
	}
	f := Finding{Check: "cert_handshake", Summary: "every member's client and peer port completed a TLS handshake", Value: "0"}
	var required, failed []string
	for _, s := range served {
		name := s.Member + " " + s.Port
		switch s.Status {
		case probes.CertClientCertRequired:
			required = append(required, name)
		case probes.CertHandshakeFailed, probes.CertUnreachable:
			if s.Err != "" {
				name += " (" + s.Err + ")"
			}
			failed = append(failed, name)
		}
	}
	var parts []string
	if len(required) > 0 {
		parts = append(parts, "these ports demand a client certificate the agent does not hold (their certificates were read): "+strings.Join(required, ", "))
		f.Hint = "expected on peer ports with --peer-client-cert-auth and a peer CA of their own (k3s, RKE2); nothing to do"
	}
	if len(failed) > 0 {
		f.Level = Warn
		parts = append(parts, "no certificate read from: "+strings.Join(failed, ", "))
		f.Hint = "the port is unreachable from the agent or refused the handshake: the network lines say more"
	}
	if len(parts) > 0 {
		f.Summary = strings.Join(parts, "; ")
		f.Value = fmt.Sprint(len(required) + len(failed))
	}
	return f, true
}

// certCAFinding: the members' certificates of another CA.
func certCAFinding(served []probes.ServedCert) (Finding, bool) {
	f := Finding{Check: "cert_ca", Summary: "every member's certificate chains to the agent's CA", Threshold: "none of another CA", Value: "0"}
	var bad []string
	read := false
	for _, s := range served {
		read = read || s.Read
		if s.Read && s.CAMismatch {
			bad = append(bad, s.Member+" "+s.Port)
		}
	}
	if !read {
		return Finding{}, false
	}
	if len(bad) > 0 {
		f.Level, f.Runbook, f.Value = Warn, runbook("EtcdCertificateCaMismatch"), fmt.Sprint(len(bad))
		f.Summary = "certificates of another CA than the agent's (etcd.tls.ca_file) and certificates.dir's: " + strings.Join(bad, ", ")
		f.Hint = "a member was given a certificate from another CA: its peers or clients that trust only the cluster's CA refuse it"
	}
	return f, true
}

func anyPort(served []probes.ServedCert, port string) bool {
	return slices.ContainsFunc(served, func(s probes.ServedCert) bool { return s.Port == port })
}

// certName names a certificate in a line.
func certName(c collectors.CertInfo) string {
	switch c.Source {
	case collectors.CertSourceMember:
		return c.Member + "'s on its " + c.Port + " port"
	case collectors.CertSourceFile:
		return c.File
	}
	return "the agent's"
}

// days prints a duration in days, to a tenth under ten days.
func days(d time.Duration) string {
	n := d.Hours() / 24
	if n < 10 && n > -10 {
		return fmt.Sprintf("%.1f days", n)
	}
	return fmt.Sprintf("%.0f days", n)
}
