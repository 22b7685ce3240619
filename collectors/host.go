package collectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v4/common"
	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
)

// What HostCollector reads at scrape time.
var (
	HostFilesystemSize = Metric{"etcdpulse_host_filesystem_size_bytes", Gauge,
		"Size of the filesystem holding etcd's data (dir=\"data\") or WAL (dir=\"wal\") directory; dir=\"wal\" only when the WAL is on a filesystem of its own; absent while the directory cannot be read.", []string{"dir"}}
	HostFilesystemFree = Metric{"etcdpulse_host_filesystem_free_bytes", Gauge,
		"Bytes available to unprivileged users on the filesystem of the directory.", []string{"dir"}}
	HostFilesystemFiles = Metric{"etcdpulse_host_filesystem_files", Gauge,
		"Inodes of the filesystem of the directory; absent on filesystems without a fixed inode count (btrfs).", []string{"dir"}}
	HostFilesystemFilesFree = Metric{"etcdpulse_host_filesystem_files_free", Gauge,
		"Free inodes of the filesystem of the directory; absent on filesystems without a fixed inode count (btrfs).", []string{"dir"}}
	HostDiskReads = Metric{"etcdpulse_host_disk_reads_completed_total", Counter,
		"Reads completed by the block device under etcd's data or WAL directory (/proc/diskstats).", []string{"device"}}
	HostDiskWrites = Metric{"etcdpulse_host_disk_writes_completed_total", Counter,
		"Writes completed by the block device.", []string{"device"}}
	HostDiskReadTime = Metric{"etcdpulse_host_disk_read_time_seconds_total", Counter,
		"Seconds spent by all reads of the block device; divided by reads, the read await.", []string{"device"}}
	HostDiskWriteTime = Metric{"etcdpulse_host_disk_write_time_seconds_total", Counter,
		"Seconds spent by all writes of the block device; divided by writes, the write await.", []string{"device"}}
	HostDiskIOTime = Metric{"etcdpulse_host_disk_io_time_seconds_total", Counter,
		"Seconds the block device was busy with at least one I/O; its rate is the utilisation.", []string{"device"}}
	HostDiskIOTimeWeighted = Metric{"etcdpulse_host_disk_io_time_weighted_seconds_total", Counter,
		"Seconds spent doing I/O weighted by the I/Os in flight; its rate is the average queue size.", []string{"device"}}
	HostDiskIONow = Metric{"etcdpulse_host_disk_io_now", Gauge,
		"I/Os in flight on the block device.", []string{"device"}}
	HostCPUIowait = Metric{"etcdpulse_host_cpu_iowait_seconds_total", Counter,
		"Seconds the node's CPUs, summed, spent idle with I/O outstanding.", nil}
)

// HostMetrics lists these rows in documentation order.
var HostMetrics = []Metric{HostFilesystemSize, HostFilesystemFree, HostFilesystemFiles, HostFilesystemFilesFree, HostDiskReads, HostDiskWrites, HostDiskReadTime, HostDiskWriteTime, HostDiskIOTime, HostDiskIOTimeWeighted, HostDiskIONow, HostCPUIowait}

// HostOptions configures a HostCollector.
type HostOptions struct {
	// DataDir and WALDir are etcd's data and WAL directories: their
	// filesystems and block devices are reported with dir="data" and
	// dir="wal". Empty skips one.
	DataDir string
	WALDir  string
	// DeviceEvery bounds how often the mount table is read to map a
	// directory to its block device; 0 means DefaultDeviceEvery.
	DeviceEvery time.Duration
	Logger      *slog.Logger
}

// Defaults of HostOptions and ProcessOptions.
const (
	// DefaultFindEvery: scanning /proc costs a file read per process (a
	// node can have thousands); a found process is kept and checked at
	// each scrape, so only a restarted or missing etcd waits for a scan.
	DefaultFindEvery = 10 * time.Second
	// DefaultDeviceEvery: mounts rarely change, and a node with many
	// pods has a mount table of hundreds of lines.
	DefaultDeviceEvery = time.Minute
)

// HostCollector reports, at scrape time, the filesystems and block devices
// under etcd's data and WAL directories and the node's CPU iowait (the etcd
// process is NewEtcdProcessCollector's). A value that cannot be read (a
// directory not mounted into a container) is absent, never zero, and
// logged once when it starts and once when it stops failing.
type HostCollector struct {
	opts  HostOptions
	descs descSet

	mu      sync.Mutex // one scrape at a time: the state below
	log     failureLog
	devices map[string]deviceEntry // by directory
}

type deviceEntry struct {
	name string
	err  error
	at   time.Time
}

// NewHostCollector returns a collector; it reads nothing until scraped.
func NewHostCollector(opts HostOptions) *HostCollector {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DeviceEvery <= 0 {
		opts.DeviceEvery = DefaultDeviceEvery
	}
	c := &HostCollector{opts: opts, descs: newDescSet(HostMetrics...), log: failureLog{logger: opts.Logger, failing: map[string]bool{}}, devices: map[string]deviceEntry{}}
	return c
}

// Describe implements prometheus.Collector.
func (c *HostCollector) Describe(ch chan<- *prometheus.Desc) {
	c.descs.describe(ch)
}

// Collect implements prometheus.Collector.
func (c *HostCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The mount table of this process's own mount namespace: gopsutil
	// reads PID 1's by default, whose paths differ from ours in a
	// container that shares the host's PID namespace.
	ctx := context.WithValue(context.Background(), common.EnvKey, common.EnvMap{common.HostProcMountinfo: "/proc/self/mountinfo"})
	emit := func(m Metric, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[m.Name], t, v, labels...)
	}
	var devices []string
	for _, d := range []struct{ label, path string }{{"data", c.opts.DataDir}, {"wal", c.opts.WALDir}} {
		if d.path == "" {
			continue
		}
		if d.label == "wal" && c.opts.DataDir != "" && sameFilesystem(c.opts.DataDir, d.path) {
			continue // one filesystem, one series: the alerts fire once
		}
		if dev, ok := c.collectFilesystem(ctx, emit, d.label, d.path); ok && !slices.Contains(devices, dev) {
			devices = append(devices, dev)
		}
	}
	c.collectDevices(ctx, emit, devices)
	if runtime.GOOS == "linux" { // elsewhere gopsutil reports no iowait: 0 would be a lie
		t, err := cpu.TimesWithContext(ctx, false)
		if err == nil && len(t) == 0 {
			err = errors.New("no CPU times")
		}
		if c.report("the node's CPU times", err) {
			emit(HostCPUIowait, prometheus.CounterValue, t[0].Iowait)
		}
	}
}

type emitFunc func(m Metric, t prometheus.ValueType, v float64, labels ...string)

// collectFilesystem reports the filesystem of path and returns its block
// device's name.
func (c *HostCollector) collectFilesystem(ctx context.Context, emit emitFunc, label, path string) (string, bool) {
	u, err := disk.UsageWithContext(ctx, path)
	if c.report(fmt.Sprintf("the filesystem of the %s directory %s", label, path), err) {
		emit(HostFilesystemSize, prometheus.GaugeValue, float64(u.Total), label)
		emit(HostFilesystemFree, prometheus.GaugeValue, float64(u.Free), label)
		// btrfs and some network filesystems have no inode table: 0
		// there means "no limit", not "none left".
		if u.InodesTotal > 0 {
			emit(HostFilesystemFiles, prometheus.GaugeValue, float64(u.InodesTotal), label)
			emit(HostFilesystemFilesFree, prometheus.GaugeValue, float64(u.InodesFree), label)
		}
	}
	if err != nil {
		return "", false // the device of a directory we cannot see is moot
	}
	dev, err := c.device(ctx, path)
	return dev, c.report(fmt.Sprintf("the block device of the %s directory %s", label, path), err)
}

// device returns the block device name (as /proc/diskstats has it) of the
// filesystem holding dir, from the mount table, cached for DeviceEvery.
func (c *HostCollector) device(ctx context.Context, dir string) (string, error) {
	if e, ok := c.devices[dir]; ok && time.Since(e.at) < c.opts.DeviceEvery {
		return e.name, e.err
	}
	name, err := findDevice(ctx, dir)
	c.devices[dir] = deviceEntry{name: name, err: err, at: time.Now()}
	return name, err
}

func findDevice(ctx context.Context, dir string) (string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if real, err = filepath.Abs(real); err != nil {
		return "", err
	}
	// all=true keeps bind mounts, which is how a container sees a host's
	// data directory.
	parts, err := disk.PartitionsWithContext(ctx, true)
	if err != nil {
		return "", fmt.Errorf("mount table: %w", err)
	}
	p, ok := mountOf(real, parts)
	if !ok {
		return "", fmt.Errorf("no mount holds %s", real)
	}
	if !strings.HasPrefix(p.Device, "/dev/") {
		return "", fmt.Errorf("%s is on %s (%s), not a block device", real, p.Device, p.Fstype)
	}
	dev := p.Device
	if r, err := filepath.EvalSymlinks(dev); err == nil { // /dev/disk/by-uuid/… and the like
		dev = r
	}
	return filepath.Base(dev), nil
}

// mountOf returns the mount holding path: the longest mount point that is
// path or a parent of it; of mounts stacked on one point, the last.
func mountOf(path string, parts []disk.PartitionStat) (disk.PartitionStat, bool) {
	var best disk.PartitionStat
	found := false
	for _, p := range parts {
		mp := p.Mountpoint
		if mp != "/" && mp != path && !strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") {
			continue
		}
		if !found || len(mp) >= len(best.Mountpoint) {
			best, found = p, true
		}
	}
	return best, found
}

func (c *HostCollector) collectDevices(ctx context.Context, emit emitFunc, devices []string) {
	if len(devices) == 0 {
		return
	}
	// IOCounters rewrites its arguments: give it a copy.
	stats, err := disk.IOCountersWithContext(ctx, slices.Clone(devices)...)
	if !c.report("/proc/diskstats", err) {
		return
	}
	const ms = 1e-3
	for _, dev := range devices {
		s, ok := stats[dev]
		var err error
		if !ok {
			err = fmt.Errorf("%s is not in /proc/diskstats (or has done no I/O)", dev)
		}
		if !c.report("the I/O statistics of device "+dev, err) {
			continue
		}
		emit(HostDiskReads, prometheus.CounterValue, float64(s.ReadCount), dev)
		emit(HostDiskWrites, prometheus.CounterValue, float64(s.WriteCount), dev)
		emit(HostDiskReadTime, prometheus.CounterValue, float64(s.ReadTime)*ms, dev)
		emit(HostDiskWriteTime, prometheus.CounterValue, float64(s.WriteTime)*ms, dev)
		emit(HostDiskIOTime, prometheus.CounterValue, float64(s.IoTime)*ms, dev)
		emit(HostDiskIOTimeWeighted, prometheus.CounterValue, float64(s.WeightedIO)*ms, dev)
		emit(HostDiskIONow, prometheus.GaugeValue, float64(s.IopsInProgress), dev)
	}
}

// Err implements Failing: what could not be read at the last scrape.
func (c *HostCollector) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.err()
}

// report logs a failure once when it starts and once when it stops, and
// says whether there was none.
func (c *HostCollector) report(what string, err error, attrs ...any) bool {
	return c.log.report(what, err, attrs...)
}
