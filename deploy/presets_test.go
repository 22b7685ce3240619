package deploy_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/etcdpulse/etcdpulse/deploy"
)

type daemonSet struct {
	Spec struct {
		Template struct {
			Spec podSpec
		}
	}
}

type podSpec struct {
	ServiceAccountName string            `yaml:"serviceAccountName"`
	HostNetwork        bool              `yaml:"hostNetwork"`
	HostPID            bool              `yaml:"hostPID"`
	DNSPolicy          string            `yaml:"dnsPolicy"`
	PriorityClassName  string            `yaml:"priorityClassName"`
	NodeSelector       map[string]string `yaml:"nodeSelector"`
	Affinity           struct {
		NodeAffinity struct {
			Required struct {
				Terms []struct {
					MatchExpressions []struct {
						Key      string
						Operator string
						Values   []string
					} `yaml:"matchExpressions"`
				} `yaml:"nodeSelectorTerms"`
			} `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
		} `yaml:"nodeAffinity"`
	}
	Tolerations []map[string]string
	Containers  []container
	Volumes     []struct {
		Name     string
		HostPath *struct{ Path, Type string } `yaml:"hostPath"`
	}
}

type container struct {
	Image string
	Args  []string
	Ports []struct {
		Name          string
		ContainerPort int `yaml:"containerPort"`
	}
	LivenessProbe   probe `yaml:"livenessProbe"`
	ReadinessProbe  probe `yaml:"readinessProbe"`
	SecurityContext struct {
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		RunAsUser                *int  `yaml:"runAsUser"`
		RunAsGroup               *int  `yaml:"runAsGroup"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		Capabilities             struct{ Drop, Add []string }
		SeccompProfile           struct{ Type string } `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path   string
		Port   string
		Scheme string
	} `yaml:"httpGet"`
	TCPSocket *struct{ Port string } `yaml:"tcpSocket"`
}

// mounts maps each mount path to "ro" or "rw", checking that the volume
// behind it is the hostPath of the same path.
func mounts(pod podSpec) map[string]string {
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	out := map[string]string{}
	for _, m := range pod.Containers[0].VolumeMounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		if hostPaths[m.Name] != m.MountPath {
			mode += " (hostPath " + hostPaths[m.Name] + ")"
		}
		out[m.MountPath] = mode
	}
	return out
}

type preset struct {
	args     []string // flags the agent gets, besides --web.listen-address
	mounts   map[string]string
	nodeRole string
	capAdd   []string
}

// The presets of docs/install.md's table, as the DaemonSet must carry them.
var presets = map[string]preset{
	"kubeadm": {
		args: []string{
			"--etcd.endpoints=https://127.0.0.1:2379",
			"--etcd.tls.ca-file=/etc/kubernetes/pki/etcd/ca.crt",
			"--etcd.tls.cert-file=/etc/kubernetes/pki/etcd/healthcheck-client.crt",
			"--etcd.tls.key-file=/etc/kubernetes/pki/etcd/healthcheck-client.key",
			"--etcd.data-dir=/var/lib/etcd",
			"--etcd.metrics-url=http://127.0.0.1:2381/metrics",
			"--disk.probe-dir=/var/lib/.etcdpulse-probe",
			"--certificates.dir=/etc/kubernetes/pki/etcd",
			"--host.process-name=etcd",
		},
		mounts:   map[string]string{"/etc/kubernetes/pki/etcd": "ro", "/var/lib/etcd": "ro", "/var/lib/.etcdpulse-probe": "rw"},
		nodeRole: "node-role.kubernetes.io/control-plane",
	},
	"k3s": {
		args: []string{
			"--etcd.endpoints=https://127.0.0.1:2379",
			"--etcd.tls.ca-file=/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt",
			"--etcd.tls.cert-file=/var/lib/rancher/k3s/server/tls/etcd/client.crt",
			"--etcd.tls.key-file=/var/lib/rancher/k3s/server/tls/etcd/client.key",
			"--etcd.data-dir=/var/lib/rancher/k3s/server/db/etcd",
			"--etcd.metrics-url=http://127.0.0.1:2381/metrics",
			"--disk.probe-dir=/var/lib/rancher/k3s/server/db/.etcdpulse-probe",
			"--certificates.dir=/var/lib/rancher/k3s/server/tls/etcd",
			"--backups.dirs=/var/lib/rancher/k3s/server/db/snapshots",
			"--host.process-name=k3s-server",
		},
		mounts:   map[string]string{"/var/lib/rancher/k3s/server/tls/etcd": "ro", "/var/lib/rancher/k3s/server/db/etcd": "ro", "/var/lib/rancher/k3s/server/db/.etcdpulse-probe": "rw", "/var/lib/rancher/k3s/server/db/snapshots": "ro"},
		nodeRole: "node-role.kubernetes.io/etcd",
	},
	"rke2": {
		args: []string{
			"--etcd.endpoints=https://127.0.0.1:2379",
			"--etcd.tls.ca-file=/var/lib/rancher/rke2/server/tls/etcd/server-ca.crt",
			"--etcd.tls.cert-file=/var/lib/rancher/rke2/server/tls/etcd/client.crt",
			"--etcd.tls.key-file=/var/lib/rancher/rke2/server/tls/etcd/client.key",
			"--etcd.data-dir=/var/lib/rancher/rke2/server/db/etcd",
			"--etcd.metrics-url=http://127.0.0.1:2381/metrics",
			"--disk.probe-dir=/var/lib/rancher/rke2/server/db/.etcdpulse-probe",
			"--certificates.dir=/var/lib/rancher/rke2/server/tls/etcd",
			"--backups.dirs=/var/lib/rancher/rke2/server/db/snapshots",
			"--host.process-name=etcd",
		},
		mounts:   map[string]string{"/var/lib/rancher/rke2/server/tls/etcd": "ro", "/var/lib/rancher/rke2/server/db/etcd": "ro", "/var/lib/rancher/rke2/server/db/.etcdpulse-probe": "rw", "/var/lib/rancher/rke2/server/db/snapshots": "ro"},
		nodeRole: "node-role.kubernetes.io/etcd",
	},
	"k0s": {
		args: []string{
			"--etcd.endpoints=https://127.0.0.1:2379",
			"--etcd.tls.ca-file=/var/lib/k0s/pki/etcd/ca.crt",
			"--etcd.tls.cert-file=/var/lib/k0s/pki/apiserver-etcd-client.crt",
			"--etcd.tls.key-file=/var/lib/k0s/pki/apiserver-etcd-client.key",
			"--etcd.data-dir=/var/lib/k0s/etcd",
			"--etcd.metrics-url=https://127.0.0.1:2379/metrics",
			"--disk.probe-dir=/var/lib/k0s/.etcdpulse-probe",
			"--certificates.dir=/var/lib/k0s/pki/etcd",
			"--host.pid-file=/run/k0s/etcd.pid",
		},
		mounts:   map[string]string{"/var/lib/k0s/pki": "ro", "/var/lib/k0s/etcd": "ro", "/var/lib/k0s/.etcdpulse-probe": "rw", "/run/k0s": "ro"},
		nodeRole: "node-role.kubernetes.io/control-plane",
		capAdd:   []string{"DAC_READ_SEARCH"},
	},
	"external": {
		args: []string{
			"--etcd.endpoints=https://127.0.0.1:2379",
			"--etcd.tls.ca-file=/etc/etcd/pki/ca.crt",
			"--etcd.tls.cert-file=/etc/etcd/pki/client.crt",
			"--etcd.tls.key-file=/etc/etcd/pki/client.key",
			"--etcd.data-dir=/var/lib/etcd",
			"--disk.probe-dir=/var/lib/.etcdpulse-probe",
			"--certificates.dir=/etc/etcd/pki",
			"--host.process-name=etcd",
		},
		mounts:   map[string]string{"/etc/etcd/pki": "ro", "/var/lib/etcd": "ro", "/var/lib/.etcdpulse-probe": "rw"},
		nodeRole: "node-role.kubernetes.io/etcd",
	},
}

var tolerated = []string{"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master", "node-role.kubernetes.io/etcd", "CriticalAddonsOnly"}

func renderDaemonSet(t *testing.T, args ...string) podSpec {
	t.Helper()
	var ds daemonSet
	only(t, decode(t, render(t, args...)), "DaemonSet", &ds)
	if n := len(ds.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	return ds.Spec.Template.Spec
}

func TestPresets(t *testing.T) {
	if len(presets) != len(deploy.Distributions) {
		t.Fatalf("the test has presets for %v, the chart %v", slices.Sorted(maps.Keys(presets)), deploy.Distributions)
	}
	for _, d := range deploy.Distributions {
		t.Run(d, func(t *testing.T) {
			want := presets[d]
			pod := renderDaemonSet(t, "--set", "distribution="+d)
			ctr := pod.Containers[0]
			wantArgs := append([]string{"--web.listen-address=:12379"}, want.args...)
			if !slices.Equal(ctr.Args, wantArgs) {
				t.Errorf("args\n  %s\nwant\n  %s", strings.Join(ctr.Args, "\n  "), strings.Join(wantArgs, "\n  "))
			}
			if got := mounts(pod); !maps.Equal(got, want.mounts) {
				t.Errorf("mounts %v, want %v", got, want.mounts)
			}
			for _, v := range pod.Volumes {
				if v.Name == "probe" && v.HostPath.Type != "DirectoryOrCreate" {
					t.Errorf("probe volume type %q, want DirectoryOrCreate", v.HostPath.Type)
				}
			}
			checkPod(t, pod)
			terms := pod.Affinity.NodeAffinity.Required.Terms
			if len(terms) != 1 || len(terms[0].MatchExpressions) != 1 || terms[0].MatchExpressions[0].Key != want.nodeRole || terms[0].MatchExpressions[0].Operator != "Exists" {
				t.Errorf("node affinity %+v, want %s Exists", terms, want.nodeRole)
			}
			var keys []string
			for _, tol := range pod.Tolerations {
				if tol["operator"] != "Exists" || tol["effect"] != "" {
					t.Errorf("toleration %v, want operator Exists on every effect", tol)
				}
				keys = append(keys, tol["key"])
			}
			if !slices.Equal(keys, tolerated) {
				t.Errorf("tolerations on %v, want %v", keys, tolerated)
			}
			if got := ctr.SecurityContext.Capabilities.Add; !slices.Equal(got, want.capAdd) {
				t.Errorf("capabilities added %v, want %v", got, want.capAdd)
			}
		})
	}
}

// checkPod checks what every rendering shares: host network, the security
// context's defaults, the probes and the port.
func checkPod(t *testing.T, pod podSpec) {
	t.Helper()
	if !pod.HostNetwork || pod.DNSPolicy != "ClusterFirstWithHostNet" || !pod.HostPID {
		t.Errorf("hostNetwork %v, dnsPolicy %q, hostPID %v; want true, ClusterFirstWithHostNet, true", pod.HostNetwork, pod.DNSPolicy, pod.HostPID)
	}
	ctr := pod.Containers[0]
	sc := ctr.SecurityContext
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsGroup == nil || *sc.RunAsGroup != 0 || sc.RunAsNonRoot == nil || *sc.RunAsNonRoot ||
		!slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("securityContext %+v, want the spec's defaults", sc)
	}
	if len(ctr.Ports) != 1 || ctr.Ports[0].Name != "metrics" || ctr.Ports[0].ContainerPort != 12379 {
		t.Errorf("ports %+v, want metrics 12379", ctr.Ports)
	}
	for _, p := range []struct {
		probe probe
		path  string
	}{{ctr.LivenessProbe, "/healthz"}, {ctr.ReadinessProbe, "/readyz"}} {
		if g := p.probe.HTTPGet; g == nil || g.Path != p.path || g.Port != "metrics" || g.Scheme != "HTTP" {
			t.Errorf("probe %+v, want httpGet %s on port metrics", p.probe.HTTPGet, p.path)
		}
	}
}

// The user's values win over the preset's.
func TestOverridesWin(t *testing.T) {
	c := matrixCase(t, "overrides")
	objs := decode(t, render(t, c.Args...))
	var ds daemonSet
	only(t, objs, "DaemonSet", &ds)
	pod := ds.Spec.Template.Spec
	ctr := pod.Containers[0]
	wantArgs := []string{
		"--web.listen-address=:12379",
		"--etcd.endpoints=https://10.0.0.1:2379",
		"--etcd.endpoints=https://10.0.0.2:2379",
		"--etcd.tls.ca-file=/srv/etcd/pki/ca.pem",
		"--etcd.tls.cert-file=/srv/etcd/pki/agent.pem",
		"--etcd.tls.key-file=/srv/etcd/pki/agent-key.pem",
		"--etcd.data-dir=/srv/etcd/data",
		"--etcd.metrics-url=http://127.0.0.1:2382/metrics",
		"--disk.probe-dir=/srv/etcd/probe",
		"--certificates.dir=/srv/etcd/pki",
		// RKE2 keeps its snapshots beside the etcd directory.
		"--backups.dirs=/srv/etcd/snapshots",
		"--host.process-name=etcd-server",
	}
	if !slices.Equal(ctr.Args, wantArgs) {
		t.Errorf("args\n  %s\nwant\n  %s", strings.Join(ctr.Args, "\n  "), strings.Join(wantArgs, "\n  "))
	}
	wantMounts := map[string]string{"/srv/etcd/pki": "ro", "/srv/etcd/data": "ro", "/srv/etcd/probe": "rw", "/srv/etcd/snapshots": "ro"}
	if got := mounts(pod); !maps.Equal(got, wantMounts) {
		t.Errorf("mounts %v, want %v", got, wantMounts)
	}
	terms := pod.Affinity.NodeAffinity.Required.Terms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Key != "etcd" {
		t.Errorf("affinity %+v, want the user's only", terms)
	}
	if len(pod.Tolerations) != 1 || pod.Tolerations[0]["key"] != "dedicated" {
		t.Errorf("tolerations %v, want the user's only", pod.Tolerations)
	}
	sc := ctr.SecurityContext
	if *sc.RunAsUser != 1000 || *sc.ReadOnlyRootFilesystem || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("securityContext %+v, want runAsUser 1000 and a writable root over the other defaults", sc)
	}
	if !strings.HasSuffix(ctr.Image, ":test") {
		t.Errorf("image %q, want tag test", ctr.Image)
	}
	for _, o := range objs {
		if o.kind() == "ConfigMap" {
			if ns := o.meta("namespace"); ns != "monitoring" {
				t.Errorf("ConfigMap %s in namespace %q, want monitoring", o.name(), ns)
			}
		}
	}

	// nodeSelector adds to the preset's affinity instead of replacing it.
	pod = renderDaemonSet(t, "--set", "nodeSelector.disk=ssd")
	if pod.NodeSelector["disk"] != "ssd" || len(pod.Affinity.NodeAffinity.Required.Terms) != 1 ||
		pod.Affinity.NodeAffinity.Required.Terms[0].MatchExpressions[0].Key != presets["kubeadm"].nodeRole {
		t.Errorf("nodeSelector %v, affinity %+v; want both", pod.NodeSelector, pod.Affinity)
	}
	// "-" turns reading etcd's metrics off.
	for _, a := range renderDaemonSet(t, "--set", "etcd.metricsURL=-").Containers[0].Args {
		if strings.HasPrefix(a, "--etcd.metrics-url") {
			t.Errorf("etcd.metricsURL=- still passes %s", a)
		}
	}
}

// A WAL directory outside the data directory is mounted too, and the probe
// directory goes beside it, as the agent's own default does.
func TestWALDirOutsideDataDir(t *testing.T) {
	pod := renderDaemonSet(t, "--set", "etcd.walDir=/wal/etcd")
	want := map[string]string{"/etc/kubernetes/pki/etcd": "ro", "/var/lib/etcd": "ro", "/wal/etcd": "ro", "/wal/.etcdpulse-probe": "rw"}
	if got := mounts(pod); !maps.Equal(got, want) {
		t.Errorf("mounts %v, want %v", got, want)
	}
	pod = renderDaemonSet(t, "--set", "etcd.walDir=/var/lib/etcd/wal")
	want = map[string]string{"/etc/kubernetes/pki/etcd": "ro", "/var/lib/etcd": "ro", "/var/lib/.etcdpulse-probe": "rw"}
	if got := mounts(pod); !maps.Equal(got, want) {
		t.Errorf("WAL inside the data directory: mounts %v, want %v", got, want)
	}
}

// A capability the user adds joins the preset's, and every other one stays
// dropped (RKE2's CIS profile needs DAC_READ_SEARCH, k0s has it already).
func TestCapabilitiesJoinThePreset(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--set", "distribution=k0s", "--set", "securityContext.capabilities.add={SYS_PTRACE}"}, []string{"DAC_READ_SEARCH", "SYS_PTRACE"}},
		{[]string{"--set", "distribution=rke2", "--set", "securityContext.capabilities.add={DAC_READ_SEARCH}"}, []string{"DAC_READ_SEARCH"}},
		{[]string{"--set", "distribution=rke2"}, nil},
	} {
		sc := renderDaemonSet(t, c.args...).Containers[0].SecurityContext
		if !slices.Equal(sc.Capabilities.Add, c.want) || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
			t.Errorf("%v: capabilities add %v drop %v, want add %v drop [ALL]", c.args, sc.Capabilities.Add, sc.Capabilities.Drop, c.want)
		}
	}
}

// etcd.readOnly passes --etcd.read-only, and only then.
func TestReadOnlyValue(t *testing.T) {
	if slices.Contains(renderDaemonSet(t).Containers[0].Args, "--etcd.read-only") {
		t.Error("--etcd.read-only by default")
	}
	if !slices.Contains(renderDaemonSet(t, "--set", "etcd.readOnly=true").Containers[0].Args, "--etcd.read-only") {
		t.Error("etcd.readOnly=true: no --etcd.read-only")
	}
}

// certificates.dir: the preset's, the user's (mounted read-only when
// outside certDir), or none.
func TestCertificatesDir(t *testing.T) {
	for _, tc := range []struct {
		set, want, mount string
	}{
		{"", "--certificates.dir=/etc/kubernetes/pki/etcd", ""},
		{"certificates.dir=/opt/pki/etcd", "--certificates.dir=/opt/pki/etcd", "/opt/pki/etcd"},
		{"certificates.dir=/etc/kubernetes/pki/etcd/", "--certificates.dir=/etc/kubernetes/pki/etcd", ""},
		{"certificates.dir=-", "", ""},
	} {
		args := []string{"--set", "distribution=kubeadm"}
		if tc.set != "" {
			args = append(args, "--set", tc.set)
		}
		pod := renderDaemonSet(t, args...)
		var got []string
		for _, a := range pod.Containers[0].Args {
			if strings.HasPrefix(a, "--certificates.") {
				got = append(got, a)
			}
		}
		if want := []string{tc.want}; tc.want == "" && len(got) != 0 || tc.want != "" && !slices.Equal(got, want) {
			t.Errorf("%s: args %v, want %q", tc.set, got, tc.want)
		}
		m := mounts(pod)
		if tc.mount != "" && m[tc.mount] != "ro" {
			t.Errorf("%s: mounts %v, want %s read-only", tc.set, m, tc.mount)
		}
		if tc.mount == "" && len(m) != 3 {
			t.Errorf("%s: mounts %v, want only the preset's", tc.set, m)
		}
	}
}

// backups.dirs: the preset's (k3s, RKE2), the user's, or none ("-");
// each mounted read-only, DirectoryOrCreate.
func TestBackupsDirs(t *testing.T) {
	for _, tc := range []struct {
		distribution string
		set          []string
		want         []string
	}{
		{"kubeadm", nil, nil},
		{"k3s", nil, []string{"/var/lib/rancher/k3s/server/db/snapshots"}},
		{"rke2", nil, []string{"/var/lib/rancher/rke2/server/db/snapshots"}},
		{"kubeadm", []string{"backups.dirs={/srv/etcd-backup,/mnt/nfs/etcd/}"}, []string{"/srv/etcd-backup", "/mnt/nfs/etcd"}},
		{"k3s", []string{"backups.dirs={/srv/etcd-backup}"}, []string{"/srv/etcd-backup"}},
		{"k3s", []string{"backups.dirs={-}"}, nil},
		{"k3s", []string{"etcd.dataDir=/data/k3s/server/db/etcd"}, []string{"/data/k3s/server/db/snapshots"}},
		{"kubeadm", []string{"etcd.dataDir=/data/etcd"}, nil},
	} {
		args := []string{"--set", "distribution=" + tc.distribution}
		for _, s := range tc.set {
			args = append(args, "--set", s)
		}
		pod := renderDaemonSet(t, args...)
		var got []string
		for _, a := range pod.Containers[0].Args {
			if d, ok := strings.CutPrefix(a, "--backups.dirs="); ok {
				got = append(got, d)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s %v: --backups.dirs %v, want %v", tc.distribution, tc.set, got, tc.want)
		}
		m := mounts(pod)
		for _, d := range tc.want {
			if m[d] != "ro" {
				t.Errorf("%s %v: mounts %v, want %s read-only", tc.distribution, tc.set, m, d)
			}
		}
		n := 0
		for _, v := range pod.Volumes {
			if strings.HasPrefix(v.Name, "backups-") {
				n++
				if v.HostPath == nil || v.HostPath.Type != "DirectoryOrCreate" {
					t.Errorf("volume %s: %+v, want a DirectoryOrCreate hostPath", v.Name, v.HostPath)
				}
			}
		}
		if n != len(tc.want) {
			t.Errorf("%s %v: %d backup volumes, want %d", tc.distribution, tc.set, n, len(tc.want))
		}
	}
}
