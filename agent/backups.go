package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// backups watches directories of etcd snapshots (probes.BackupProbe):
// the newest snapshot's time, size and revision, and its check, done
// once per new snapshot: the sha256 trailer and the bolt database
// (integrity), then its HashKV at its revision against the cluster's
// (restorability). Off while backups.dirs is empty. Backups kept in
// object storage (k3s and RKE2's S3 upload) are not read.
var backups = capability{
	name:  "backups",
	title: "Backups",
	settings: []Setting{
		setting("backups.dirs", "Directories of etcd snapshot files to watch (not their subdirectories): etcdctl snapshot save's files, k3s's /var/lib/rancher/k3s/server/db/snapshots, RKE2's /var/lib/rancher/rke2/server/db/snapshots, a CronJob's. Repeat the flag or separate with commas. Empty: off.",
			func(c *Config) any { return &c.Backups.Dirs }),
		setting("backups.interval", "Time between two listings of the directories; a snapshot is read and checked only the first time it is the newest.",
			func(c *Config) any { return &c.Backups.Interval }),
		setting("backups.timeout", "Deadline of a run: the listings and the check of each directory's new newest snapshot. A check that runs out of time is tried again an hour later.",
			func(c *Config) any { return &c.Backups.Timeout }),
		setting("backups.read_rate", "Bytes per second a check reads of a snapshot file at most, so that it does not compete with etcd for the disk; 0: no limit.",
			func(c *Config) any { return &c.Backups.ReadRate }),
	},
	metrics:  collectors.BackupMetrics,
	defaults: func(c *Config) { c.Backups = defaultBackupsConfig() },
	validate: func(c *Config, bad badFunc) { c.Backups.validate(bad) },
	wire:     wireBackups,
}

// BackupsConfig configures the backups capability.
type BackupsConfig struct {
	// Dirs are the directories of snapshot files; empty: off.
	Dirs []string `yaml:"dirs"`
	// Interval is the time between two listings.
	Interval Duration `yaml:"interval"`
	// Timeout bounds a run, checks included.
	Timeout Duration `yaml:"timeout"`
	// ReadRate bounds the bytes per second read of a snapshot; 0: none.
	ReadRate int64 `yaml:"read_rate"`
}

// Backups defaults. A listing every minute costs a directory read; the
// check of a new snapshot follows within a minute or two of it, before a
// Kubernetes API server (compacting every 5 minutes) has compacted its
// revision away. 10 minutes is enough to read a 1 GiB snapshot three
// times at 16 MiB/s, a rate a disk etcd shares hardly notices.
const (
	DefaultBackupsInterval = time.Minute
	DefaultBackupsTimeout  = 10 * time.Minute
	DefaultBackupsReadRate = 16 << 20
)

// backupSettle: a file modified more recently is still being written.
const backupSettle = 30 * time.Second

// Thresholds of the backup line, as the rules' (alerts/groups.go): a
// daily backup and an hour's slack for a late or slow one.
const backupTooOld = 25 * time.Hour

func defaultBackupsConfig() BackupsConfig {
	return BackupsConfig{
		Interval: Duration(DefaultBackupsInterval),
		Timeout:  Duration(DefaultBackupsTimeout),
		ReadRate: DefaultBackupsReadRate,
	}
}

// validate reports problems through bad.
func (c BackupsConfig) validate(bad badFunc) {
	seen := map[string]bool{}
	for i, d := range c.Dirs {
		path := fmt.Sprintf("backups.dirs[%d]", i)
		switch {
		case d == "":
			bad(path, "empty: name a directory of snapshot files")
		case !filepath.IsAbs(d):
			bad(path, "%q is not an absolute path", d)
		case seen[filepath.Clean(d)]:
			bad(path, "%q is listed twice", d)
		}
		seen[filepath.Clean(d)] = true
	}
	if len(c.Dirs) == 0 {
		return
	}
	if c.Interval <= 0 {
		bad("backups.interval", "must be positive, got %s", c.Interval)
	}
	if c.Timeout <= 0 {
		bad("backups.timeout", "must be positive, got %s", c.Timeout)
	}
	if c.ReadRate < 0 {
		bad("backups.read_rate", "must be 0 (no limit) or a number of bytes per second, got %d", c.ReadRate)
	}
}

func wireBackups(w *wiring) error {
	c := w.cfg.Backups
	if len(c.Dirs) == 0 {
		return nil
	}
	dirs := make([]string, len(c.Dirs))
	for i, d := range c.Dirs {
		dirs[i] = filepath.Clean(d)
	}
	p := &probes.BackupProbe{
		Dirs:    dirs,
		Limiter: probes.NewReadLimiter(c.ReadRate),
		Settle:  backupSettle,
		View:    func() probes.View { return w.view.View() },
		Logger:  w.logger.With("probe", probes.ProbeBackups),
	}
	w.collect(collectors.NewBackupCollector(p))
	w.probe(p, probes.AnyMember, time.Duration(c.Interval), time.Duration(c.Timeout))
	w.check(func(_ context.Context, _ checkInput) []Finding {
		return backupFindings(p.Results(), dirs, time.Now())
	})
	return nil
}

// backupFindings are the backup lines of a check report: one per
// directory, its newest snapshot's age and check.
func backupFindings(found []probes.BackupDir, dirs []string, now time.Time) []Finding {
	byDir := map[string]probes.BackupDir{}
	for _, d := range found {
		byDir[d.Dir] = d
	}
	var fs []Finding
	for _, dir := range dirs {
		f := Finding{Check: "backup", Threshold: "newest snapshot younger than " + backupTooOld.String() + ", verified"}
		d, ok := byDir[dir]
		switch {
		case !ok:
			f.Level, f.Summary = Warn, dir+": not listed yet"
			fs = append(fs, f)
			continue
		case d.Newest == nil:
			f.Level, f.Runbook = Warn, runbook("EtcdBackupMissing")
			f.Summary, f.Value = d.Err, "0 snapshots"
			f.Hint = "is the directory mounted, and does the backup job write there? docs/runbooks/EtcdBackupMissing.md has the commands to take one"
			fs = append(fs, f)
			continue
		}
		s := d.Newest
		age := now.Sub(s.Time)
		f.Value = fmt.Sprintf("%s old, %s", backupAge(age), statusOr(s.Status))
		f.Summary = fmt.Sprintf("%s: newest of %d snapshots %s, taken %s (%s ago), %s", dir, d.Snapshots, s.Name, s.Time.UTC().Format(time.RFC3339), backupAge(age), statusOr(s.Status))
		if s.Reason != "" {
			f.Summary += ": " + s.Reason
		}
		switch s.Status {
		case probes.BackupCorrupt:
			f.Level, f.Runbook = Fail, runbook("EtcdBackupCorrupt")
			f.Hint = "the newest snapshot cannot be restored: take a new one now, and find out what damaged it (docs/runbooks/EtcdBackupCorrupt.md)"
		case probes.BackupMismatched:
			f.Level, f.Runbook = Fail, runbook("EtcdBackupMismatch")
			f.Hint = "the newest snapshot does not hold this cluster's data: does the job back up the right cluster? (docs/runbooks/EtcdBackupMismatch.md)"
		case probes.BackupUnchecked, "":
			f.Level = Warn
			f.Hint = "the check did not finish: the reason says why; the next listing tries again"
		case probes.BackupUnverifiable, probes.BackupCompressed:
			f.Level = Info
			f.Hint = "intact, but not compared with the cluster: checked snapshots are compared within a minute or two of being written, before the cluster compacts their revision"
		}
		if age > backupTooOld && f.Level < Fail {
			f.Level, f.Runbook = Warn, runbook("EtcdBackupTooOld")
			f.Hint = "no snapshot for more than a day: is the backup job still running? (docs/runbooks/EtcdBackupTooOld.md)"
		}
		fs = append(fs, f)
	}
	return fs
}

// backupAge prints an age in hours and minutes, in days beyond two.
func backupAge(d time.Duration) string {
	if d > 48*time.Hour {
		return days(d)
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

func statusOr(s string) string {
	if s == "" {
		return probes.BackupUnchecked
	}
	return s
}
