package collectors

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/shirou/gopsutil/v4/disk"
	"golang.org/x/sys/unix"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// families gathers c through a pedantic registry (which checks that every
// metric matches its description).
func families(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value returns the sample of name with the given label pairs.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	return testenv.Sample(mfs, name, labels...)
}

// diskstatsName finds the block device of dir the way the collector does
// not: by the device number of the directory, looked up in /proc/diskstats.
func diskstatsName(t *testing.T, dir string) (string, bool) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/diskstats")
	if err != nil {
		return "", false
	}
	defer f.Close()
	want := fmt.Sprintf("%d %d", unix.Major(st.Dev), unix.Minor(st.Dev))
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 3 && fs[0]+" "+fs[1] == want {
			return fs[2], true
		}
	}
	return "", false
}

// The collector against this machine: this test process stands in for
// etcd, a temporary directory for its data directory.
func TestHostCollectorRealMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	data := t.TempDir()
	wal := filepath.Join(data, "member", "wal")
	if err := os.MkdirAll(wal, 0o700); err != nil {
		t.Fatal(err)
	}
	c := NewHostCollector(HostOptions{DataDir: data, WALDir: wal})
	mfs := families(t, c)
	must := func(name string, labels ...string) float64 {
		t.Helper()
		v, ok := value(mfs, name, labels...)
		if !ok {
			t.Fatalf("%s%v absent", name, labels)
		}
		return v
	}
	// The WAL shares the data directory's filesystem: one series.
	for _, m := range []Metric{HostFilesystemSize, HostFilesystemFree} {
		if n := len(mfs[m.Name].GetMetric()); n != 1 {
			t.Errorf("%s: %d series for data and WAL on one filesystem, want 1 (dir=\"data\")", m.Name, n)
		}
	}
	if _, ok := value(mfs, HostFilesystemSize.Name, "dir", "wal"); ok {
		t.Errorf("dir=\"wal\" reported although the WAL is on the data directory's filesystem")
	}
	for _, dir := range []string{"data"} {
		size, free := must(HostFilesystemSize.Name, "dir", dir), must(HostFilesystemFree.Name, "dir", dir)
		if size <= 0 || free < 0 || free > size {
			t.Errorf("dir=%s: size %v, free %v", dir, size, free)
		}
		if files, ok := value(mfs, HostFilesystemFiles.Name, "dir", dir); ok {
			if ff := must(HostFilesystemFilesFree.Name, "dir", dir); files <= 0 || ff > files {
				t.Errorf("dir=%s: files %v, files free %v", dir, files, ff)
			}
		}
	}

	dev, inDiskstats := diskstatsName(t, data)
	if _, ok := value(mfs, HostDiskWrites.Name, "device", dev); ok != inDiskstats {
		t.Errorf("device %q in /proc/diskstats: %v, but its counters exported: %v", dev, inDiskstats, ok)
	}
	if inDiskstats {
		if n := len(mfs[HostDiskIOTime.Name].GetMetric()); n != 1 {
			t.Errorf("%d devices reported for data and WAL on one filesystem, want 1", n)
		}
		for _, m := range []Metric{HostDiskReads, HostDiskReadTime, HostDiskWriteTime, HostDiskIOTime, HostDiskIOTimeWeighted, HostDiskIONow} {
			if v := must(m.Name, "device", dev); v < 0 {
				t.Errorf("%s = %v", m.Name, v)
			}
		}
	}
	if v := must(HostCPUIowait.Name); v < 0 {
		t.Errorf("iowait = %v", v)
	}

	body := gather(t, c)
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for name := range mfs {
		if _, ok := Find(HostMetrics, name); !ok {
			t.Errorf("%s exported but not in HostMetrics", name)
		}
	}
}

// A WAL on a filesystem of its own (here a tmpfs, beside a data directory
// on the test's disk) gets its own dir="wal" series.
func TestHostCollectorSeparateWALFilesystem(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	data := t.TempDir()
	wal, err := os.MkdirTemp("/dev/shm", "etcdpulse-wal-")
	if err != nil {
		testenv.Unavailable(t, "no writable /dev/shm for a second filesystem: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(wal) })
	if sameFilesystem(data, wal) {
		testenv.Unavailable(t, "%s and %s are on one filesystem; set TMPDIR to a directory on a disk", data, wal)
	}
	mfs := families(t, NewHostCollector(HostOptions{DataDir: data, WALDir: wal}))
	var st unix.Statfs_t
	if err := unix.Statfs(wal, &st); err != nil {
		t.Fatal(err)
	}
	want := float64(st.Blocks) * float64(st.Bsize)
	if got, ok := value(mfs, HostFilesystemSize.Name, "dir", "wal"); !ok || got != want {
		t.Errorf("%s{dir=\"wal\"} = %v (present %v), want the tmpfs's %v", HostFilesystemSize.Name, got, ok, want)
	}
	if _, ok := value(mfs, HostFilesystemSize.Name, "dir", "data"); !ok {
		t.Errorf("%s{dir=\"data\"} absent", HostFilesystemSize.Name)
	}
}

// What cannot be read is absent, not zero, and logged once per change, not
// at every scrape.
func TestHostCollectorUnreadable(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	missing := filepath.Join(t.TempDir(), "nonexistent")
	c := NewHostCollector(HostOptions{DataDir: missing, WALDir: filepath.Join(missing, "member", "wal"), Logger: logger})
	var mfs map[string]*dto.MetricFamily
	for range 3 {
		mfs = families(t, c)
	}
	for name := range mfs {
		if name != HostCPUIowait.Name {
			t.Errorf("%s exported although nothing it reads is readable", name)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 { // data, WAL
		t.Errorf("%d log lines after 3 scrapes, want 2 (one per unreadable thing):\n%s", len(lines), logs.String())
	}
}

func TestMountOf(t *testing.T) {
	parts := []disk.PartitionStat{
		{Device: "/dev/vda", Mountpoint: "/"},
		{Device: "/dev/vdb", Mountpoint: "/var/lib/etcd"},
		{Device: "tmpfs", Mountpoint: "/var/lib/etcdx"},
		{Device: "/dev/vdc", Mountpoint: "/var/lib/etcd/member/wal"},
		{Device: "/dev/vdd", Mountpoint: "/var/lib/etcd/member/wal"}, // stacked on top
	}
	for _, tc := range []struct{ path, want string }{
		{"/", "/dev/vda"},
		{"/var/lib", "/dev/vda"},
		{"/var/lib/etcd", "/dev/vdb"},
		{"/var/lib/etcd/member", "/dev/vdb"},
		{"/var/lib/etcdx/a", "tmpfs"},
		{"/var/lib/etcd/member/wal", "/dev/vdd"},
		{"/var/lib/etcd/member/wal/0.tmp", "/dev/vdd"},
	} {
		got, ok := mountOf(tc.path, parts)
		if !ok || got.Device != tc.want {
			t.Errorf("mountOf(%q) = %q, %v; want %q", tc.path, got.Device, ok, tc.want)
		}
	}
	if _, ok := mountOf("/x", nil); ok {
		t.Error("a mount found in an empty table")
	}
}
