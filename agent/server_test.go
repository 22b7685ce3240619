package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// --web.config.file: the agent's own endpoints behind basic auth, through
// exporter-toolkit, on a real socket.
func TestServeWebConfigBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(webConfig, []byte(fmt.Sprintf("basic_auth_users:\n  prometheus: %s\n", hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, []string{closedEndpoint(t)}, func(c *Config) { c.Disk.Enabled = false })
	ls, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ls, webConfig, a.Handler(), slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	url := "http://" + ls[0].Addr().String() + "/healthz"
	get := func(user, pass string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
				return resp.StatusCode
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
		}
	}
	if code := get("", ""); code != http.StatusUnauthorized {
		t.Errorf("without credentials: %d, want 401", code)
	}
	if code := get("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("with a wrong password: %d, want 401", code)
	}
	if code := get("prometheus", "s3cret"); code != http.StatusOK {
		t.Errorf("with the password: %d, want 200", code)
	}
}

// A taken port is a clear error naming the flag.
func TestListenPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Listen([]string{l.Addr().String()})
	if err == nil || !strings.HasPrefix(err.Error(), "--web.listen-address "+l.Addr().String()+": the port is already in use") {
		t.Fatalf("error = %v", err)
	}
}

// net/http's own errors, a failed TLS handshake here, go to the agent's
// structured logger and not to the standard log.
func TestServeErrorLogIsStructured(t *testing.T) {
	certs := etcdtest.NewTLS(t)
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(webConfig, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n", certs.ServerCertFile, certs.ServerKeyFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The standard log is process-wide: this test must not run in parallel.
	var std syncBuffer
	defer log.SetOutput(log.Writer())
	log.SetOutput(&std)

	var structured syncBuffer
	logger := slog.New(slog.NewJSONHandler(&structured, nil))
	ls, err := Listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	go func() { done <- Serve(ctx, ls, webConfig, ok, logger) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	addr := ls[0].Addr().String()

	// TLS works, so the handshake error below is the client's fault alone.
	pool, err := certs.CertPool()
	if err != nil {
		t.Fatal(err)
	}
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if body := fetch(t, tlsClient, "https://"+addr+"/"); body != "ok\n" {
		t.Fatalf("over TLS: %q, want ok", body)
	}
	if body := fetch(t, http.DefaultClient, "http://"+addr+"/"); !strings.Contains(body, "Client sent an HTTP request to an HTTPS server") {
		t.Fatalf("plain HTTP to the TLS port: %q", body)
	}
	want := "http: TLS handshake error from 127.0.0.1:"
	var line map[string]any
	for deadline := time.Now().Add(30 * time.Second); line == nil; time.Sleep(50 * time.Millisecond) {
		for _, l := range strings.Split(structured.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil && strings.HasPrefix(fmt.Sprint(rec["msg"]), want) {
				line = rec
			}
		}
		if line == nil && time.Now().After(deadline) {
			t.Fatalf("no %q in the structured log:\n%s\nstandard log:\n%s", want, structured.String(), std.String())
		}
	}
	if line["level"] != "ERROR" || !strings.Contains(fmt.Sprint(line["msg"]), "client sent an HTTP request to an HTTPS server") {
		t.Errorf("structured record = %v, want level ERROR and the cause", line)
	}
	if strings.Contains(std.String(), "TLS handshake error") {
		t.Errorf("the standard log got the handshake error:\n%s", std.String())
	}
}

// fetch GETs url, retrying while the server is not up yet, and returns the
// body.
func fetch(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := c.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
}

// syncBuffer is a bytes.Buffer that several goroutines may write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
