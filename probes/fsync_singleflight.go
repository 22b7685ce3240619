package probes

// The fsync probe runs its file I/O in one goroutine at a time: a sync on a
// hung disk cannot be interrupted, so the probe returns at its deadline,
// reports the operation outstanding, and starts nothing more until it
// returns.

import (
	"context"
	"fmt"
	"time"
)

// fsyncGrace is how long Measure waits, past its deadline, for the
// operation in progress, so that a round cut short still removes its file
// before Measure returns unless the disk really hangs.
const fsyncGrace = 200 * time.Millisecond

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
