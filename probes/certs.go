package probes

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"
)

// ProbeCertificates is the certificate probe's name.
const ProbeCertificates = "certificates"

// The ports whose certificates the probe reads: the values of the `port`
// label.
const (
	PortClient = "client"
	PortPeer   = "peer"
)

// The outcome of reading a member's served certificate: the values of the
// `status` label.
const (
	// CertOK: the handshake completed and the certificate was read.
	CertOK = "ok"
	// CertClientCertRequired: the port demands a client certificate the
	// agent does not hold (etcd's --peer-client-cert-auth, with a CA the
	// agent's certificate is not from); the server's certificate was
	// still read from the handshake.
	CertClientCertRequired = "client_cert_required"
	// CertHandshakeFailed: the TLS handshake failed for another reason.
	CertHandshakeFailed = "handshake_failed"
	// CertUnreachable: no TCP connection, or no certificate received.
	CertUnreachable = "unreachable"
)

// CertStatuses lists every status, for documentation and metrics.
var CertStatuses = []string{CertOK, CertClientCertRequired, CertHandshakeFailed, CertUnreachable}

// ServedCert is what the probe read of one member's port.
type ServedCert struct {
	Member string
	Port   string
	Status string
	// Read: a certificate came in the handshake; NotBefore and NotAfter
	// are the leaf's, CAMismatch says whether it chains to a CA the
	// agent trusts.
	Read                bool
	NotBefore, NotAfter time.Time
	CAMismatch          bool
	// Err is why the handshake failed, "" when it did not.
	Err string
	At  time.Time
}

// CertProbe reads the certificate each member serves on its client URL and
// on its peer URL, from a TLS handshake: the leaf is kept even when the
// handshake then fails, as when a peer port refuses the agent for want of
// a client certificate. Nothing is sent on the connection.
type CertProbe struct {
	// Targets lets the probe forget members that left the member list.
	Targets *Targets
	// TLS is the agent's client TLS configuration: its client
	// certificate is offered, its CA judges the member's certificate.
	TLS *tls.Config
	// ExtraRoots, when set, gives more CA certificates that a member's
	// certificate may chain to (the CAs of certificates.dir: k3s and
	// RKE2 sign peer certificates with a CA of their own).
	ExtraRoots func() []*x509.Certificate
	// Timeout bounds each port's handshake.
	Timeout time.Duration

	mu     sync.Mutex
	served map[string]map[string]ServedCert // member → port → result
}

// Name implements Probe.
func (p *CertProbe) Name() string { return ProbeCertificates }

// Served returns the last result for each member's ports, by member then
// port.
func (p *CertProbe) Served() []ServedCert {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ServedCert
	for _, ports := range p.served {
		for _, s := range ports {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b ServedCert) int {
		return cmp.Or(cmp.Compare(a.Member, b.Member), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// Run implements Probe: one handshake on each https URL of the member. It
// fails only when no certificate could be read on any port.
func (p *CertProbe) Run(ctx context.Context, t *Target) error {
	p.forgetGone()
	m := t.Member()
	if m.ID == 0 {
		return ErrNotReady // the member's name and peer URLs come with the member list
	}
	roots := p.roots()
	urls := map[string]string{PortClient: t.Endpoint}
	if len(m.PeerURLs) > 0 {
		urls[PortPeer] = m.PeerURLs[0]
	}
	var errs []error
	read := false
	for _, port := range []string{PortClient, PortPeer} {
		raw, ok := urls[port]
		u, err := url.Parse(raw)
		if !ok || err != nil || u.Scheme != "https" {
			p.forget(m.Label(), port)
			continue
		}
		addr, _ := hostPort(raw)
		sc := ReadServedCert(ctx, addr, u.Hostname(), port == PortClient, p.TLS, roots, p.Timeout)
		sc.Member, sc.Port, sc.At = m.Label(), port, time.Now()
		p.store(sc)
		read = read || sc.Read
		if sc.Err != "" {
			errs = append(errs, fmt.Errorf("%s port %s: %s", port, addr, sc.Err))
		}
	}
	if !read && len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// roots is the pool a member's certificate is verified against: the
// agent's CA (the system's when it has none) and the extra roots.
func (p *CertProbe) roots() *x509.CertPool {
	var pool *x509.CertPool
	if p.TLS != nil && p.TLS.RootCAs != nil {
		pool = p.TLS.RootCAs.Clone()
	} else if sys, err := x509.SystemCertPool(); err == nil {
		pool = sys
	} else {
		pool = x509.NewCertPool()
	}
	if p.ExtraRoots != nil {
		for _, c := range p.ExtraRoots() {
			pool.AddCert(c)
		}
	}
	return pool
}

func (p *CertProbe) store(sc ServedCert) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.served == nil {
		p.served = map[string]map[string]ServedCert{}
	}
	if p.served[sc.Member] == nil {
		p.served[sc.Member] = map[string]ServedCert{}
	}
	p.served[sc.Member][sc.Port] = sc
}

func (p *CertProbe) forget(member, port string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.served[member], port)
}

// forgetGone drops the results of members no longer in the member list.
func (p *CertProbe) forgetGone() {
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
	for m := range p.served {
		if !current[m] {
			delete(p.served, m)
		}
	}
}

// refusalWait is how long, after a TLS 1.3 handshake in which the server
// asked for a client certificate, the probe waits for the server's
// refusal: in TLS 1.3 the client finishes its handshake before the server
// has judged its certificate, and a refusal comes as an alert on the
// first read. The server sends nothing else unasked.
const refusalWait = 500 * time.Millisecond

// ReadServedCert makes one TLS handshake with addr and returns the leaf
// certificate the server sent, whether or not the handshake succeeds. The
// handshake itself verifies nothing: the leaf is verified afterwards
// against roots (intermediates from the chain sent, no name check, at a
// time within the leaf's validity, so that an expired certificate is not
// reported as a CA mismatch). base's client certificate is offered when
// the server asks for one; client says whether to offer HTTP/2 as etcd's
// gRPC clients do.
func ReadServedCert(ctx context.Context, addr, host string, client bool, base *tls.Config, roots *x509.CertPool, timeout time.Duration) ServedCert {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return ServedCert{Status: CertUnreachable, Err: flattenTimeout(ctx, err, timeout).Error()}
	}
	defer conn.Close()

	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		cfg = base.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.NextProtos = nil
	if client {
		cfg.NextProtos = []string{"h2"}
	}
	var chain []*x509.Certificate
	cfg.InsecureSkipVerify = true
	cfg.VerifyPeerCertificate = nil
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		chain = cs.PeerCertificates
		return nil
	}
	var requested, unfit bool
	own, ownCerts := cfg.GetClientCertificate, cfg.Certificates
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		requested = true
		c := &tls.Certificate{}
		switch {
		case own != nil:
			got, err := own(cri)
			if err != nil {
				unfit = true
				return c, nil
			}
			if got != nil {
				c = got
			}
		case len(ownCerts) > 0:
			c = &ownCerts[0]
		}
		// The server names the CAs it accepts: a certificate of none of
		// them is one the agent does not hold.
		if len(c.Certificate) == 0 || cri.SupportsCertificate(c) != nil {
			unfit = true
		}
		return c, nil
	}
	tc := tls.Client(conn, cfg)
	herr := tc.HandshakeContext(ctx)
	if herr == nil && requested && tc.ConnectionState().Version == tls.VersionTLS13 {
		wait := refusalWait
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		tc.SetReadDeadline(time.Now().Add(wait)) //nolint:errcheck
		var b [1]byte
		if _, err := tc.Read(b[:]); err != nil && !isNetTimeout(err) {
			herr = err
		}
	}

	sc := ServedCert{Status: CertOK}
	if herr != nil {
		sc.Err = flattenTimeout(ctx, herr, timeout).Error()
	}
	if len(chain) == 0 {
		sc.Status = CertUnreachable
		if herr != nil {
			sc.Status = CertHandshakeFailed
		}
		return sc
	}
	leaf := chain[0]
	sc.Read, sc.NotBefore, sc.NotAfter = true, leaf.NotBefore, leaf.NotAfter
	sc.CAMismatch = !chainsTo(leaf, chain[1:], roots)
	switch {
	case requested && (unfit || herr != nil && refusedClientCert(herr)):
		sc.Status = CertClientCertRequired
	case herr != nil:
		sc.Status = CertHandshakeFailed
	}
	return sc
}

// chainsTo reports whether leaf verifies against roots, at a time within
// its own validity.
func chainsTo(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool) bool {
	at := time.Now()
	if at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	}
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// refusedClientCert: the server's alert refuses the agent's certificate,
// or its lack of one.
func refusedClientCert(err error) bool {
	switch Classify(err) {
	case ReasonTLSBadCertificate, ReasonTLSUnknownAuthority, ReasonTLSExpired:
		return true
	}
	return false
}

// flattenTimeout turns the handshake's own timeout into a plain message.
func flattenTimeout(ctx context.Context, err error, timeout time.Duration) error {
	if ctx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || isNetTimeout(err)) {
		return fmt.Errorf("no answer within %s", timeout)
	}
	return err
}
