package probes

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ProbeFsync is the fsync probe's name.
const ProbeFsync = "fsync"

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

// fsyncGrace is how long Measure waits, past its deadline, for the
// operation in progress, so that a round cut short still removes its file
// before Measure returns unless the disk really hangs.
const fsyncGrace = 200 * time.Millisecond

// fsyncYieldEvery is how long a round runs syncs back to back before it
// yields to the Go scheduler between two of them. A goroutine that the
// scheduler has not switched for 10 ms (runtime.forcePreemptNS) counts as
// running too long: the runtime's monitor then takes its P away during each
// blocking syscall, and the goroutine pays a handoff, and often a move to
// another thread, on its way out of every later fdatasync. That adds about
// 100 µs to the slower syncs: measured on ext4 over virtio, a Go loop's p99
// read 1.3-1.5x that of fio and of the same loop in C. Yielding, untimed,
// at least this often keeps the goroutine fresh, and the loop then reads
// like C and fio (docs/benchmarks.md).
const fsyncYieldEvery = time.Millisecond

// Probe files are named fsyncFilePrefix + pid-token-sequence +
// fsyncFileSuffix. The token is random per probe: agents that share a probe
// directory and a PID (several agents in one process, as in the demo, or
// agents in containers, each PID 1) still never pick the same name. A probe
// holds an exclusive flock on its file while it is open, so a file matching
// the pattern that nobody holds locked is a leftover of a probe that died
// mid-round (the kernel drops a dead process's locks), and is swept at
// start; a locked one belongs to a live probe and is left alone.
const (
	fsyncFilePrefix = "etcdpulse-fsync-"
	fsyncFileSuffix = ".tmp"
)

// fsyncCreateAttempts bounds the names a round tries: a name is only taken
// again when a starting agent's sweep caught the file between its creation
// and its lock, or when a token is drawn twice.
const fsyncCreateAttempts = 3

// errFileTaken marks a probe file that was swept between its creation and
// its lock; the round creates another one.
var errFileTaken = errors.New("the new probe file was taken by another agent's sweep")

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

// fsyncFS is the narrow view of the file system the fsync probe works
// through; tests inject slow and hung syncs behind it.
type fsyncFS interface {
	// Create creates path exclusively, locks it (flock) for as long as it
	// is open and preallocates size bytes. It returns an error wrapping
	// errFileTaken when a sweep removed or locked the file before Create
	// locked it.
	Create(path string, size int64) (syncFile, error)
	Remove(path string) error
	// RemoveUnlocked removes path unless a live probe holds it locked, and
	// reports whether it did.
	RemoveUnlocked(path string) (bool, error)
	Statfs(path string) (fsStat, error)
	// Device returns the device number (st_dev) of path.
	Device(path string) (uint64, error)
}

// syncFile is an open probe file.
type syncFile interface {
	Write(b []byte) (int, error)
	// Sync is fdatasync(2).
	Sync() error
	Close() error
}

// fsStat is what the probe needs from statfs(2).
type fsStat struct {
	Type  int64
	Avail uint64 // bytes available to an unprivileged user
}

// FsyncOptions configure an FsyncProbe.
type FsyncOptions struct {
	// Dir is the probe directory, created when missing. It must be on the
	// WAL's filesystem and never inside the member's directories.
	Dir string
	// WALDir is the member's WAL directory. DataDir stands in for it until
	// it exists (a member not yet started).
	WALDir  string
	DataDir string
	// Syncs is the number of write+fdatasync pairs in a round; a round
	// never writes past FileSize, so it does at most FileSize/WriteSize.
	Syncs     int
	WriteSize int
	// FileSize is the probe file's preallocated size, and so the most it
	// holds on disk.
	FileSize int64
	// StallThreshold: an operation outstanding for longer is a stall.
	StallThreshold time.Duration
	// Observer receives each fdatasync's duration in seconds; nil drops them.
	Observer prometheus.Observer
	Logger   *slog.Logger
}

// FsyncState is the fsync probe's state at one moment, read at scrape time.
type FsyncState struct {
	// Refused is why the probe does not measure (one of
	// FsyncRefusedReasons); empty while it measures or before its first
	// round.
	Refused string
	// Op is the file operation in progress ("fdatasync", "write",
	// "create", "close", "unlink", "check"), empty when none.
	Op string
	// OpStart is when Op started; zero when none is in progress.
	OpStart time.Time
	// StallThreshold is the probe's configured stall threshold.
	StallThreshold time.Duration
	// WrittenBytes counts the bytes the probe has written since it started.
	WrittenBytes uint64
}

// FsyncProbe measures fdatasync latency on the filesystem of the member's
// WAL the way etcd's WAL syncs: in a fresh preallocated file, sequential
// small writes, each followed by an fdatasync that alone is timed. It is
// single-flight: while one of its operations is outstanding (a hung disk
// cannot be interrupted), no new round starts and State reports it.
type FsyncProbe struct {
	last   quantileOf
	opts   FsyncOptions
	fs     fsyncFS
	logger *slog.Logger
	buf    []byte
	// token makes this probe's file names its own; only the round's
	// goroutine uses it, one round at a time.
	token   string
	seq     atomic.Uint64
	written atomic.Uint64
	// yieldEvery is fsyncYieldEvery; BenchmarkFsyncYield turns it off
	// (zero) to show what the yield is for.
	yieldEvery time.Duration

	mu          sync.Mutex
	busy        bool // a round's goroutine is running
	op          string
	opStart     time.Time
	refused     string
	logged      string // the last state logged: a reason, "measuring", or "" before the first round
	stallLogged bool
	swept       bool
	leftover    string // a probe file whose removal failed, retried next round
}

// NewFsyncProbe returns an fsync probe on the real file system.
func NewFsyncProbe(opts FsyncOptions) *FsyncProbe { return newFsyncProbe(opts, osFS{}) }

func newFsyncProbe(opts FsyncOptions, fsys fsyncFS) *FsyncProbe {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Random content, as fio writes: a device or filesystem that compresses
	// or deduplicates would make zeros cheaper than etcd's entries.
	buf := make([]byte, max(opts.WriteSize, 0))
	r := rand.NewChaCha8([32]byte{'e', 't', 'c', 'd', 'p', 'u', 'l', 's', 'e'})
	_, _ = r.Read(buf)
	return &FsyncProbe{opts: opts, fs: fsys, logger: logger.With("probe", ProbeFsync), buf: buf, token: newFsyncToken(), yieldEvery: fsyncYieldEvery}
}

// newFsyncToken returns 64 random bits in hex. math/rand/v2's generator is
// seeded from the OS per process, so tokens differ across processes too.
func newFsyncToken() string { return fmt.Sprintf("%016x", rand.Uint64()) }

// Name implements Probe.
func (p *FsyncProbe) Name() string { return ProbeFsync }

// Run implements Probe: one round on the local member's disk; the target is
// not used.
func (p *FsyncProbe) Run(ctx context.Context, _ *Target) error {
	ds, err := p.Measure(ctx)
	p.last.record(ds)
	return err
}

// LastRoundP99 is the 99th percentile of the last round's fdatasyncs, from
// its own samples: the figure that explains a leader change. ok is false
// before a round has timed any.
func (p *FsyncProbe) LastRoundP99() (seconds float64, ok bool) { return p.last.get() }

// State returns the probe's state for collectors.
func (p *FsyncProbe) State() FsyncState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return FsyncState{
		Refused:        p.refused,
		Op:             p.op,
		OpStart:        p.opStart,
		StallThreshold: p.opts.StallThreshold,
		WrittenBytes:   p.written.Load(),
	}
}

// Measure runs one round and returns the duration of each fdatasync it
// timed. The agent's rounds and the fidelity benchmark (bench/fsyncprobe)
// both measure through it. The round's file I/O runs in a goroutine of the
// probe: when ctx ends while an operation is outstanding, Measure returns
// and the operation keeps the probe busy until it returns.
func (p *FsyncProbe) Measure(ctx context.Context) ([]time.Duration, error) {
	p.mu.Lock()
	if p.busy {
		err := p.stallError(false)
		first := !p.stallLogged
		p.stallLogged = true
		p.mu.Unlock()
		if first {
			p.logger.Warn("fsync probe: an earlier disk operation has not returned; no new sync is started until it does", "op", err.Op, "outstanding", err.Outstanding.Round(time.Millisecond), "dir", p.opts.Dir)
		}
		return nil, err
	}
	p.busy = true
	p.mu.Unlock()

	type result struct {
		ds  []time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		ds, err := p.round(ctx)
		p.mu.Lock()
		p.busy = false
		p.mu.Unlock()
		done <- result{ds, err}
	}()
	select {
	case r := <-done:
		return r.ds, r.err
	case <-ctx.Done():
	}
	grace := time.NewTimer(fsyncGrace)
	defer grace.Stop()
	select {
	case r := <-done:
		return r.ds, r.err
	case <-grace.C:
		p.mu.Lock()
		defer p.mu.Unlock()
		return nil, p.stallError(true)
	}
}

// stallError describes the outstanding operation; p.mu is held.
func (p *FsyncProbe) stallError(deadline bool) *FsyncStallError {
	e := &FsyncStallError{Op: p.op, AtDeadline: deadline}
	if !p.opStart.IsZero() {
		e.Outstanding = time.Since(p.opStart)
	}
	return e
}

// round is one round: checks, then create, preallocate, an untimed
// fdatasync, write+fdatasync Syncs times, close, unlink.
func (p *FsyncProbe) round(ctx context.Context) (ds []time.Duration, err error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	p.sweep()
	path, f, err := p.create()
	if err != nil {
		reason := RefusedError
		if errors.Is(err, errNoSpace) {
			reason = RefusedNoSpace
		}
		p.report(reason, err.Error())
		return nil, &FsyncRefusedError{Reason: reason, Detail: err.Error()}
	}
	defer func() {
		if cerr := p.cleanup(f, path); cerr != nil && err == nil {
			err = cerr
		}
	}()
	// Commit the file's creation and preallocation untimed: etcd creates a
	// WAL segment well ahead of the appends it times, and the first sync
	// of a new file would otherwise carry that metadata (about 4x a plain
	// sync on ext4).
	if _, err := p.io("fdatasync", f.Sync); err != nil {
		return nil, fmt.Errorf("fsync: fdatasync of the new file %s: %w", path, err)
	}
	n := p.syncs()
	ds = make([]time.Duration, 0, n)
	lastYield := time.Now()
	for i := range n {
		if p.yieldEvery > 0 && time.Since(lastYield) >= p.yieldEvery {
			runtime.Gosched()
			lastYield = time.Now()
		}
		if ctx.Err() != nil {
			// Not wrapped: the runner would report a context deadline as
			// a member that did not answer.
			return ds, fmt.Errorf("fsync: round stopped at its deadline after %d of %d syncs", i, n)
		}
		var w int
		if _, err := p.io("write", func() (err error) {
			w, err = f.Write(p.buf)
			return err
		}); err != nil {
			p.written.Add(uint64(w))
			return ds, fmt.Errorf("fsync: write %d bytes to %s: %w", len(p.buf), path, err)
		}
		p.written.Add(uint64(w))
		d, err := p.io("fdatasync", f.Sync)
		if p.opts.Observer != nil {
			p.opts.Observer.Observe(d.Seconds())
		}
		ds = append(ds, d)
		if err != nil {
			return ds, fmt.Errorf("fsync: fdatasync of %s: %w", path, err)
		}
	}
	return ds, nil
}

// create creates the round's file under a name of this probe's own. A
// name already taken draws a new token: a file of another probe is never
// opened, let alone removed.
func (p *FsyncProbe) create() (path string, f syncFile, err error) {
	for range fsyncCreateAttempts {
		path = filepath.Join(p.opts.Dir, fmt.Sprintf("%s%d-%s-%d%s", fsyncFilePrefix, os.Getpid(), p.token, p.seq.Add(1), fsyncFileSuffix))
		_, err = p.io("create", func() (err error) {
			f, err = p.fs.Create(path, p.opts.FileSize)
			return err
		})
		if err == nil {
			return path, f, nil
		}
		if !errors.Is(err, fs.ErrExist) && !errors.Is(err, errFileTaken) {
			break
		}
		p.token = newFsyncToken()
	}
	return "", nil, err
}

// syncs is the number of syncs in a round: never more than the file holds.
func (p *FsyncProbe) syncs() int {
	n := p.opts.Syncs
	if p.opts.WriteSize > 0 && int64(n)*int64(p.opts.WriteSize) > p.opts.FileSize {
		n = int(p.opts.FileSize / int64(p.opts.WriteSize))
	}
	return n
}

// io runs one file operation, marking it outstanding while it runs, and
// returns its duration. An operation slower than the stall threshold is
// logged when it returns.
func (p *FsyncProbe) io(op string, f func() error) (time.Duration, error) {
	p.mu.Lock()
	start := time.Now()
	p.op, p.opStart = op, start
	p.mu.Unlock()
	err := f()
	d := time.Since(start)
	p.mu.Lock()
	p.op, p.opStart = "", time.Time{}
	p.stallLogged = false
	p.mu.Unlock()
	if p.opts.StallThreshold > 0 && d > p.opts.StallThreshold {
		p.logger.Warn("fsync probe: disk operation stalled past the threshold, and has now returned", "op", op, "took", d.Round(time.Millisecond), "threshold", p.opts.StallThreshold, "dir", p.opts.Dir)
	}
	return d, err
}

// cleanup closes and unlinks the round's file. A removal that fails is
// retried at the next round, so files never pile up.
func (p *FsyncProbe) cleanup(f syncFile, path string) error {
	_, cerr := p.io("close", f.Close)
	_, rerr := p.io("unlink", func() error { return p.fs.Remove(path) })
	if errors.Is(rerr, fs.ErrNotExist) {
		rerr = nil // swept, once closed, by an agent starting beside this one
	}
	if rerr != nil {
		p.mu.Lock()
		p.leftover = path
		p.mu.Unlock()
		return fmt.Errorf("fsync: remove %s: %w", path, rerr)
	}
	if cerr != nil {
		return fmt.Errorf("fsync: close %s: %w", path, cerr)
	}
	return nil
}

// sweep removes, at the first round that may measure, the probe files left
// by probes that died mid-round (an agent killed, in this process or
// another), and at later rounds a file of this probe whose removal failed.
// The files of live probes sharing the directory are locked and stay.
func (p *FsyncProbe) sweep() {
	p.mu.Lock()
	swept, leftover := p.swept, p.leftover
	p.swept, p.leftover = true, ""
	p.mu.Unlock()
	if leftover != "" {
		// Closed already, so unlocked: this probe's own.
		if _, err := p.io("unlink", func() error { return p.fs.Remove(leftover) }); err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.logger.Warn("fsync probe: cannot remove a stale probe file", "path", leftover, "err", err)
		}
	}
	if swept {
		return
	}
	stale, _ := filepath.Glob(filepath.Join(p.opts.Dir, fsyncFilePrefix+"*"+fsyncFileSuffix))
	for _, path := range stale {
		var removed bool
		_, err := p.io("unlink", func() (err error) {
			removed, err = p.fs.RemoveUnlocked(path)
			return err
		})
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Its probe removed it since the glob.
		case err != nil:
			p.logger.Warn("fsync probe: cannot remove a stale probe file", "path", path, "err", err)
		case removed:
			p.logger.Info("fsync probe: removed a stale probe file", "path", path)
		}
	}
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
		return RefusedError, fmt.Sprintf("stat %s: %v", ref, err), st
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
		return RefusedError, fmt.Sprintf("stat %s: %v", p.opts.Dir, err), st
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

// FsyncStallError is a round that did not run, or did not finish, because
// a disk operation of the probe is outstanding.
type FsyncStallError struct {
	Op          string
	Outstanding time.Duration
	// AtDeadline: the round's own operation was outstanding at its
	// deadline; otherwise an earlier round's still is.
	AtDeadline bool
}

func (e *FsyncStallError) Error() string {
	op := e.Op
	if op == "" {
		op = "round"
	}
	if e.AtDeadline {
		return fmt.Sprintf("fsync: %s outstanding for %s at the round's deadline", op, e.Outstanding.Round(time.Millisecond))
	}
	return fmt.Sprintf("fsync: an earlier %s has been outstanding for %s; no new sync started", op, e.Outstanding.Round(time.Millisecond))
}

// errNoSpace marks a creation that failed for lack of space (ENOSPC,
// EDQUOT); fsync_linux.go wraps it.
var errNoSpace = errors.New("no space left for the probe file")
