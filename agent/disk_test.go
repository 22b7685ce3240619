package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
	"github.com/etcdpulse/etcdpulse/probes"
)

const (
	mFsyncDuration = "etcdpulse_disk_fsync_duration_seconds"
	mFsyncStalled  = "etcdpulse_disk_fsync_stalled"
	mFsyncRefused  = "etcdpulse_disk_fsync_probe_refused"
	mFsyncWritten  = "etcdpulse_disk_fsync_written_bytes_total"
)

// An agent beside a member whose data directory is on a real disk measures
// fsync there and leaves no probe file behind.
func TestDiskProbeOnRealDataDir(t *testing.T) {
	base := testenv.DiskDir(t)
	data := filepath.Join(base, "etcd")
	if err := os.MkdirAll(filepath.Join(data, "member", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	url := closedEndpoint(t)
	a := startAgent(t, []string{url}, func(c *Config) { c.Etcd.DataDir = data })
	probeDir := filepath.Join(base, DefaultProbeDirName)
	if got := a.cfg.Disk.Dir(a.cfg.Etcd); got != probeDir {
		t.Fatalf("probe directory %s, want %s beside the data directory", got, probeDir)
	}
	a.waitFor(t, "a first fsync round", func(m metrics) error {
		if _, ok := m[mFsyncRefused]; ok {
			return nil
		}
		return histCountAtLeast(mFsyncDuration, 1)(m)
	})
	a.waitFor(t, "a round of fsyncs measured",
		histCountAtLeast(mFsyncDuration, DefaultDiskSyncs),
		counterAtLeast(mFsyncWritten, DefaultDiskSyncs*DefaultDiskWriteSize),
		gauge(mFsyncStalled, 0),
		gauge("etcdpulse_probe_success", 1, "probe", probes.ProbeFsync, "member", url),
		absentFamily(mFsyncRefused))
	// The round removes its file right after its last sync.
	deadline := time.Now().Add(45 * time.Second)
	for {
		es, err := os.ReadDir(probeDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe directory still holds %s", es[0].Name())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if entries, _ := os.ReadDir(data); len(entries) != 1 || entries[0].Name() != "member" {
		t.Errorf("the data directory holds %v besides member/", entries)
	}
}

// Where no etcd data exists (the default /var/lib/etcd on a laptop), the
// probe reports itself refused and the rest of the agent works.
func TestDiskProbeWithoutDataDir(t *testing.T) {
	base := t.TempDir()
	url := closedEndpoint(t)
	a := startAgent(t, []string{url}, func(c *Config) { c.Etcd.DataDir = filepath.Join(base, "no-such-dir") })
	a.waitFor(t, "the fsync probe refused, the agent running",
		gauge(mFsyncRefused, 1, "reason", probes.RefusedNoWALDir),
		gauge("etcdpulse_probe_success", 0, "probe", probes.ProbeFsync, "member", url),
		gauge(mUp, 0), gauge(mFsyncStalled, 0))
	if _, err := os.Stat(filepath.Join(base, DefaultProbeDirName)); !os.IsNotExist(err) {
		t.Errorf("probe directory created without a data directory: %v", err)
	}
}

func TestDiskDisabled(t *testing.T) {
	a := startAgent(t, []string{closedEndpoint(t)}, func(c *Config) { c.Disk.Enabled = false })
	a.waitFor(t, "a first round", gauge(mUp, 0), absentFamily(mFsyncStalled), absentFamily(mFsyncDuration))
}

func TestDiskProbeDir(t *testing.T) {
	for _, c := range []struct {
		name                   string
		data, wal, probe, want string
	}{
		{"default: beside the data directory", "/var/lib/etcd", "", "", "/var/lib/.etcdpulse-probe"},
		{"trailing slash", "/var/lib/etcd/", "", "", "/var/lib/.etcdpulse-probe"},
		{"WAL on a disk of its own: beside it", "/var/lib/etcd", "/mnt/wal/etcd", "", "/mnt/wal/.etcdpulse-probe"},
		{"WAL inside the data directory: beside the data directory", "/var/lib/etcd", "/var/lib/etcd/wal", "", "/var/lib/.etcdpulse-probe"},
		{"set", "/var/lib/etcd", "", "/srv/probe/", "/srv/probe"},
	} {
		d := defaultDiskConfig()
		d.ProbeDir = c.probe
		if got := d.Dir(EtcdConfig{DataDir: c.data, WALDir: c.wal}); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// Every disk validation rule and the exact message it gives.
func TestDiskConfigErrors(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want string
	}{
		{"disk: {probe_dir: /var/lib/etcd/member/probe}",
			`disk.probe_dir (--disk.probe-dir): "/var/lib/etcd/member/probe" is inside the member directory "/var/lib/etcd/member", which etcd owns: use a directory beside the data directory, such as "/var/lib/.etcdpulse-probe"`},
		{"etcd: {wal_dir: /wal}\ndisk: {probe_dir: /wal/probe}",
			`disk.probe_dir (--disk.probe-dir): "/wal/probe" is inside the WAL directory "/wal", which etcd owns: use a directory beside it on the same filesystem`},
		{"disk: {probe_dir: /var/lib/etcd}",
			`disk.probe_dir (--disk.probe-dir): "/var/lib/etcd" is the data directory itself: use a directory of its own, such as "/var/lib/.etcdpulse-probe"`},
		{"etcd: {data_dir: \"\"}",
			`etcd.data_dir (--etcd.data-dir): must name the member's data directory (etcd's --data-dir), or disable the fsync probe with disk.enabled: false`},
		{"disk: {interval: 500ms, timeout: 100ms}",
			`disk.interval (--disk.interval): must be at least 1s, got 500ms: every fdatasync also flushes etcd's writes from the disk cache`},
		{"disk: {syncs: 0}",
			`disk.syncs (--disk.syncs): must be between 1 and 100, got 0: bursts stay small so that etcd's own syncs do not queue behind them`},
		{"disk: {syncs: 101, file_size: 1048576}",
			`disk.syncs (--disk.syncs): must be between 1 and 100, got 101: bursts stay small so that etcd's own syncs do not queue behind them`},
		{"disk: {write_size: 0}", `disk.write_size (--disk.write-size): must be positive, got 0`},
		{"disk: {syncs: 16, write_size: 100000}",
			`disk.file_size (--disk.file-size): must hold a round's writes: at least disk.syncs × disk.write_size = 1600000 bytes, got 1048576`},
		{"disk: {file_size: 67108865}", `disk.file_size (--disk.file-size): must be at most 67108864 (64 MiB, one etcd WAL segment), got 67108865`},
		{"disk: {interval: 1s, timeout: 1s, syncs: 100, write_size: 4096, file_size: 409600}",
			`disk.syncs (--disk.syncs): the probe would write 24576000 bytes a minute (disk.syncs × disk.write_size per disk.interval); keep it under 16777216 (16 MiB)`},
		{"disk: {stall_threshold: 0s}", `disk.stall_threshold (--disk.stall-threshold): must be positive, got 0s`},
		{"disk: {timeout: 0s}", `disk.timeout (--disk.timeout): must be positive, got 0s`},
		{"disk: {timeout: 30s}", `disk.timeout (--disk.timeout): must not exceed disk.interval (20s), got 30s`},
		{"disk: {enabled: false, syncs: 0, probe_dir: /var/lib/etcd/member}", ``},
	} {
		cfg := parseYAML(t, c.yaml)
		got := ""
		if err := cfg.Validate(); err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%s:\n got: %s\nwant: %s", c.yaml, got, c.want)
		}
	}
}

// The defaults are valid and cost what docs/configuration.md says.
func TestDiskDefaults(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := cfg.Disk
	perHour := int64(d.Syncs) * int64(d.WriteSize) * int64(time.Hour/time.Duration(d.Interval))
	if perHour != 6_624_000 {
		t.Errorf("bytes written per hour at defaults = %d, docs say 6624000", perHour)
	}
	if int64(d.Syncs)*int64(d.WriteSize) > d.FileSize {
		t.Errorf("a round does not fit the file")
	}
}

// closedEndpoint is a client URL where connections are refused, and stay
// refused for the whole test.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	return "http://" + testenv.RefusedAddr(t)
}

func histCountAtLeast(name string, min uint64) expect {
	return func(m metrics) error {
		mf, ok := m[name]
		if !ok || len(mf.Metric) == 0 || mf.Metric[0].Histogram == nil {
			return fmt.Errorf("%s absent", name)
		}
		if got := mf.Metric[0].Histogram.GetSampleCount(); got < min {
			return fmt.Errorf("%s_count = %d, want >= %d", name, got, min)
		}
		return nil
	}
}

func absentFamily(name string) expect {
	return func(m metrics) error {
		if mf, ok := m[name]; ok {
			var s []string
			for _, x := range mf.Metric {
				s = append(s, x.String())
			}
			return fmt.Errorf("%s present: %s", name, strings.Join(s, "; "))
		}
		return nil
	}
}
