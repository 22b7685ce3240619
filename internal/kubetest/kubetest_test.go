package kubetest_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/kubetest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const configMap = `apiVersion: v1
kind: ConfigMap
metadata:
  name: probe
  namespace: %s
data:
  a: b
`

const hostPod = `apiVersion: v1
kind: Pod
metadata:
  name: host
  namespace: %s
spec:
  hostNetwork: true
  containers:
  - name: c
    image: example.invalid/c:1
`

func manifest(tmpl, ns string) []byte {
	return []byte(strings.ReplaceAll(tmpl, "%s", ns))
}

// One API server for the whole test: it takes seconds to start.
func TestAPIServer(t *testing.T) {
	s := kubetest.Start(t)
	ctx := context.Background()
	s.CreateNamespace(t, "open", nil)
	s.CreateNamespace(t, "baseline", map[string]string{"pod-security.kubernetes.io/enforce": "baseline"})

	t.Run("dry-run accepts a valid object and stores nothing", func(t *testing.T) {
		if err := s.Apply(ctx, manifest(configMap, "open"), true); err != nil {
			t.Fatal(err)
		}
		if _, code, _ := s.Do(ctx, http.MethodGet, "/api/v1/namespaces/open/configmaps/probe"); code != http.StatusNotFound {
			t.Fatalf("GET after a dry run: %d, want 404", code)
		}
	})

	t.Run("an unknown field is rejected", func(t *testing.T) {
		bad := string(manifest(configMap, "open")) + "dataa:\n  x: y\n"
		err := s.Apply(ctx, []byte(bad), true)
		if err == nil || !strings.Contains(err.Error(), ".dataa: field not declared in schema") {
			t.Fatalf("got %v, want the unknown field named", err)
		}
		if !strings.Contains(err.Error(), "ConfigMap open/probe") {
			t.Fatalf("error %q does not name the object", err)
		}
	})

	t.Run("Pod Security admission runs in a dry run", func(t *testing.T) {
		if err := s.Apply(ctx, manifest(hostPod, "open"), true); err != nil {
			t.Fatalf("privileged namespace: %v", err)
		}
		err := s.Apply(ctx, manifest(hostPod, "baseline"), true)
		if err == nil || !strings.Contains(err.Error(), `violates PodSecurity "baseline:latest"`) || !strings.Contains(err.Error(), "hostNetwork=true") {
			t.Fatalf("got %v, want a PodSecurity violation naming hostNetwork", err)
		}
	})

	t.Run("a kind without its CRD is named", func(t *testing.T) {
		doc := "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: x, namespace: open}\nspec: {}\n"
		err := s.Apply(ctx, []byte(doc), true)
		if err == nil || !strings.Contains(err.Error(), "is its CRD installed?") {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("CRDs install and validate their schema", func(t *testing.T) {
		dir := kubetest.CRDDir(t)
		s.InstallCRDs(t, filepath.Join(dir, "monitoring.coreos.com_prometheusrules.yaml"))
		rule := "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: r, namespace: open}\nspec:\n  groups:\n  - name: g\n    rules:\n    - alert: A\n      expr: up == 0\n      for: 1m\n"
		if err := s.Apply(ctx, []byte(rule), true); err != nil {
			t.Fatal(err)
		}
		bad := strings.Replace(rule, "for: 1m", "for: soon", 1)
		if err := s.Apply(ctx, []byte(bad), true); err == nil || !strings.Contains(err.Error(), "spec.groups[0].rules[0].for") {
			t.Fatalf("a bad duration: got %v, want the field named", err)
		}
	})

	t.Run("objects live in etcd under /registry", func(t *testing.T) {
		if err := s.Apply(ctx, manifest(configMap, "open"), false); err != nil {
			t.Fatal(err)
		}
		cli := s.Etcd.Client(t)
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, kubetest.EtcdPrefix+"/configmaps/open/probe", clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != 1 {
			t.Fatalf("%s/configmaps/open/probe: %d keys, want 1", kubetest.EtcdPrefix, resp.Count)
		}
	})
}

func TestDocuments(t *testing.T) {
	docs, err := kubetest.Documents([]byte("---\n# Source: a comment only\n---\na: 1\n---\n\n---\nb: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 {
		t.Fatalf("got %d documents, want 2: %q", len(docs), docs)
	}
	if _, err := kubetest.Documents([]byte("a: [\n")); err == nil {
		t.Fatal("a broken document: no error")
	}
}
