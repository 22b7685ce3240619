package probes

// The fsync probe's files: named so that a probe's own are told from
// another live probe's and from a dead probe's, removed after each round,
// and swept when a probe died mid-round.

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
)

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

// errFileTaken marks a probe file that was swept between its creation and
// its lock; the round creates another one.
var errFileTaken = errors.New("the new probe file was taken by another agent's sweep")

// newFsyncToken returns 64 random bits in hex. math/rand/v2's generator is
// seeded from the OS per process, so tokens differ across processes too.
func newFsyncToken() string { return fmt.Sprintf("%016x", rand.Uint64()) }

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
