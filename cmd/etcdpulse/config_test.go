package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/agent"
)

func TestLoadFileGood(t *testing.T) {
	cfg, err := loadFile("testdata/config/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	i, to := cfg.Probes.Schedule(cfg.Probes.Status)
	if i != time.Second || to != 500*time.Millisecond {
		t.Errorf("status schedule = %s/%s, want 1s/500ms", i, to)
	}
	if cfg.Etcd.KeyPrefix != agent.DefaultKeyPrefix {
		t.Errorf("key prefix = %q, want the default %q", cfg.Etcd.KeyPrefix, agent.DefaultKeyPrefix)
	}
	if w := cfg.Web; w.TelemetryPath != "/etcdpulse/metrics" || !w.DisableExporterMetrics || !w.EnablePprof || w.SystemdSocket {
		t.Errorf("web = %+v, want the file's telemetry_path, disable_exporter_metrics and enable_pprof", w)
	}
}

// Every invalid file and the exact message it must give.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		file string
		want string
	}{
		{"unknown-field.yml", `line 2: unknown field "etcd.endpoint" (valid fields of etcd: endpoints, tls, dial_timeout, username, password, key_prefix, data_dir, wal_dir, metrics_url, quota_backend_bytes, read_only)`},
		{"unknown-nested-field.yml", `line 3: unknown field "probes.status.intervall" (valid fields of probes.status: interval, timeout)`},
		{"not-yaml.yml", `not valid YAML: line 1: did not find expected node content`},
		{"endpoints-not-list.yml", `line 2: field etcd.endpoints: expected a list, such as ["a", "b"]`},
		{"bad-duration.yml", `line 2: field probes.interval: "1 second" is not a duration (expected a number with a unit, such as "1s" or "500ms")`},
		{"endpoint-no-scheme.yml", `etcd.endpoints[0] (--etcd.endpoints): "127.0.0.1:2379" is not a client URL (expected http://host:port or https://host:port)`},
		{"no-endpoints.yml", `etcd.endpoints (--etcd.endpoints): at least one client URL is required, the local member's first`},
		{"zero-timeout.yml", `probes.timeout (--probes.timeout): must be positive, got 0s`},
		{"negative-interval.yml", `probes.read.interval (--probes.read.interval): must not be negative, got -1s`},
		{"missing-cert.yml", "etcd.tls.cert_file (--etcd.tls.cert-file): cannot read \"/nonexistent/client.crt\": no such file or directory\n" +
			"etcd.tls.cert_file (--etcd.tls.cert-file): a client certificate and its key go together: set both etcd.tls.cert_file and etcd.tls.key_file, or neither"},
		{"bad-log-level.yml", `log.level (--log.level): "verbose" is not one of debug, info, warn, error`},
		{"bad-listen.yml", `web.listen_addresses[0] (--web.listen-address): "12379" is not host:port (expected, for example, ":12379")`},
		{"bad-int.yml", `line 2: field disk.syncs: expected an integer, got "many"`},
		{"bad-bool.yml", `line 2: field disk.enabled: expected true or false, got "yes please"`},
		{"string-mapping.yml", `line 3: field etcd.username: expected a string, got a mapping`},
		{"bad-endpoint-port.yml", `etcd.endpoints[0] (--etcd.endpoints): "http://127.0.0.1:99999" has port "99999": expected a number from 1 to 65535, such as "http://127.0.0.1:2379"`},
		{"vsock-listen.yml", `web.listen_addresses[0] (--web.listen-address): "vsock://3:12379": vsock addresses are not supported; give host:port, such as ":12379"`},
		{"bad-listen-port.yml", `web.listen_addresses[0] (--web.listen-address): "127.0.0.1:70000" has port "70000": expected a number from 0 to 65535, such as ":12379"`},
		{"bad-telemetry-path.yml", `web.telemetry_path (--web.telemetry-path): "metrics" is not a URL path of segments of letters, digits, ".", "_", "~" or "-", starting with "/" (expected, for example, "/metrics")`},
		{"telemetry-path-wildcard.yml", `web.telemetry_path (--web.telemetry-path): "/metrics/{name}" is not a URL path of segments of letters, digits, ".", "_", "~" or "-", starting with "/" (expected, for example, "/metrics")`},
		{"telemetry-path-root.yml", `web.telemetry_path (--web.telemetry-path): "/" is the landing page; pick a path of its own, such as "/metrics"`},
		{"telemetry-path-readyz.yml", `web.telemetry_path (--web.telemetry-path): "/readyz" is the agent's readiness endpoint; pick another path, such as "/metrics"`},
		{"telemetry-path-debug.yml", `web.telemetry_path (--web.telemetry-path): "/debug/metrics" is under /debug/, where the agent serves traces and profiles; pick another path, such as "/metrics"`},
		{"negative-quota.yml", `etcd.quota_backend_bytes (--etcd.quota-backend-bytes): must not be negative, got -1: give the members' --quota-backend-bytes in bytes (8 GiB is 8589934592), or 0 when it is not set`},
		{"bad-prefix.yml", `etcd.key_prefix (--etcd.key-prefix): "registry/" must start and end with "/" and name a key space of its own, such as "/etcdpulse/"`},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join("testdata/config", c.file)
			cfg, err := loadFile(path)
			if err == nil {
				err = cfg.validate()
			} else {
				want := "--config.file " + path + ": " + c.want
				if err.Error() != want {
					t.Fatalf("error:\n got: %s\nwant: %s", err, want)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != c.want {
				t.Fatalf("error:\n got: %s\nwant: %s", err, c.want)
			}
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := loadFile("testdata/config/absent.yml")
	want := "--config.file: open testdata/config/absent.yml: no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	cfg, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Web.ListenAddresses; len(got) != 1 || got[0] != defaultListenAddress {
		t.Errorf("listen addresses = %v, want the default", got)
	}
}
