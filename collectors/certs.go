package collectors

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// The sources of a certificate: the values of the `source` label.
const (
	// CertSourceAgent is the agent's own client certificate
	// (etcd.tls.cert_file).
	CertSourceAgent = "agent"
	// CertSourceMember is a certificate a member serves on a port.
	CertSourceMember = "member"
	// CertSourceFile is a file of certificates.dir.
	CertSourceFile = "file"
)

// MaxCertFiles bounds the files of certificates.dir that are read, and so
// the series of source="file".
const MaxCertFiles = 64

// The certificates capability's rows.
var (
	CertNotAfter = Metric{"etcdpulse_certificate_not_after_timestamp_seconds", Gauge,
		"Unix time at which a certificate expires, by source: agent (the agent's own client certificate, etcd.tls.cert_file, read again at each scrape), member (the leaf each member serves on its client and peer port, read from a TLS handshake; member and port say which), file (the certificate of a file of certificates.dir that expires first, file naming it relative to the directory; at most 64 files). Labels that do not apply are empty.", []string{"source", "member", "port", "file"}}
	CertNotBefore = Metric{"etcdpulse_certificate_not_before_timestamp_seconds", Gauge,
		"Unix time from which the certificate of etcdpulse_certificate_not_after_timestamp_seconds is valid.", []string{"source", "member", "port", "file"}}
	MemberCertStatus = Metric{"etcdpulse_member_certificate_status", Gauge,
		"1 for the outcome of the last TLS handshake with the member's client or peer port, 0 for the others: ok; client_cert_required (the port demands a client certificate the agent does not hold, as etcd's --peer-client-cert-auth with a CA the agent's certificate is not from: the served certificate is still read); handshake_failed; unreachable.", []string{"member", "port", "status"}}
	MemberCertCAMismatch = Metric{"etcdpulse_member_certificate_ca_mismatch", Gauge,
		"1 when the certificate a member serves on the port does not chain to the agent's CA (etcd.tls.ca_file, or the system's) nor to a CA certificate of certificates.dir; 0 when it does. Absent while no certificate was read.", []string{"member", "port"}}
)

// CertMetrics lists these rows in documentation order.
var CertMetrics = []Metric{CertNotAfter, CertNotBefore, MemberCertStatus, MemberCertCAMismatch}

// CertInfo is one certificate as a check or a metric reports it.
type CertInfo struct {
	Source, Member, Port, File string
	NotBefore, NotAfter        time.Time
}

// CertFile is a file of certificates.dir that holds certificates.
type CertFile struct {
	// Name is the file's path relative to the directory.
	Name string
	// First is the certificate of the file that expires first.
	First *x509.Certificate
	// CAs are the file's CA certificates.
	CAs []*x509.Certificate
}

// ParseCertPEM returns the certificates of PEM data, skipping every block
// that is not a certificate (keys are never kept).
func ParseCertPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// firstToExpire returns the certificate of cs that expires first.
func firstToExpire(cs []*x509.Certificate) *x509.Certificate {
	return slices.MinFunc(cs, func(a, b *x509.Certificate) int { return a.NotAfter.Compare(b.NotAfter) })
}

// certFileName: the files of certificates.dir that are read. Keys are
// left alone: *.key never matches, and *-key.pem is skipped by name.
func certFileName(name string) bool {
	if strings.HasSuffix(name, "key.pem") {
		return false
	}
	return strings.HasSuffix(name, ".crt") || strings.HasSuffix(name, ".pem")
}

// ReadCertDir reads the *.crt and *.pem files of dir (not its
// subdirectories), in name order, at most MaxCertFiles of them; skipped
// counts the certificate files beyond that. Files without a certificate
// are left out; a file that cannot be read or parsed is an error, and the
// others are still returned.
func ReadCertDir(dir string) (files []CertFile, skipped int, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !certFileName(e.Name()) {
			continue
		}
		if len(files) == MaxCertFiles {
			skipped++
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cs, err := ParseCertPEM(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		if len(cs) == 0 {
			continue
		}
		f := CertFile{Name: e.Name(), First: firstToExpire(cs)}
		for _, c := range cs {
			if c.IsCA {
				f.CAs = append(f.CAs, c)
			}
		}
		files = append(files, f)
	}
	return files, skipped, errors.Join(errs...)
}

// ReadCertFile returns the first certificate of a PEM file (the leaf of a
// chain).
func ReadCertFile(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cs, err := ParseCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return cs[0], nil
}

// CertOptions configure a CertCollector.
type CertOptions struct {
	// ClientCert is the agent's client certificate file; "" for none.
	ClientCert string
	// Dir is certificates.dir; "" for none.
	Dir string
	// Served gives the members' certificates; nil when not probed.
	Served func() []probes.ServedCert
	Logger *slog.Logger
}

// CertCollector exports the expiry of the agent's client certificate and
// of the files of certificates.dir, read at each scrape (a rotated file
// shows at the next scrape, a local read of a few small files), and of the
// members' served certificates, from the probe's last handshakes.
type CertCollector struct {
	opts CertOptions
	d    descSet

	mu      sync.Mutex
	err     error
	lastErr string // logged once per change
}

// NewCertCollector returns the collector.
func NewCertCollector(opts CertOptions) *CertCollector {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &CertCollector{opts: opts, d: newDescSet(CertMetrics...)}
}

// Describe implements prometheus.Collector.
func (c *CertCollector) Describe(ch chan<- *prometheus.Desc) { c.d.describe(ch) }

// Err implements Failing: a file that could not be read in the last
// Collect.
func (c *CertCollector) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Certificates reads every certificate the collector reports: the
// agent's, the directory's and the members' last served ones. err says
// what could not be read.
func (c *CertCollector) Certificates() (certs []CertInfo, dirCount int, err error) {
	var errs []error
	if c.opts.ClientCert != "" {
		cert, err := ReadCertFile(c.opts.ClientCert)
		if err != nil {
			errs = append(errs, fmt.Errorf("client certificate: %w", err))
		} else {
			certs = append(certs, CertInfo{Source: CertSourceAgent, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter})
		}
	}
	if c.opts.Dir != "" {
		files, skipped, err := ReadCertDir(c.opts.Dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("certificates.dir: %w", err))
		}
		if skipped > 0 {
			errs = append(errs, fmt.Errorf("certificates.dir %s: %d certificate files beyond the first %d not read", c.opts.Dir, skipped, MaxCertFiles))
		}
		for _, f := range files {
			certs = append(certs, CertInfo{Source: CertSourceFile, File: f.Name, NotBefore: f.First.NotBefore, NotAfter: f.First.NotAfter})
		}
		dirCount = len(files)
	}
	if c.opts.Served != nil {
		for _, s := range c.opts.Served() {
			if s.Read {
				certs = append(certs, CertInfo{Source: CertSourceMember, Member: s.Member, Port: s.Port, NotBefore: s.NotBefore, NotAfter: s.NotAfter})
			}
		}
	}
	return certs, dirCount, errors.Join(errs...)
}

// Collect implements prometheus.Collector.
func (c *CertCollector) Collect(ch chan<- prometheus.Metric) {
	certs, _, err := c.Certificates()
	c.setErr(err)
	for _, ci := range certs {
		ch <- prometheus.MustNewConstMetric(c.d[CertNotAfter.Name], prometheus.GaugeValue, unixSeconds(ci.NotAfter), ci.Source, ci.Member, ci.Port, ci.File)
		ch <- prometheus.MustNewConstMetric(c.d[CertNotBefore.Name], prometheus.GaugeValue, unixSeconds(ci.NotBefore), ci.Source, ci.Member, ci.Port, ci.File)
	}
	if c.opts.Served == nil {
		return
	}
	for _, s := range c.opts.Served() {
		for _, st := range probes.CertStatuses {
			ch <- prometheus.MustNewConstMetric(c.d[MemberCertStatus.Name], prometheus.GaugeValue, b2f(s.Status == st), s.Member, s.Port, st)
		}
		if s.Read {
			ch <- prometheus.MustNewConstMetric(c.d[MemberCertCAMismatch.Name], prometheus.GaugeValue, b2f(s.CAMismatch), s.Member, s.Port)
		}
	}
}

// setErr keeps the last Collect's problem and logs it once per change.
// Only paths and parse errors are logged, never a file's content.
func (c *CertCollector) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != c.lastErr {
		if err != nil {
			c.opts.Logger.Warn("cannot read certificates", "err", err)
		} else {
			c.opts.Logger.Info("certificates read again")
		}
		c.lastErr = msg
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.Unix()) }
