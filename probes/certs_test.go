package probes

import (
	"context"
	"crypto/tls"
	"net/url"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// A real member's peer port demands a client certificate (etcd's
// --peer-client-cert-auth): an agent without one still reads the
// certificate the port serves, and says the port demands one; with the
// cluster's client certificate the handshake completes. A CA that did not
// sign the certificate is a mismatch, not a failure.
func TestReadServedCertPeerPort(t *testing.T) {
	tl := etcdtest.NewTLS(t)
	c := etcdtest.Start(t, etcdtest.Options{Mode: etcdtest.InProcess, TLS: tl})
	u, err := url.Parse(c.Member(0).PeerURL())
	if err != nil {
		t.Fatal(err)
	}
	pool, err := tl.CertPool()
	if err != nil {
		t.Fatal(err)
	}
	full, err := tl.ClientTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	other, err := etcdtest.NewTLS(t).CertPool()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		base     *tls.Config
		roots    bool // the cluster's CA
		status   string
		mismatch bool
	}{
		{"no client certificate", &tls.Config{RootCAs: pool}, true, CertClientCertRequired, false},
		{"the cluster's client certificate", full, true, CertOK, false},
		{"another CA", full, false, CertOK, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roots := other
			if tc.roots {
				roots = pool
			}
			sc := ReadServedCert(context.Background(), u.Host, u.Hostname(), false, tc.base, roots, 5*time.Second)
			if !sc.Read || sc.Status != tc.status || sc.CAMismatch != tc.mismatch {
				t.Fatalf("got %+v, want read, status %s, mismatch %v", sc, tc.status, tc.mismatch)
			}
			if time.Until(sc.NotAfter) < 365*24*time.Hour {
				t.Errorf("not after %s: not the test server certificate", sc.NotAfter)
			}
		})
	}
	// A closed port: nothing read.
	if sc := ReadServedCert(context.Background(), "127.0.0.1:1", "127.0.0.1", false, full, pool, time.Second); sc.Read || sc.Status != CertUnreachable {
		t.Errorf("closed port: %+v", sc)
	}
}
