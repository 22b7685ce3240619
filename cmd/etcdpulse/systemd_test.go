package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	"go.yaml.in/yaml/v3"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// The shipped systemd unit and its configuration, relative to this
// package's directory.
const (
	systemdUnitFile   = repoRoot + "/deploy/systemd/etcdpulse.service"
	systemdConfigFile = repoRoot + "/deploy/systemd/config.yml"
	// systemdConfigPath is where the unit expects the configuration.
	systemdConfigPath = "/etc/etcdpulse/config.yml"
)

// The YAML fields of deploy/systemd/config.yml that name host paths: the
// files the agent reads and the directories it stats or writes.
var systemdPathFields = []string{
	"etcd.tls.ca_file", "etcd.tls.cert_file", "etcd.tls.key_file",
	"etcd.data_dir", "etcd.wal_dir", "disk.probe_dir", "host.pid_file", "web.config_file",
}

// serviceOptions returns the values of the unit's [Service] options, by name.
func serviceOptions(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(systemdUnitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, err := unit.DeserializeOptions(f)
	if err != nil {
		t.Fatalf("%s: %v", systemdUnitFile, err)
	}
	values := map[string][]string{}
	for _, o := range opts {
		if o.Section == "Service" {
			values[o.Name] = append(values[o.Name], o.Value)
		}
	}
	return values
}

// yamlPaths returns the non-empty values of the path fields in a YAML
// configuration, by field.
func yamlPaths(t *testing.T, root *yaml.Node) map[string]*yaml.Node {
	t.Helper()
	found := map[string]*yaml.Node{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, value := prefix+n.Content[i].Value, n.Content[i+1]
			if value.Kind == yaml.MappingNode {
				walk(value, key+".")
				continue
			}
			for _, f := range systemdPathFields {
				if key == f && value.Kind == yaml.ScalarNode && value.Value != "" {
					found[key] = value
				}
			}
		}
	}
	walk(root.Content[0], "")
	return found
}

func readSystemdConfig(t *testing.T) *yaml.Node {
	t.Helper()
	data, err := os.ReadFile(systemdConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatalf("%s: %v", systemdConfigFile, err)
	}
	return &root
}

// within reports whether path is dir or lies under it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// The unit starts the agent on the shipped configuration's path, and its
// sandbox opens exactly what that configuration names: the probe directory
// writable, the certificates and the data directory readable, nothing that
// the configuration does not name.
func TestSystemdUnitMatchesConfig(t *testing.T) {
	opts := serviceOptions(t)
	for name, want := range map[string]string{
		"ExecStart":               "/usr/local/bin/etcdpulse run --config.file=" + systemdConfigPath,
		"User":                    "root",
		"DynamicUser":             "no",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"SystemCallFilter":        "@system-service",
		"Restart":                 "always",
	} {
		if got := opts[name]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want exactly %q", name, got, want)
		}
	}

	paths := yamlPaths(t, readSystemdConfig(t))
	probeDir := paths["disk.probe_dir"]
	if probeDir == nil {
		t.Fatalf("%s sets no disk.probe_dir: the unit's ReadWritePaths must name it", systemdConfigFile)
	}
	if got := opts["ReadWritePaths"]; len(got) != 1 || got[0] != probeDir.Value {
		t.Errorf("ReadWritePaths = %q, want only disk.probe_dir %q", got, probeDir.Value)
	}
	var readOnly []string
	for _, v := range opts["ReadOnlyPaths"] {
		readOnly = append(readOnly, strings.Fields(v)...)
	}
	// Every sandbox opening holds something the configuration names.
	for _, dir := range append(readOnly, opts["ReadWritePaths"]...) {
		used := false
		for _, p := range paths {
			used = used || within(p.Value, dir)
		}
		if !used {
			t.Errorf("the unit opens %s, which holds no path of %s", dir, systemdConfigFile)
		}
	}
	// Every path the configuration names is opened: ProtectSystem=strict
	// leaves /var and /etc readable, but only what is named here is meant.
	for field, p := range paths {
		covered := false
		for _, dir := range append(readOnly, opts["ReadWritePaths"]...) {
			covered = covered || within(p.Value, dir)
		}
		if !covered {
			t.Errorf("%s %s is in neither ReadOnlyPaths nor ReadWritePaths", field, p.Value)
		}
	}
}

// The shipped configuration is valid for the real binary: every path moved
// into a temporary directory holding real certificates, `run
// --config.check` exits 0.
func TestSystemdConfigChecks(t *testing.T) {
	bin := builtBinary(t).path
	root := readSystemdConfig(t)
	tmp := t.TempDir()
	certs := etcdtest.NewTLS(t)
	sources := map[string]string{
		"etcd.tls.ca_file":   certs.CAFile,
		"etcd.tls.cert_file": certs.ClientCertFile,
		"etcd.tls.key_file":  certs.ClientKeyFile,
	}
	for field, node := range yamlPaths(t, root) {
		moved := filepath.Join(tmp, node.Value)
		node.Value = moved
		if src, ok := sources[field]; ok {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Dir(moved), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(moved, data, 0o600); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if field == "etcd.data_dir" || field == "disk.probe_dir" {
			if err := os.MkdirAll(moved, 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	// --config.check binds the listen address: a free loopback port keeps
	// the check off this machine's port 12379.
	listen := []string{"--web.listen-address", "127.0.0.1:0"}
	data, err := yaml.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(tmp, "config.yml")
	if err := os.WriteFile(config, data, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"run", "--config.check", "--config.file=" + config}, listen...)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdpulse %s: %v\n%s\nconfiguration:\n%s", strings.Join(args, " "), err, out, data)
	}
	if !strings.Contains(string(out), "configuration is valid") {
		t.Errorf("--config.check said:\n%s", out)
	}
}
