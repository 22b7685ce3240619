package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/etcdpulse/etcdpulse/deploy"
	"github.com/etcdpulse/etcdpulse/internal/kubetest"
)

// privileged is the Pod Security level the agent's namespace needs:
// hostNetwork, hostPID and hostPath are beyond baseline.
var privileged = map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}

// Every rendering of the chart (every preset, every toggle on, every
// toggle off) and the plain manifest go through a real kube-apiserver, on
// a real etcd, with the prometheus-operator and grafana-operator CRDs
// installed from their published files: server-side apply with strict
// field validation, dry run, so admission (Pod Security included) and the
// CRDs' schemas judge every field.
func TestAppliesToKubeAPIServer(t *testing.T) {
	h := helm(t)
	crdDir := kubetest.CRDDir(t)
	s := kubetest.Start(t)
	crds, err := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	if err != nil || len(crds) == 0 {
		t.Fatalf("no CRD files in %s (%v)", crdDir, err)
	}
	s.InstallCRDs(t, crds...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The plain manifest, applied for real, as `kubectl apply
	// --server-side -f deploy/etcdpulse.yaml` would: its Namespace comes
	// first and carries the Pod Security level the pods need.
	plain, err := os.ReadFile("etcdpulse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, plain, false); err != nil {
		t.Fatalf("deploy/etcdpulse.yaml: %v", err)
	}
	if ns, _, err := s.Do(ctx, "GET", "/api/v1/namespaces/etcdpulse"); err != nil || !strings.Contains(string(ns), `"pod-security.kubernetes.io/enforce":"privileged"`) {
		t.Fatalf("the plain manifest's namespace lacks the privileged Pod Security level: %s", ns)
	}

	// The pod the DaemonSet would make is admitted in that namespace, and
	// refused by Pod Security "baseline" with the message docs/install.md
	// quotes.
	pod := func(ns string) []byte { return daemonSetPod(t, plain, ns) }
	if err := s.Apply(ctx, pod("etcdpulse"), true); err != nil {
		t.Fatalf("the DaemonSet's pod in namespace etcdpulse: %v", err)
	}
	s.CreateNamespace(t, "baseline", map[string]string{"pod-security.kubernetes.io/enforce": "baseline"})
	if err := s.Apply(ctx, []byte("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: etcdpulse, namespace: baseline}\n"), false); err != nil {
		t.Fatal(err)
	}
	refused := s.Apply(ctx, pod("baseline"), true)
	if err := refused; err == nil || !strings.Contains(err.Error(), `violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true, hostPID=true)`) {
		t.Fatalf("the pod in a baseline namespace: got %v, want the Pod Security violation", err)
	}
	install, err := os.ReadFile("../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	_, violation, _ := strings.Cut(refused.Error(), "is forbidden: ")
	if !strings.Contains(string(install), violation) {
		t.Errorf("docs/install.md does not quote the Pod Security violation the API server gives:\n%s", violation)
	}

	s.CreateNamespace(t, "monitoring", nil) // overrides' dashboards.configMaps.namespace
	for _, c := range deploy.Matrix() {
		t.Run(c.Name, func(t *testing.T) {
			ns := "m-" + c.Name
			s.CreateNamespace(t, ns, privileged)
			out, err := deploy.Render(h, chart, append([]string{"--namespace", ns}, c.Args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Apply(ctx, out, true); err != nil {
				t.Fatal(err)
			}
			// For real too, so that the pod finds its ServiceAccount.
			if err := s.Apply(ctx, out, false); err != nil {
				t.Fatal(err)
			}
			if err := s.Apply(ctx, daemonSetPod(t, out, ns), true); err != nil {
				t.Fatalf("the DaemonSet's pod: %v", err)
			}
		})
	}
}

// daemonSetPod returns the Pod the DaemonSet of a rendering would have its
// controller create in namespace ns (no controller runs here).
func daemonSetPod(t *testing.T, manifest []byte, ns string) []byte {
	t.Helper()
	for _, o := range decode(t, manifest) {
		if o.kind() != "DaemonSet" {
			continue
		}
		spec, _ := o["spec"].(object)
		tmpl, _ := spec["template"].(object)
		meta, _ := tmpl["metadata"].(object)
		if meta == nil {
			meta = object{}
		}
		meta["name"] = "etcdpulse-probe-pod"
		meta["namespace"] = ns
		out, err := yaml.Marshal(object{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": tmpl["spec"]})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Fatal("no DaemonSet in the rendering")
	return nil
}
