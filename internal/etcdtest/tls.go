package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLS holds the paths of PEM files for a test certificate authority, a
// server/peer certificate and a client certificate.
type TLS struct {
	CAFile         string // CA certificate (PEM)
	ServerCertFile string // server and peer certificate (server+client auth), valid for 127.0.0.1, ::1, localhost
	ServerKeyFile  string // key of ServerCertFile
	ClientCertFile string // client certificate (client auth)
	ClientKeyFile  string // key of ClientCertFile
	Dir            string // directory holding all the files

	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// IssueClient writes a new client certificate signed by the CA, valid from
// an hour ago until notAfter, and returns its certificate and key files.
func (t *TLS) IssueClient(tb testing.TB, cn string, notAfter time.Time) (certFile, keyFile string) {
	tb.Helper()
	der, key, err := issueCert(t.caCert, t.caKey, cn, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false, time.Now().Add(-time.Hour), notAfter)
	if err != nil {
		tb.Fatalf("etcdtest: issuing client certificate: %v", err)
	}
	name := fmt.Sprintf("client-%x", randomSerial().Uint64())
	certFile, keyFile = filepath.Join(t.Dir, name+".pem"), filepath.Join(t.Dir, name+"-key.pem")
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		tb.Fatal(err)
	}
	if err := writeKey(keyFile, key); err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile
}

// ReplaceServerCert overwrites the server and peer certificate with one
// valid from notBefore until notAfter. etcd reads its certificate at every
// handshake, so running members serve the new one from the next
// connection on.
func (t *TLS) ReplaceServerCert(tb testing.TB, notBefore, notAfter time.Time) {
	tb.Helper()
	der, key, err := issueCert(t.caCert, t.caKey, "etcdtest server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, true, notBefore, notAfter)
	if err != nil {
		tb.Fatalf("etcdtest: issuing server certificate: %v", err)
	}
	// The key first: a handshake between the two writes fails either way.
	if err := writeKey(t.ServerKeyFile, key); err != nil {
		tb.Fatal(err)
	}
	if err := writePEM(t.ServerCertFile, "CERTIFICATE", der); err != nil {
		tb.Fatal(err)
	}
}

func issueCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usages []x509.ExtKeyUsage, server bool, notBefore, notAfter time.Time) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"etcdpulse tests"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usages,
	}
	if server {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s: %w", cn, err)
	}
	return der, key, nil
}

// NewTLS generates a CA, a server/peer certificate and a client certificate
// as PEM files in a temporary directory of t.
func NewTLS(t testing.TB) *TLS {
	t.Helper()
	dir := t.TempDir()
	tl, err := generateTLS(dir)
	if err != nil {
		t.Fatalf("etcdtest: generating TLS material: %v", err)
	}
	return tl
}

func generateTLS(dir string) (*TLS, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "etcdtest CA", Organization: []string{"etcdpulse tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	issue := func(cn string, usages []x509.ExtKeyUsage, server bool) ([]byte, *ecdsa.PrivateKey, error) {
		return issueCert(caCert, caKey, cn, usages, server, now.Add(-time.Hour), now.Add(10*365*24*time.Hour))
	}
	srvDER, srvKey, err := issue("etcdtest server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, true)
	if err != nil {
		return nil, err
	}
	cliDER, cliKey, err := issue("etcdtest client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false)
	if err != nil {
		return nil, err
	}

	tl := &TLS{
		Dir:            dir,
		CAFile:         filepath.Join(dir, "ca.pem"),
		ServerCertFile: filepath.Join(dir, "server.pem"),
		ServerKeyFile:  filepath.Join(dir, "server-key.pem"),
		ClientCertFile: filepath.Join(dir, "client.pem"),
		ClientKeyFile:  filepath.Join(dir, "client-key.pem"),
		caCert:         caCert,
		caKey:          caKey,
	}
	if err := writePEM(tl.CAFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	if err := writePEM(tl.ServerCertFile, "CERTIFICATE", srvDER); err != nil {
		return nil, err
	}
	if err := writeKey(tl.ServerKeyFile, srvKey); err != nil {
		return nil, err
	}
	if err := writePEM(tl.ClientCertFile, "CERTIFICATE", cliDER); err != nil {
		return nil, err
	}
	if err := writeKey(tl.ClientKeyFile, cliKey); err != nil {
		return nil, err
	}
	return tl, nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// ClientTLSConfig returns a *tls.Config usable by clients (CA + client cert).
func (t *TLS) ClientTLSConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.ClientCertFile, t.ClientKeyFile)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: loading client certificate: %w", err)
	}
	pool, err := t.CertPool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      pool,
		Certificates: []tls.Certificate{cert},
	}, nil
}

// CertPool returns a pool holding only the test CA certificate.
func (t *TLS) CertPool() (*x509.CertPool, error) {
	caPEM, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: reading CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("etcdtest: no certificate in %s", t.CAFile)
	}
	return pool, nil
}
