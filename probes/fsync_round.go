package probes

// One round of the fsync probe: a fresh preallocated file, then
// write+fdatasync pairs timed as etcd's WAL syncs.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

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

// fsyncCreateAttempts bounds the names a round tries: a name is only taken
// again when a starting agent's sweep caught the file between its creation
// and its lock, or when a token is drawn twice.
const fsyncCreateAttempts = 3

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
