package probes

// The fsync probe: its options, its state and its narrow view of the file
// system. Its parts live beside it: the refusal rules (fsync_refuse.go), the
// single-flight worker that survives a hung disk (fsync_singleflight.go),
// the round (fsync_round.go) and the cleanup of its files
// (fsync_cleanup.go).

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ProbeFsync is the fsync probe's name.
const ProbeFsync = "fsync"

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
