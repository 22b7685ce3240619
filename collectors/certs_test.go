package collectors

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// selfSigned returns a PEM certificate expiring at notAfter.
func selfSigned(t *testing.T, cn string, notAfter time.Time, ca bool) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter, IsCA: ca, BasicConstraintsValid: ca}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// The directory scan: certificates in *.crt and *.pem, the first to
// expire of a bundle, keys and subdirectories left alone, the count
// bounded.
func TestReadCertDir(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().Truncate(time.Second)
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.crt", selfSigned(t, "ca", now.Add(time.Hour), true))
	bundle := append(selfSigned(t, "late", now.Add(48*time.Hour), false), selfSigned(t, "early", now.Add(2*time.Hour), false)...)
	write("bundle.pem", bundle)
	write("server.key", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	write("server-key.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	write("empty.pem", []byte("nothing"))
	if err := os.Mkdir(filepath.Join(dir, "sub.crt"), 0o700); err != nil {
		t.Fatal(err)
	}
	files, skipped, err := ReadCertDir(dir)
	if err != nil || skipped != 0 {
		t.Fatalf("err %v, skipped %d", err, skipped)
	}
	if len(files) != 2 || files[0].Name != "bundle.pem" || files[1].Name != "ca.crt" {
		t.Fatalf("files %+v", files)
	}
	if got := files[0].First.NotAfter; !got.Equal(now.Add(2 * time.Hour)) {
		t.Errorf("bundle: first to expire at %s", got)
	}
	if len(files[1].CAs) != 1 || len(files[0].CAs) != 0 {
		t.Errorf("CAs: %d in ca.crt, %d in bundle.pem", len(files[1].CAs), len(files[0].CAs))
	}

	write("broken.crt", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	if files, _, err := ReadCertDir(dir); err == nil || len(files) != 2 {
		t.Errorf("a broken file: err %v, %d files", err, len(files))
	}
	os.Remove(filepath.Join(dir, "broken.crt"))

	for i := range MaxCertFiles {
		write(fmt.Sprintf("z%03d.crt", i), selfSigned(t, "z", now.Add(time.Hour), false))
	}
	files, skipped, err = ReadCertDir(dir)
	if err != nil || len(files) != MaxCertFiles || skipped != 2 {
		t.Errorf("over the bound: err %v, %d files, %d skipped", err, len(files), skipped)
	}
}
