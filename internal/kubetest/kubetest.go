// Package kubetest runs a real Kubernetes API server for tests: the
// kube-apiserver that `make tools` builds from the Go module graph
// (tools/kube), on a real etcd process from package etcdtest, on loopback.
//
// Tests use it to check manifests the way a cluster would: server-side
// apply with dryRun=All and strict field validation, after installing the
// CRDs the manifests need. The etcd behind it holds what the API server
// writes, under /registry, for tests that read Kubernetes' own key space.
//
// Nothing here talks to the API server through client-go: plain HTTPS and
// JSON keep k8s.io modules out of etcdpulse's go.mod.
//
// It is internal to etcdpulse: not public API.
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// Environment variables `make test` sets.
const (
	// APIServerEnv gives the kube-apiserver binary.
	APIServerEnv = "ETCDPULSE_KUBE_APISERVER"
	// CRDsEnv gives the directory of the published CRD files
	// (prometheus-operator's and grafana-operator's) that `make tools`
	// copies from their modules.
	CRDsEnv = "ETCDPULSE_CRDS"
)

// startTimeout bounds the API server's start, bootstrap included
// (generous: the machine is shared).
const startTimeout = 90 * time.Second

// APIServer is a running kube-apiserver owned by a test.
type APIServer struct {
	// URL is the API server's base URL, https://127.0.0.1:PORT.
	URL string
	// Etcd is the cluster holding its data, under EtcdPrefix.
	Etcd *etcdtest.Cluster

	token  string
	client *http.Client
	log    string

	mu    sync.Mutex
	kinds map[string]resourceInfo // "group/version/Kind"
}

// EtcdPrefix is where the API server keeps its objects in etcd (its
// default, --etcd-prefix).
const EtcdPrefix = "/registry"

// Binary returns $ETCDPULSE_KUBE_APISERVER, or marks the test Unavailable.
func Binary(t testing.TB) string {
	t.Helper()
	return testenv.EnvFile(t, APIServerEnv, "`make tools` builds kube-apiserver from tools/kube into bin/kube-apiserver")
}

// CRDDir returns $ETCDPULSE_CRDS, or marks the test Unavailable.
func CRDDir(t testing.TB) string {
	t.Helper()
	return testenv.EnvFile(t, CRDsEnv, "`make tools` copies the prometheus-operator and grafana-operator CRD files into bin/crds")
}

// Start starts etcd and a kube-apiserver on it, waits until /readyz
// answers, and stops both when the test ends.
func Start(t testing.TB) *APIServer {
	t.Helper()
	bin := Binary(t)
	etcd := etcdtest.Start(t, etcdtest.Options{Mode: etcdtest.Process})
	dir := t.TempDir()
	token := randomHex(16)
	if err := writeFiles(dir, token); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		s, err := start(t, bin, dir, token, etcd)
		if err == nil {
			return s
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("kubetest: starting kube-apiserver: %v", lastErr)
	return nil
}

var errPortTaken = errors.New("port taken")

func start(t testing.TB, bin, dir, token string, etcd *etcdtest.Cluster) (*APIServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "serving")
	logPath := filepath.Join(dir, "kube-apiserver-"+strconv.Itoa(port)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin,
		"--etcd-servers="+strings.Join(etcd.ClientURLs(), ","),
		"--etcd-prefix="+EtcdPrefix,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+certDir,
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		// A loopback advertise address is refused by the endpoint
		// reconciler; no Service needs the kubernetes endpoints here.
		"--endpoint-reconciler-type=none",
		// The flow-control machinery and its bootstrap objects cost the
		// start seconds and a test nothing.
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"-v=1",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// The API server dies with the test binary, as etcdtest's members do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
	}
	s := &APIServer{
		URL:   "https://127.0.0.1:" + strconv.Itoa(port),
		Etcd:  etcd,
		token: token,
		log:   logPath,
		kinds: map[string]resourceInfo{},
	}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case err := <-exited:
			exited <- err
			out, _ := os.ReadFile(logPath)
			if bytes.Contains(out, []byte("address already in use")) {
				return nil, errPortTaken
			}
			return nil, fmt.Errorf("kube-apiserver exited (%v); its log:\n%s", err, tail(out, 4000))
		default:
		}
		if s.client == nil {
			// The serving certificate appears once the server has made it.
			if c, err := clientFor(filepath.Join(certDir, "apiserver.crt")); err == nil {
				s.client = c
			}
		}
		if s.client != nil {
			if err := s.ready(); err == nil {
				break
			} else if time.Now().After(deadline) {
				stop()
				out, _ := os.ReadFile(logPath)
				return nil, fmt.Errorf("not ready within %s: %v; its log:\n%s", startTimeout, err, tail(out, 4000))
			}
		} else if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("no serving certificate in %s within %s", certDir, startTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("kube-apiserver log (last lines):\n%s", tail(out, 4000))
		}
	})
	return s, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// writeFiles writes the token file (one user in system:masters) and the
// service-account signing key.
func writeFiles(dir, token string) error {
	tokens := token + `,etcdpulse-test,etcdpulse-test,"system:masters"` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// clientFor trusts the API server's self-signed serving certificate, made
// for the in-cluster names of the kubernetes Service.
func clientFor(certFile string) (*http.Client, error) {
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("%s: no certificate yet", certFile)
	}
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "kubernetes.default.svc"}},
	}, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *APIServer) ready() error {
	body, code, err := s.do(context.Background(), http.MethodGet, "/readyz", "", nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("/readyz: %d %s", code, bytes.TrimSpace(body))
	}
	return nil
}

// do sends one request with the test user's token.
func (s *APIServer) do(ctx context.Context, method, path, contentType string, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return out, resp.StatusCode, err
}

// Do sends a request without a body and returns the response body and
// status code.
func (s *APIServer) Do(ctx context.Context, method, path string) ([]byte, int, error) {
	return s.do(ctx, method, path, "", nil)
}

// Object identifies one document of a manifest.
type Object struct {
	APIVersion, Kind, Namespace, Name string
}

func (o Object) String() string {
	if o.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.Name)
	}
	return o.Kind + " " + o.Name
}

// Documents splits a multi-document YAML manifest, skipping empty
// documents (a chart's disabled templates render as comments only).
func Documents(manifest []byte) ([][]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(manifest))
	var out [][]byte
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(out)+1, err)
		}
		if len(node.Content) == 0 || node.Content[0].Kind != yaml.MappingNode || len(node.Content[0].Content) == 0 {
			continue
		}
		b, err := yaml.Marshal(&node)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
}

func identify(doc []byte) (Object, error) {
	var m struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name      string `yaml:"name"`
			Namespace string `yaml:"namespace"`
		} `yaml:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &m); err != nil {
		return Object{}, err
	}
	if m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
		return Object{}, fmt.Errorf("a document without apiVersion, kind or metadata.name:\n%s", doc)
	}
	return Object{m.APIVersion, m.Kind, m.Metadata.Namespace, m.Metadata.Name}, nil
}

type resourceInfo struct {
	name       string
	namespaced bool
}

// resource finds the REST resource of a kind from the API server's
// discovery documents.
func (s *APIServer) resource(ctx context.Context, apiVersion, kind string) (resourceInfo, error) {
	key := apiVersion + "/" + kind
	s.mu.Lock()
	r, ok := s.kinds[key]
	s.mu.Unlock()
	if ok {
		return r, nil
	}
	path := "/apis/" + apiVersion
	if !strings.Contains(apiVersion, "/") {
		path = "/api/" + apiVersion
	}
	body, code, err := s.do(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return r, err
	}
	if code != http.StatusOK {
		return r, fmt.Errorf("no API %s on this server (GET %s: %d): is its CRD installed?", apiVersion, path, code)
	}
	var list struct {
		Resources []struct {
			Name       string `json:"name"`
			Kind       string `json:"kind"`
			Namespaced bool   `json:"namespaced"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return r, fmt.Errorf("GET %s: %w", path, err)
	}
	for _, res := range list.Resources {
		if res.Kind == kind && !strings.Contains(res.Name, "/") {
			r = resourceInfo{name: res.Name, namespaced: res.Namespaced}
			s.mu.Lock()
			s.kinds[key] = r
			s.mu.Unlock()
			return r, nil
		}
	}
	return r, fmt.Errorf("no kind %s in %s", kind, apiVersion)
}

// Apply applies every document of manifest by server-side apply, with
// strict field validation (an unknown or duplicate field is an error, as
// `kubectl apply --server-side --validate=strict` makes it). With dryRun
// the API server runs validation, defaulting and admission, Pod Security
// included, and stores nothing. It returns one error per rejected
// document, naming it and quoting the API server's message.
func (s *APIServer) Apply(ctx context.Context, manifest []byte, dryRun bool) error {
	docs, err := Documents(manifest)
	if err != nil {
		return err
	}
	var errs []error
	for _, doc := range docs {
		if err := s.applyOne(ctx, doc, dryRun); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *APIServer) applyOne(ctx context.Context, doc []byte, dryRun bool) error {
	obj, err := identify(doc)
	if err != nil {
		return err
	}
	res, err := s.resource(ctx, obj.APIVersion, obj.Kind)
	if err != nil {
		return fmt.Errorf("%s: %w", obj, err)
	}
	base := "/apis/" + obj.APIVersion
	if !strings.Contains(obj.APIVersion, "/") {
		base = "/api/" + obj.APIVersion
	}
	switch {
	case res.namespaced && obj.Namespace == "":
		return fmt.Errorf("%s: namespaced kind without metadata.namespace", obj)
	case res.namespaced:
		base += "/namespaces/" + url.PathEscape(obj.Namespace)
	case obj.Namespace != "":
		return fmt.Errorf("%s: cluster-scoped kind with metadata.namespace", obj)
	}
	q := url.Values{"fieldManager": {"etcdpulse-test"}, "fieldValidation": {"Strict"}, "force": {"true"}}
	if dryRun {
		q.Set("dryRun", "All")
	}
	path := base + "/" + res.name + "/" + url.PathEscape(obj.Name) + "?" + q.Encode()
	body, code, err := s.do(ctx, http.MethodPatch, path, "application/apply-patch+yaml", doc)
	if err != nil {
		return fmt.Errorf("%s: %w", obj, err)
	}
	if code/100 != 2 {
		var status struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &status) == nil && status.Message != "" {
			return fmt.Errorf("%s: %d: %s", obj, code, status.Message)
		}
		return fmt.Errorf("%s: %d: %s", obj, code, body)
	}
	return nil
}

// InstallCRDs applies the CRD files for real and waits until the API
// server serves each of their kinds.
func (s *APIServer) InstallCRDs(t testing.TB, files ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	type served struct{ apiVersion, kind string }
	var want []served
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(ctx, b, false); err != nil {
			t.Fatalf("installing %s: %v", filepath.Base(f), err)
		}
		var crd struct {
			Spec struct {
				Group string `yaml:"group"`
				Names struct {
					Kind string `yaml:"kind"`
				} `yaml:"names"`
				Versions []struct {
					Name   string `yaml:"name"`
					Served bool   `yaml:"served"`
				} `yaml:"versions"`
			} `yaml:"spec"`
		}
		if err := yaml.Unmarshal(b, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Served {
				want = append(want, served{crd.Spec.Group + "/" + v.Name, crd.Spec.Names.Kind})
			}
		}
	}
	for _, w := range want {
		testenv.Eventually(t, startTimeout, "the API server serving "+w.kind+" "+w.apiVersion, func() error {
			_, err := s.resource(ctx, w.apiVersion, w.kind)
			return err
		})
	}
}

// CreateNamespace creates a namespace for real, with labels (for example
// Pod Security's enforce level), and its default ServiceAccount, which the
// controller manager (not running here) would make and the ServiceAccount
// admission plugin looks up for every Pod.
func (s *APIServer) CreateNamespace(t testing.TB, name string, labels map[string]string) {
	t.Helper()
	doc, err := yaml.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name, "labels": labels},
	})
	if err != nil {
		t.Fatal(err)
	}
	sa := fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: %s}\n", name)
	if err := s.Apply(context.Background(), append(append(doc, "---\n"...), sa...), false); err != nil {
		t.Fatal(err)
	}
}
