package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// An agent beside an in-process member: the member's process is this test
// binary (named by a PID file), its data directory is real, and its own
// /metrics (served on the client URL) is read in the background.
func TestHostAndEtcdView(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess})
	m := c.Member(0)
	pidFile := filepath.Join(t.TempDir(), "etcd.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, []string{m.ClientURL()}, func(cfg *Config) {
		cfg.Etcd.DataDir = m.DataDir()
		cfg.Etcd.MetricsURL = m.ClientURL() + "/metrics"
		cfg.Host.PIDFile = pidFile
	})
	a.waitFor(t, "etcd's own metrics read",
		gauge("etcdpulse_etcd_metrics_up", 1),
		gauge("etcdpulse_probe_success", 1, "probe", "etcd_metrics", "member", "m0"))

	got := mustScrape(t, a)
	for _, row := range []collectors.Metric{
		collectors.HostFilesystemSize, collectors.HostFilesystemFree, collectors.HostCPUIowait,
		collectors.EtcdProcessCPU, collectors.EtcdProcessRSS, collectors.EtcdProcessOpenFDs, collectors.EtcdProcessMaxFDs, collectors.EtcdProcessStartTime,
		collectors.EtcdWALFsync, collectors.EtcdBackendCommit,
	} {
		if _, ok := got[row.Name]; !ok {
			t.Errorf("%s absent", row.Name)
		}
	}
	// The member's WAL is inside its data directory: one filesystem, one
	// series, so that the filesystem alerts fire once.
	if _, ok := got.value(collectors.HostFilesystemSize.Name, "dir", "data"); !ok {
		t.Errorf("filesystem size of dir=data absent")
	}
	if _, ok := got.value(collectors.HostFilesystemSize.Name, "dir", "wal"); ok {
		t.Errorf("filesystem size of dir=wal reported for a WAL on the data directory's filesystem")
	}
	body := get(t, a.url+"/metrics", "")
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for name := range got {
		if _, ok := collectors.Find(Catalogue(), name); !ok {
			t.Errorf("%s exported but not in the catalogue", name)
		}
	}
}

// Without a metrics URL nothing of etcd's view is exported, not even up.
// What the agent reads of the etcd process itself (its resources, and its
// flags for the drift checks) does not come from the metrics URL: an etcd
// process of another test on this host may be the one it finds.
func TestEtcdViewOff(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess})
	a := startAgent(t, []string{c.Member(0).ClientURL()}, nil)
	a.waitFor(t, "a healthy member", healthyCluster(1)...)
	got := mustScrape(t, a)
	fromProcess := map[string]bool{
		collectors.EtcdHeartbeatInterval.Name:   true,
		collectors.EtcdElectionTimeout.Name:     true,
		collectors.EtcdCorruptCheckEnabled.Name: true,
	}
	for name := range got {
		if strings.HasPrefix(name, "etcdpulse_etcd_") && name != "etcdpulse_etcd_requests_total" && !strings.HasPrefix(name, "etcdpulse_etcd_process_") && !fromProcess[name] {
			t.Errorf("%s exported with no etcd.metrics_url", name)
		}
	}
}

func TestHostConfigErrors(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.Host.ProcessName != "etcd" || !cfg.Host.Enabled {
		t.Errorf("defaults = %+v", cfg.Host)
	}
	cfg.Host.ProcessName = "/usr/local/bin/etcd"
	want := `host.process_name (--host.process-name): "/usr/local/bin/etcd" is a path: give the process name only, such as "etcd"`
	if err := cfg.Validate(); fmt.Sprint(err) != want {
		t.Errorf("error %v, want %s", err, want)
	}

	cfg = DefaultConfig()
	cfg.Etcd.MetricsURL = "127.0.0.1:2381"
	_, err := New(Options{Config: &cfg})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "etcd.metrics_url" || fe.Flag != "etcd.metrics-url" {
		t.Errorf("New with a metrics URL without scheme: %v, want a FieldError for etcd.metrics_url", err)
	}
}
