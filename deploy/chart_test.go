package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/etcdpulse/etcdpulse/alerts"
	"github.com/etcdpulse/etcdpulse/dashboards"
	"github.com/etcdpulse/etcdpulse/deploy"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// helmEnv names the helm binary; `make test` builds it and sets it.
const helmEnv = "ETCDPULSE_HELM"

const chart = "helm/etcdpulse"

func helm(t *testing.T) string {
	return testenv.EnvFile(t, helmEnv, "`make tools` builds bin/helm from tools/helm and `make test` sets it")
}

// matrixCase returns the case of deploy.Matrix() named name.
func matrixCase(t *testing.T, name string) deploy.Case {
	t.Helper()
	for _, m := range deploy.Matrix() {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no case %q in deploy.Matrix()", name)
	return deploy.Case{}
}

// render renders the chart and fails the test when helm does.
func render(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := deploy.Render(helm(t), chart, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// renderFails renders the chart, expecting helm to fail, and returns its
// stderr.
func renderFails(t *testing.T, args ...string) string {
	t.Helper()
	_, err := deploy.Render(helm(t), chart, args...)
	var rerr *deploy.RenderError
	if !errors.As(err, &rerr) {
		t.Fatalf("%v: error %v, want helm to fail", args, err)
	}
	return rerr.Stderr
}

// object is one decoded Kubernetes document.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }

func (o object) name() string { return o.meta("name") }

// meta returns a string field of the metadata. Nested maps decode as
// object too.
func (o object) meta(field string) string {
	m, _ := o["metadata"].(object)
	s, _ := m[field].(string)
	return s
}

// decode splits a rendering into its documents, failing on any that is not
// YAML with an apiVersion, a kind and a name.
func decode(t *testing.T, manifests []byte) []object {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(manifests))
	var out []object
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("document %d: %v", len(out), err)
		}
		if o == nil {
			continue
		}
		if o["apiVersion"] == nil || o.kind() == "" || o.name() == "" {
			t.Fatalf("document %d has no apiVersion, kind or name: %v", len(out), o)
		}
		out = append(out, o)
	}
}

// only returns the one object of a kind, as v.
func only(t *testing.T, objs []object, kind string, v any) {
	t.Helper()
	var found []object
	for _, o := range objs {
		if o.kind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(found), kind)
	}
	raw, err := yaml.Marshal(found[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
}

func kinds(objs []object) map[string]int {
	out := map[string]int{}
	for _, o := range objs {
		out[o.kind()]++
	}
	return out
}

// The generated files the chart reads are what the code renders.
func TestRulesFileIsCurrent(t *testing.T) {
	want, err := alerts.RuleFile()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(chart, "files", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("deploy/helm/etcdpulse/files/rules.yaml is stale: run make generate")
	}
}

func TestDashboardFilesAreCurrent(t *testing.T) {
	files, err := dashboards.Files()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(chart, "files", "dashboards")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	var want []string
	for _, f := range files {
		want = append(want, f.Name)
		got, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Errorf("%v: run make generate", err)
			continue
		}
		if !bytes.Equal(got, f.JSON) {
			t.Errorf("deploy/%s/%s is stale: run make generate", dir, f.Name)
		}
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("deploy/%s holds %v, want exactly %v (each a ConfigMap): run make generate", dir, names, want)
	}
}

func TestManifestIsCurrent(t *testing.T) {
	body := render(t, deploy.ManifestArgs...)
	want := append([]byte(deploy.ManifestHeader), body...)
	got, err := os.ReadFile("etcdpulse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("deploy/etcdpulse.yaml is stale: run make generate")
	}
	objs := decode(t, got)
	if n := kinds(objs)["Namespace"]; n != 1 {
		t.Errorf("the plain manifest has %d Namespaces, want 1", n)
	}

	var k struct{ Resources []string }
	raw, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &k); err != nil || !slices.Equal(k.Resources, []string{"etcdpulse.yaml"}) {
		t.Errorf("deploy/kustomization.yaml: resources %v (error %v), want [etcdpulse.yaml]", k.Resources, err)
	}
}

func TestChartVersionIsVERSION(t *testing.T) {
	raw, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(raw))
	var c struct {
		Version    string `yaml:"version"`
		AppVersion string `yaml:"appVersion"`
	}
	raw, err = os.ReadFile(filepath.Join(chart, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c.Version != version || c.AppVersion != version {
		t.Errorf("Chart.yaml version %q, appVersion %q; want VERSION's %q for both", c.Version, c.AppVersion, version)
	}
}

type schema struct {
	Properties struct {
		Distribution   struct{ Enum []string }
		PrometheusRule struct {
			Properties map[string]struct {
				AdditionalProperties json.RawMessage `json:"additionalProperties"`
				Properties           map[string]json.RawMessage
			}
		}
	}
}

func readSchema(t *testing.T) schema {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chart, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s schema
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// prometheusRule.disabled and customRules accept the shipped alerts' names
// and no other. They list them as properties with additionalProperties
// false rather than with propertyNames: helm's JSON schema library
// (santhosh-tekuri/jsonschema v6) reports a propertyNames error at a wrong,
// random location, which would send the user to the wrong value.
func TestSchemaAlertNames(t *testing.T) {
	s := readSchema(t)
	var want []string
	for _, r := range alerts.Rules() {
		want = append(want, r.Alert)
	}
	slices.Sort(want)
	for _, key := range []string{"disabled", "customRules"} {
		p := s.Properties.PrometheusRule.Properties[key]
		got := slices.Sorted(maps.Keys(p.Properties))
		if !slices.Equal(got, want) {
			t.Errorf("values.schema.json prometheusRule.%s properties = %v\nwant the alerts of package alerts: %v", key, got, want)
		}
		if string(p.AdditionalProperties) != "false" {
			t.Errorf("prometheusRule.%s: additionalProperties is not false", key)
		}
	}
	if !slices.Equal(s.Properties.Distribution.Enum, deploy.Distributions) {
		t.Errorf("distribution enum %v, want deploy.Distributions %v", s.Properties.Distribution.Enum, deploy.Distributions)
	}
}

func TestLintStrict(t *testing.T) {
	h := helm(t)
	for _, d := range deploy.Distributions {
		out, err := exec.Command(h, "lint", "--strict", chart, "--set", "distribution="+d).CombinedOutput()
		if err != nil {
			t.Errorf("helm lint --strict, distribution %s: %v\n%s", d, err, out)
		}
	}
}

// Every value set of the matrix renders to valid documents, and together
// they render every kind the chart has.
func TestMatrixRenders(t *testing.T) {
	seen := map[string]int{}
	covered := map[string]bool{}
	for _, c := range deploy.Matrix() {
		objs := decode(t, render(t, c.Args...))
		for k, n := range kinds(objs) {
			seen[k] += n
		}
		for _, a := range c.Args {
			if d, ok := strings.CutPrefix(a, "distribution="); ok {
				covered[d] = true
			}
		}
		if slices.Contains(deploy.Distributions, c.Name) {
			covered[c.Name] = true
		}
	}
	for _, d := range deploy.Distributions {
		if !covered[d] {
			t.Errorf("Matrix() does not render distribution %s", d)
		}
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "Secret", "Service", "DaemonSet", "PodMonitor", "ServiceMonitor", "PrometheusRule", "ConfigMap", "GrafanaDashboard"} {
		if seen[k] == 0 {
			t.Errorf("no value set of Matrix() renders a %s", k)
		}
	}
}

// Every toggle on renders what it turns on.
func TestAllToggles(t *testing.T) {
	c := matrixCase(t, "all-toggles")
	objs := decode(t, render(t, c.Args...))
	got := kinds(objs)
	nDash := len(mustFiles(t))
	want := map[string]int{"Namespace": 1, "ServiceAccount": 1, "Secret": 1, "Service": 1, "DaemonSet": 1, "PodMonitor": 1, "ServiceMonitor": 1, "PrometheusRule": 1, "ConfigMap": nDash, "GrafanaDashboard": nDash}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%d %s, want %d", got[k], k, n)
		}
	}
	// The dashboards' ConfigMaps carry the label the sidecar is told to
	// look for, not the default one.
	for _, o := range objs {
		if o.kind() != "ConfigMap" {
			continue
		}
		meta, _ := o["metadata"].(object)
		labels, _ := meta["labels"].(object)
		if labels["etcdpulse_dashboard"] != "yes" || labels["grafana_dashboard"] != nil {
			t.Errorf("ConfigMap %v labels %v, want etcdpulse_dashboard=yes and no grafana_dashboard", meta["name"], labels)
		}
	}
	var ds daemonSet
	only(t, objs, "DaemonSet", &ds)
	pod := ds.Spec.Template.Spec
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", pod.PriorityClassName)
	}
	ctr := pod.Containers[0]
	for _, a := range []string{"--web.config.file=/etc/etcdpulse/web/web-config.yml", "--etcd.wal-dir=/var/lib/etcd-wal", "--host.pid-file=/run/etcd/etcd.pid", "--disk.probe-dir=/var/lib/.etcdpulse-probe", "--log.level=debug"} {
		if !slices.Contains(ctr.Args, a) {
			t.Errorf("args %v lack %s", ctr.Args, a)
		}
	}
	// Basic auth: the kubelet cannot authenticate, so a TCP check.
	if ctr.LivenessProbe.TCPSocket == nil || ctr.ReadinessProbe.TCPSocket == nil {
		t.Errorf("with basic auth the probes are %+v, %+v; want tcpSocket", ctr.LivenessProbe, ctr.ReadinessProbe)
	}
	var pm struct {
		Spec struct {
			PodMetricsEndpoints []endpoint `yaml:"podMetricsEndpoints"`
		}
	}
	only(t, objs, "PodMonitor", &pm)
	var sm struct {
		Spec struct{ Endpoints []endpoint }
	}
	only(t, objs, "ServiceMonitor", &sm)
	for name, e := range map[string]endpoint{"PodMonitor": pm.Spec.PodMetricsEndpoints[0], "ServiceMonitor": sm.Spec.Endpoints[0]} {
		if e.Scheme != "https" || e.BasicAuth == nil || e.TLSConfig == nil {
			t.Errorf("%s endpoint: scheme %q, basicAuth %v, tlsConfig %v", name, e.Scheme, e.BasicAuth, e.TLSConfig)
		}
		checkRelabelings(t, name, e, "kubernetes")
	}
}

func mustFiles(t *testing.T) []dashboards.File {
	t.Helper()
	files, err := dashboards.Files()
	if err != nil {
		t.Fatal(err)
	}
	return files
}

type endpoint struct {
	Port        string
	Path        string
	Scheme      string
	Interval    string
	BasicAuth   map[string]any `yaml:"basicAuth"`
	TLSConfig   map[string]any `yaml:"tlsConfig"`
	Relabelings []struct {
		Action       string
		SourceLabels []string `yaml:"sourceLabels"`
		TargetLabel  string   `yaml:"targetLabel"`
		Replacement  string
	}
}

func checkRelabelings(t *testing.T, name string, e endpoint, cluster string) {
	t.Helper()
	if e.Port != "metrics" || len(e.Relabelings) < 2 {
		t.Fatalf("%s endpoint: port %q, relabelings %+v", name, e.Port, e.Relabelings)
	}
	c, n := e.Relabelings[0], e.Relabelings[1]
	if c.TargetLabel != "cluster" || c.Replacement != cluster {
		t.Errorf("%s: first relabeling %+v, want cluster=%s", name, c, cluster)
	}
	if n.TargetLabel != "node" || !slices.Equal(n.SourceLabels, []string{"__meta_kubernetes_pod_node_name"}) {
		t.Errorf("%s: second relabeling %+v, want node from __meta_kubernetes_pod_node_name", name, n)
	}
}

// The web configuration decides the probes' scheme and the scrape's.
func TestWebConfigProbes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		scheme string
	}{
		{"none", nil, "HTTP"},
		{"tls content", []string{"--set", "web.config.enabled=true", "--set", "web.config.content.tls_server_config.cert_file=/etc/kubernetes/pki/etcd/server.crt", "--set", "web.config.content.tls_server_config.key_file=/etc/kubernetes/pki/etcd/server.key"}, "HTTPS"},
		{"existing secret, https scrape", []string{"--set", "web.config.enabled=true", "--set", "web.config.existingSecret=mine", "--set", "podMonitor.scheme=https"}, "HTTPS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := decode(t, render(t, tc.args...))
			var ds daemonSet
			only(t, objs, "DaemonSet", &ds)
			ctr := ds.Spec.Template.Spec.Containers[0]
			for _, p := range []probe{ctr.LivenessProbe, ctr.ReadinessProbe} {
				if p.HTTPGet == nil || p.HTTPGet.Scheme != tc.scheme {
					t.Errorf("probe %+v, want httpGet scheme %s", p, tc.scheme)
				}
			}
			var pm struct {
				Spec struct {
					PodMetricsEndpoints []endpoint `yaml:"podMetricsEndpoints"`
				}
			}
			only(t, objs, "PodMonitor", &pm)
			if got := pm.Spec.PodMetricsEndpoints[0].Scheme; got != strings.ToLower(tc.scheme) {
				t.Errorf("PodMonitor scheme %q, want %s", got, strings.ToLower(tc.scheme))
			}
			secrets := kinds(objs)["Secret"]
			if want := map[string]int{"none": 0, "tls content": 1, "existing secret, https scrape": 0}[tc.name]; secrets != want {
				t.Errorf("%d Secrets, want %d", secrets, want)
			}
		})
	}
}

// Rendering with every toggle off leaves the DaemonSet alone and the agent
// without disk probe or process metrics.
func TestAllOff(t *testing.T) {
	c := matrixCase(t, "all-off")
	objs := decode(t, render(t, c.Args...))
	if got := kinds(objs); len(got) != 1 || got["DaemonSet"] != 1 {
		t.Errorf("rendered %v, want only the DaemonSet", got)
	}
	var ds daemonSet
	only(t, objs, "DaemonSet", &ds)
	pod := ds.Spec.Template.Spec
	args := pod.Containers[0].Args
	for _, a := range []string{"--no-disk.enabled", "--host.process-name="} {
		if !slices.Contains(args, a) {
			t.Errorf("args %v lack %s", args, a)
		}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--disk.probe-dir") || strings.HasPrefix(a, "--etcd.metrics-url") {
			t.Errorf("args hold %s", a)
		}
	}
	if pod.HostPID {
		t.Error("hostPID without process metrics")
	}
	if pod.ServiceAccountName != "default" {
		t.Errorf("serviceAccountName %q, want default", pod.ServiceAccountName)
	}
	if got := mounts(pod); len(got) != 2 {
		t.Errorf("mounts %v, want the certificates and the data directory", got)
	}
}

func TestProbeDirInsideMemberFails(t *testing.T) {
	for _, dir := range []string{"/var/lib/etcd/member", "/var/lib/etcd/member/wal/probe", "/var/lib/etcd/member/"} {
		stderr := renderFails(t, "--set", "disk.probeDir="+dir)
		if !strings.Contains(stderr, "disk.probeDir") || !strings.Contains(stderr, "inside /var/lib/etcd/member") {
			t.Errorf("disk.probeDir=%s: stderr %q, want it to name disk.probeDir and /var/lib/etcd/member", dir, stderr)
		}
	}
	// Beside member/, inside the data directory, is allowed.
	render(t, "--set", "disk.probeDir=/var/lib/etcd/.etcdpulse-probe")
}

// The schema rejects what the chart cannot use, with a message that names
// the value.
func TestSchemaRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown distribution", []string{"--set", "distribution=bogus"}, append([]string{"distribution"}, deploy.Distributions...)},
		{"string for a bool", []string{"--set-string", "disk.enabled=true"}, []string{"disk", "enabled", "boolean"}},
		{"string for an integer", []string{"--set", "web.port=metrics"}, []string{"port", "integer"}},
		{"unknown top-level key", []string{"--set", "hostNetwrok=true"}, []string{"hostNetwrok"}},
		{"unknown etcd key", []string{"--set", "etcd.dataDirectory=/x"}, []string{"dataDirectory"}},
		{"customRules of an unknown alert", []string{"--set", "prometheusRule.customRules.EtcdBogus.for=5m"}, []string{"customRules", "EtcdBogus"}},
		{"disabled unknown alert", []string{"--set", "prometheusRule.disabled.EtcdBogus=true"}, []string{"disabled", "EtcdBogus"}},
		{"bad severity", []string{"--set", "prometheusRule.customRules.EtcdFsyncSlow.severity=page"}, []string{"severity"}},
		{"bad duration", []string{"--set", "prometheusRule.customRules.EtcdFsyncSlow.for=5 minutes"}, []string{"for"}},
		{"relative data dir", []string{"--set", "etcd.dataDir=var/lib/etcd"}, []string{"dataDir"}},
		{"relative backup dir", []string{"--set", "backups.dirs={snapshots}"}, []string{"backups", "dirs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stderr := renderFails(t, tc.args...)
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("helm's stderr does not name %q:\n%s", w, stderr)
				}
			}
		})
	}
}
