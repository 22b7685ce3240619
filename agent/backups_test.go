package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/probes"
)

// writeSnapshot saves a snapshot of the cluster through the client API
// into dir/name, as k3s or etcdctl snapshot save do, dated settled (older
// than the listing's settle time).
func writeSnapshot(t testing.TB, cli *clientv3.Client, dir, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/data/%d", i%5), "v"); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, name)
	etcdtest.SaveSnapshot(t, cli, path)
	past := time.Now().Add(-time.Minute)
	if err := os.Chtimes(path, past, past); err != nil {
		t.Fatal(err)
	}
	return path
}

// An agent watching a k3s-style snapshot directory and a missing one:
// the newest snapshot's metrics come out of the agent's registry,
// verified against the cluster; the missing directory makes the
// capability fail and shows as 0 snapshots; the check's backup lines say
// both, and a corrupt newest snapshot fails the check.
func TestBackups(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	cli := c.Client(t)
	dir := t.TempDir()
	writeSnapshot(t, cli, dir, "etcd-snapshot-node-1-1717000000")
	newest := writeSnapshot(t, cli, dir, "etcd-snapshot-node-1-1717086400")
	missing := filepath.Join(t.TempDir(), "not-mounted")
	configure := func(cfg *Config) {
		cfg.Disk.Enabled = false
		cfg.Backups.Dirs = []string{dir, missing}
		cfg.Backups.Interval = Duration(time.Second)
	}
	a := startAgent(t, []string{c.Member(0).ClientURL()}, configure)
	info, err := probes.SnapshotRevisions(newest)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, "the newest snapshot verified",
		gauge("etcdpulse_backup_snapshots", 2, "dir", dir),
		gauge("etcdpulse_backup_last_timestamp_seconds", 1717086400, "dir", dir),
		gauge("etcdpulse_backup_last_size_bytes", float64(st.Size()), "dir", dir),
		gauge("etcdpulse_backup_last_revision", float64(info.Revision), "dir", dir),
		gauge("etcdpulse_backup_status", 1, "dir", dir, "status", "verified"),
		gauge("etcdpulse_backup_status", 0, "dir", dir, "status", "corrupt"),
		gauge("etcdpulse_backup_snapshots", 0, "dir", missing),
		gauge("etcdpulse_capability_success", 0, "capability", "backups"),
		func(m metrics) error {
			for _, name := range []string{"etcdpulse_backup_last_check_timestamp_seconds", "etcdpulse_backup_check_duration_seconds"} {
				if _, ok := m.value(name, "dir", dir); !ok {
					return fmt.Errorf("%s absent", name)
				}
			}
			if _, ok := m.value("etcdpulse_backup_last_timestamp_seconds", "dir", missing); ok {
				return fmt.Errorf("a timestamp for the missing directory")
			}
			return nil
		})

	lines := backupCheck(t, []string{c.Member(0).ClientURL()}, configure)
	if f := lines[dir]; f.Level != Warn || f.Runbook != "docs/runbooks/EtcdBackupTooOld.md" || !strings.Contains(f.Summary, "verified") {
		t.Errorf("a verified snapshot from 2024: %+v; want WARN, too old", f)
	}
	if f := lines[missing]; f.Level != Warn || !strings.Contains(f.Summary, "backups.dirs") || !strings.Contains(f.Summary, "no such file or directory") {
		t.Errorf("missing directory: %+v", f)
	}

	// A newer snapshot, corrupt: the check fails.
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	bad := filepath.Join(dir, fmt.Sprintf("etcd-snapshot-node-1-%d", time.Now().Add(-time.Hour).Unix()))
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	if err := os.Chtimes(bad, past, past); err != nil {
		t.Fatal(err)
	}
	lines = backupCheck(t, []string{c.Member(0).ClientURL()}, func(cfg *Config) { configure(cfg); cfg.Backups.Dirs = []string{dir} })
	if f := lines[dir]; f.Level != Fail || f.Runbook != "docs/runbooks/EtcdBackupCorrupt.md" || !strings.Contains(f.Summary, "sha256") {
		t.Errorf("corrupt newest snapshot: %+v", f)
	}
	a.waitFor(t, "the corrupt snapshot reported", gauge("etcdpulse_backup_status", 1, "dir", dir, "status", "corrupt"))
}

// backupCheck runs a one-off check and returns its backup lines by
// directory.
func backupCheck(t *testing.T, endpoints []string, mutate func(*Config)) map[string]Finding {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Etcd.Endpoints = endpoints
	mutate(&cfg)
	a, err := New(Options{Config: &cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[string]Finding{}
	for _, f := range a.Check(ctx, CheckOptions{Disk: -1}).Findings {
		if f.Check != "backup" {
			continue
		}
		t.Logf("%s %s: %s (value %q) %s", f.Level, f.Check, f.Summary, f.Value, f.Runbook)
		for _, d := range cfg.Backups.Dirs {
			if strings.HasPrefix(f.Summary, d+":") || strings.Contains(f.Summary, " "+d+" ") || strings.Contains(f.Summary, d+":") {
				out[d] = f
			}
		}
	}
	return out
}

// Bad backups settings name the setting and its flag.
func TestBackupsConfig(t *testing.T) {
	cases := map[string]func(*Config){
		`backups.dirs[0] (--backups.dirs): "snapshots" is not an absolute path`:       func(c *Config) { c.Backups.Dirs = []string{"snapshots"} },
		`backups.dirs[1] (--backups.dirs): "/a/" is listed twice`:                     func(c *Config) { c.Backups.Dirs = []string{"/a", "/a/"} },
		`backups.dirs[0] (--backups.dirs): empty: name a directory of snapshot files`: func(c *Config) { c.Backups.Dirs = []string{""} },
		`backups.read_rate (--backups.read-rate): must be 0 (no limit) or a number of bytes per second, got -1`: func(c *Config) {
			c.Backups.Dirs = []string{"/a"}
			c.Backups.ReadRate = -1
		},
		`backups.timeout (--backups.timeout): must be positive, got 0s`: func(c *Config) {
			c.Backups.Dirs = []string{"/a"}
			c.Backups.Timeout = 0
		},
	}
	for want, mutate := range cases {
		cfg := DefaultConfig()
		mutate(&cfg)
		err := cfg.Validate()
		if err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	}
	// Off by default, and then its other settings are not checked.
	cfg := DefaultConfig()
	cfg.Backups.Interval = 0
	if err := cfg.Validate(); err != nil || len(cfg.Backups.Dirs) != 0 {
		t.Errorf("default: %v, dirs %v", err, cfg.Backups.Dirs)
	}
}
