package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// disk measures fdatasync on the WAL's filesystem the way etcd's WAL syncs
// (a small sequential write into a fresh preallocated file, then
// fdatasync), and reports a sync that does not return: a hung disk.
var disk = capability{
	name:  "disk",
	title: "Disk",
	settings: []Setting{
		setting("disk.enabled", "Run the fsync probe.", func(c *Config) any { return &c.Disk.Enabled }),
		setting("disk.probe_dir", "Directory for the probe's file, on the WAL's filesystem and outside member/; empty: "+DefaultProbeDirName+" beside the data directory (beside the WAL directory when etcd.wal_dir is outside the data directory).",
			func(c *Config) any { return &c.Disk.ProbeDir }),
		setting("disk.interval", "Time between two rounds of syncs; each fdatasync also flushes etcd's writes from the disk cache.", func(c *Config) any { return &c.Disk.Interval }),
		setting("disk.syncs", "write+fdatasync pairs in a round.", func(c *Config) any { return &c.Disk.Syncs }),
		setting("disk.write_size", "Bytes written before each fdatasync (etcd's fio guidance: 2300).", func(c *Config) any { return &c.Disk.WriteSize }),
		setting("disk.file_size", "Preallocated size of the probe file, and so the most it holds; at least disk.syncs × disk.write_size.", func(c *Config) any { return &c.Disk.FileSize }),
		setting("disk.stall_threshold", "A disk operation outstanding longer is reported stalled (etcdpulse_disk_fsync_stalled).", func(c *Config) any { return &c.Disk.StallThreshold }),
		setting("disk.timeout", "Deadline of a round.", func(c *Config) any { return &c.Disk.Timeout }),
	},
	metrics:  collectors.DiskMetrics,
	defaults: func(c *Config) { c.Disk = defaultDiskConfig() },
	validate: func(c *Config, bad badFunc) { c.Disk.validate(c.Etcd, bad) },
	wire:     wireDisk,
}

// DiskConfig configures the fsync probe on the filesystem of the WAL.
type DiskConfig struct {
	// Enabled turns the fsync probe on.
	Enabled bool `yaml:"enabled"`
	// ProbeDir holds the probe's file; empty means DefaultProbeDirName
	// beside the data directory, or beside the WAL directory when
	// --etcd.wal-dir puts it outside the data directory. See Dir.
	ProbeDir string `yaml:"probe_dir"`
	// Interval is the time between two rounds.
	Interval Duration `yaml:"interval"`
	// Syncs is the number of write+fdatasync pairs in a round.
	Syncs int `yaml:"syncs"`
	// WriteSize is the bytes written before each fdatasync.
	WriteSize int `yaml:"write_size"`
	// FileSize is the preallocated size of the probe file, and so the most
	// it ever holds; at least Syncs × WriteSize.
	FileSize int64 `yaml:"file_size"`
	// StallThreshold: a sync outstanding for longer is reported stalled.
	StallThreshold Duration `yaml:"stall_threshold"`
	// Timeout is the deadline of a round.
	Timeout Duration `yaml:"timeout"`
}

// Disk defaults; docs/configuration.md says why.
const (
	// DefaultProbeDirName is the probe directory's name, beside the data
	// directory (never inside it: etcd warns about any entry of its data
	// directory other than member/).
	DefaultProbeDirName = ".etcdpulse-probe"
	// DefaultDiskInterval and DefaultDiskSyncs: a burst of 16 syncs every
	// 20 s, 48 syncs a minute.
	DefaultDiskInterval = 20 * time.Second
	DefaultDiskSyncs    = 16
	// DefaultDiskWriteSize is the write size of etcd's own fio guidance.
	DefaultDiskWriteSize = 2300
	// DefaultDiskFileSize bounds the probe file.
	DefaultDiskFileSize = 1 << 20
	// DefaultDiskStallThreshold is etcd's default election timeout: a WAL
	// sync that long costs the member its leadership or its vote.
	DefaultDiskStallThreshold = time.Second
	// DefaultDiskTimeout is the deadline of a round.
	DefaultDiskTimeout = 5 * time.Second
)

// Disk limits that keep the probe cheap for the disk it shares with etcd.
const (
	maxDiskSyncs          = 100
	maxDiskFileSize       = 64 << 20 // one etcd WAL segment
	maxDiskBytesPerMinute = 16 << 20
	minDiskInterval       = time.Second
)

func defaultDiskConfig() DiskConfig {
	return DiskConfig{
		Enabled:        true,
		Interval:       Duration(DefaultDiskInterval),
		Syncs:          DefaultDiskSyncs,
		WriteSize:      DefaultDiskWriteSize,
		FileSize:       DefaultDiskFileSize,
		StallThreshold: Duration(DefaultDiskStallThreshold),
		Timeout:        Duration(DefaultDiskTimeout),
	}
}

// Dir returns the probe directory: ProbeDir when set; else beside the WAL
// directory when --etcd.wal-dir puts it outside the data directory (a WAL
// on a disk of its own is the disk to measure); else beside the data
// directory.
func (d DiskConfig) Dir(e EtcdConfig) string {
	if d.ProbeDir != "" {
		return filepath.Clean(d.ProbeDir)
	}
	if e.WALDir != "" && !within(e.WALDir, e.DataDir) {
		return filepath.Join(filepath.Dir(filepath.Clean(e.WALDir)), DefaultProbeDirName)
	}
	return filepath.Join(filepath.Dir(filepath.Clean(e.DataDir)), DefaultProbeDirName)
}

// validate reports problems through bad.
func (d DiskConfig) validate(etcd EtcdConfig, bad badFunc) {
	if !d.Enabled {
		return
	}
	if etcd.DataDir == "" {
		bad("etcd.data_dir", "must name the member's data directory (etcd's --data-dir), or disable the fsync probe with disk.enabled: false")
	}
	dir := d.Dir(etcd)
	member := filepath.Join(etcd.DataDir, "member")
	switch {
	case etcd.DataDir != "" && within(dir, member):
		bad("disk.probe_dir", "%q is inside the member directory %q, which etcd owns: use a directory beside the data directory, such as %q", dir, member, filepath.Join(filepath.Dir(filepath.Clean(etcd.DataDir)), DefaultProbeDirName))
	case within(dir, etcd.WAL()):
		bad("disk.probe_dir", "%q is inside the WAL directory %q, which etcd owns: use a directory beside it on the same filesystem", dir, etcd.WAL())
	case etcd.DataDir != "" && filepath.Clean(dir) == filepath.Clean(etcd.DataDir):
		bad("disk.probe_dir", "%q is the data directory itself: use a directory of its own, such as %q", dir, filepath.Join(filepath.Dir(filepath.Clean(etcd.DataDir)), DefaultProbeDirName))
	}
	if d.Interval < Duration(minDiskInterval) {
		bad("disk.interval", "must be at least %s, got %s: every fdatasync also flushes etcd's writes from the disk cache", minDiskInterval, d.Interval)
	}
	if d.Syncs < 1 || d.Syncs > maxDiskSyncs {
		bad("disk.syncs", "must be between 1 and %d, got %d: bursts stay small so that etcd's own syncs do not queue behind them", maxDiskSyncs, d.Syncs)
	}
	if d.WriteSize < 1 {
		bad("disk.write_size", "must be positive, got %d", d.WriteSize)
	}
	switch need := int64(d.Syncs) * int64(d.WriteSize); {
	case d.FileSize > maxDiskFileSize:
		bad("disk.file_size", "must be at most %d (64 MiB, one etcd WAL segment), got %d", maxDiskFileSize, d.FileSize)
	case d.FileSize < need:
		bad("disk.file_size", "must hold a round's writes: at least disk.syncs × disk.write_size = %d bytes, got %d", need, d.FileSize)
	}
	if d.Interval > 0 && d.Syncs > 0 && d.WriteSize > 0 {
		perMinute := float64(d.Syncs) * float64(d.WriteSize) * float64(time.Minute) / float64(d.Interval)
		if perMinute > maxDiskBytesPerMinute {
			bad("disk.syncs", "the probe would write %.0f bytes a minute (disk.syncs × disk.write_size per disk.interval); keep it under %d (16 MiB)", perMinute, maxDiskBytesPerMinute)
		}
	}
	if d.StallThreshold <= 0 {
		bad("disk.stall_threshold", "must be positive, got %s", d.StallThreshold)
	}
	switch {
	case d.Timeout <= 0:
		bad("disk.timeout", "must be positive, got %s", d.Timeout)
	case d.Timeout > d.Interval:
		bad("disk.timeout", "must not exceed disk.interval (%s), got %s", d.Interval, d.Timeout)
	}
}

// wireDisk adds the fsync probe on the local member's WAL filesystem, its
// histogram and its collector. A data directory that does not exist is not
// an error here: the probe reports itself refused (no_wal_dir) and the
// rest of the agent runs.
func wireDisk(w *wiring) error {
	d := w.cfg.Disk
	if !d.Enabled {
		return nil
	}
	hist := collectors.NewFsyncHistogram()
	p := probes.NewFsyncProbe(probes.FsyncOptions{
		Dir:            d.Dir(w.cfg.Etcd),
		WALDir:         w.cfg.Etcd.WAL(),
		DataDir:        w.cfg.Etcd.DataDir,
		Syncs:          d.Syncs,
		WriteSize:      d.WriteSize,
		FileSize:       d.FileSize,
		StallThreshold: time.Duration(d.StallThreshold),
		Observer:       hist.WithLabelValues(),
		Logger:         w.logger,
	})
	w.probe(p, probes.LocalMember, time.Duration(d.Interval), time.Duration(d.Timeout))
	w.fsync = p
	w.collect(hist, collectors.NewDiskCollector(p))
	w.figure("etcdpulse.disk.fsync_p99_seconds", p.LastRoundP99)
	w.check(func(ctx context.Context, in checkInput) []Finding { return checkDisk(ctx, p, in.opts.Disk) })
	return nil
}

// fsyncGuidance is etcd's guidance for the WAL disk: the 99th percentile
// of fdatasync under 10 ms (etcd's hardware recommendations, and its fio
// recipe).
const fsyncGuidance = 10 * time.Millisecond

// checkDisk runs the fsync probe's rounds back to back for d, as fio's
// recipe for etcd does, and holds their p99 to etcd's 10 ms.
func checkDisk(ctx context.Context, p *probes.FsyncProbe, d time.Duration) []Finding {
	if d < 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var all []time.Duration
	var err error
	for ctx.Err() == nil {
		var ds []time.Duration
		if ds, err = p.Measure(ctx); err != nil {
			break
		}
		all = append(all, ds...)
	}
	var stall *probes.FsyncStallError
	switch {
	case errors.As(err, &stall) && !stall.AtDeadline || errors.As(err, &stall) && len(all) == 0:
		return []Finding{{Check: "fsync_p99", Level: Fail, Summary: "fsync stalled: " + err.Error(), Hint: "a disk operation did not return: the disk is hung or saturated", Runbook: runbook("EtcdFsyncStalled")}}
	case len(all) == 0 && err != nil:
		return []Finding{{Check: "fsync_p99", Level: Warn, Summary: "fsync not measured: " + err.Error(), Runbook: runbook("EtcdpulseFsyncProbeRefused")}}
	case len(all) == 0:
		return []Finding{{Check: "fsync_p99", Level: Warn, Summary: "fsync not measured: the check ended first"}}
	}
	slices.Sort(all)
	p99 := all[(len(all)*99+99)/100-1]
	f := Finding{Check: "fsync_p99", Value: millis(p99), Threshold: millis(fsyncGuidance), Runbook: runbook("EtcdFsyncSlow")}
	if p99 > fsyncGuidance {
		f.Level = Fail
		f.Summary = fmt.Sprintf("fsync p99 %s > %s over %d syncs", millis(p99), millis(fsyncGuidance), len(all))
		f.Hint = "the disk is too slow for etcd: its WAL syncs on every commit"
	} else {
		f.Summary = fmt.Sprintf("fsync p99 %s <= %s over %d syncs", millis(p99), millis(fsyncGuidance), len(all))
		f.Runbook = ""
	}
	return []Finding{f}
}
