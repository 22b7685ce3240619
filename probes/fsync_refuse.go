package probes

// Where the fsync probe refuses to measure, and why: a number from a disk
// that is not the WAL's, or from no disk at all, would mislead.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Reasons the fsync probe refuses to measure: FsyncState.Refused and the
// reason label of etcdpulse_disk_fsync_probe_refused.
const (
	// RefusedTmpfs: the probe directory is on tmpfs or ramfs, where an
	// fdatasync reaches no disk.
	RefusedTmpfs = "tmpfs"
	// RefusedOverlay: the probe directory is on overlayfs (a container's
	// root), whose upper layer is not the WAL's disk.
	RefusedOverlay = "overlay"
	// RefusedOtherDevice: the probe directory and the WAL directory are on
	// different devices.
	RefusedOtherDevice = "other_device"
	// RefusedNoWALDir: neither the WAL directory nor the data directory
	// exists.
	RefusedNoWALDir = "no_wal_dir"
	// RefusedNoSpace: preallocating the probe file would leave less than
	// FsyncMinFree on the filesystem.
	RefusedNoSpace = "no_space"
	// RefusedError: a check or the file's creation failed otherwise (for
	// example, permission denied).
	RefusedError = "error"
)

// FsyncRefusedReasons lists every refusal reason.
var FsyncRefusedReasons = []string{RefusedTmpfs, RefusedOverlay, RefusedOtherDevice, RefusedNoWALDir, RefusedNoSpace, RefusedError}

// FsyncMinFree is the free space the probe leaves on the WAL's filesystem
// beyond its own file: two of etcd's 64 MB WAL segments, the most etcd
// preallocates ahead of need. The probe never takes the space etcd's next
// segment needs.
const FsyncMinFree = 128 << 20

// Filesystem magic numbers (statfs f_type) the probe refuses.
const (
	tmpfsMagic   = 0x01021994
	ramfsMagic   = 0x858458f6
	overlayMagic = 0x794c7630
)

// fsNames names the common filesystems in log lines.
var fsNames = map[int64]string{
	0xef53:       "ext4",
	0x58465342:   "xfs",
	0x9123683e:   "btrfs",
	0x2fc12fc1:   "zfs",
	0x6969:       "nfs",
	0xff534d42:   "cifs",
	tmpfsMagic:   "tmpfs",
	ramfsMagic:   "ramfs",
	overlayMagic: "overlay",
}

// classifyFS returns the refusal reason for a filesystem type, or "" when
// the probe may measure on it.
func classifyFS(fsType int64) string {
	switch fsType {
	case tmpfsMagic, ramfsMagic:
		return RefusedTmpfs
	case overlayMagic:
		return RefusedOverlay
	}
	return ""
}

func fsName(fsType int64) string {
	if n, ok := fsNames[fsType]; ok {
		return n
	}
	return fmt.Sprintf("0x%x", fsType)
}

// check decides whether the probe may measure, reports the decision and
// returns a FsyncRefusedError when it may not.
func (p *FsyncProbe) check() error {
	var reason, detail string
	var st fsStat
	_, _ = p.io("check", func() error {
		reason, detail, st = p.classify()
		return nil
	})
	p.report(reason, detail, "fs", fsName(st.Type))
	if reason != "" {
		return &FsyncRefusedError{Reason: reason, Detail: detail}
	}
	return nil
}

// classify returns why the probe may not measure, or "" when it may.
func (p *FsyncProbe) classify() (reason, detail string, st fsStat) {
	ref := p.opts.WALDir
	refDev, err := p.fs.Device(ref)
	if errors.Is(err, fs.ErrNotExist) && p.opts.DataDir != "" {
		ref = p.opts.DataDir
		refDev, err = p.fs.Device(ref)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return RefusedNoWALDir, fmt.Sprintf("neither the WAL directory %s nor the data directory %s exists (check --etcd.data-dir and --etcd.wal-dir)", p.opts.WALDir, p.opts.DataDir), st
	case err != nil:
		return RefusedError, statError(ref, err), st
	}
	if err := os.MkdirAll(p.opts.Dir, 0o700); err != nil {
		return RefusedError, fmt.Sprintf("cannot create the probe directory (--disk.probe-dir): %v", err), st
	}
	if st, err = p.fs.Statfs(p.opts.Dir); err != nil {
		return RefusedError, fmt.Sprintf("statfs %s: %v", p.opts.Dir, err), st
	}
	if r := classifyFS(st.Type); r != "" {
		return r, fmt.Sprintf("the probe directory %s is on %s, where fdatasync reaches no disk", p.opts.Dir, fsName(st.Type)), st
	}
	dev, err := p.fs.Device(p.opts.Dir)
	if err != nil {
		return RefusedError, statError(p.opts.Dir, err), st
	}
	if dev != refDev {
		return RefusedOtherDevice, fmt.Sprintf("the probe directory %s is on device %s, %s on %s: set --disk.probe-dir to a directory on the WAL's filesystem, outside member/", p.opts.Dir, devName(dev), ref, devName(refDev)), st
	}
	if need := uint64(p.opts.FileSize) + FsyncMinFree; st.Avail < need {
		return RefusedNoSpace, fmt.Sprintf("%s has %d bytes free; the probe needs %d (its file plus %d MiB left for etcd's WAL)", p.opts.Dir, st.Avail, need, FsyncMinFree>>20), st
	}
	return "", "", st
}

// report records the decision and logs it when it changed.
func (p *FsyncProbe) report(reason, detail string, attrs ...any) {
	state := reason
	if state == "" {
		state = "measuring"
	}
	p.mu.Lock()
	changed := state != p.logged
	p.logged, p.refused = state, reason
	p.mu.Unlock()
	if !changed {
		return
	}
	if reason != "" {
		p.logger.Warn("fsync probe refuses to measure", "reason", reason, "detail", detail, "dir", p.opts.Dir)
		return
	}
	p.logger.Info("fsync probe measuring", append([]any{"dir", p.opts.Dir, "wal_dir", p.opts.WALDir, "syncs", p.opts.Syncs, "write_size", p.opts.WriteSize}, attrs...)...)
}

// FsyncRefusedError says why the fsync probe does not measure.
type FsyncRefusedError struct {
	Reason string
	Detail string
}

func (e *FsyncRefusedError) Error() string {
	return fmt.Sprintf("fsync: refused (%s): %s", e.Reason, e.Detail)
}

// errNoSpace marks a creation that failed for lack of space (ENOSPC,
// EDQUOT); fsync_linux.go wraps it.
var errNoSpace = errors.New("no space left for the probe file")

// statError says which path could not be read, once: an *fs.PathError
// already names it.
func statError(path string, err error) string {
	if _, ok := errors.AsType[*fs.PathError](err); ok {
		return err.Error()
	}
	return fmt.Sprintf("stat %s: %v", path, err)
}
