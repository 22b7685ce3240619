package probes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// A slow sync shows as outstanding while it lasts and lands in the
// histogram; the round then completes.
func TestFsyncSlowSync(t *testing.T) {
	d := newDirs(t, testenv.DiskDir(t))
	gate := newGate(4) // the untimed sync of the new file, then the third timed one
	fsys := &hookFS{gate: gate}
	hist := newHist()
	p := newFsyncProbe(d.opts(16, 2300, 1<<20, hist), fsys)

	type result struct {
		ds  []time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		ds, err := p.Measure(deadline(t))
		done <- result{ds, err}
	}()
	gate.waitEntered(t)
	if st := p.State(); st.Op != "fdatasync" || st.OpStart.IsZero() {
		t.Errorf("state during a slow sync = %+v, want fdatasync outstanding", st)
	}
	// The sleep is the slow sync itself: its measured duration must cover
	// the time it was held.
	const hold = 50 * time.Millisecond
	time.Sleep(hold)
	gate.release()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.ds) != 16 || r.ds[2] < hold {
		t.Errorf("syncs %v: want 16, the third at least %s", r.ds, hold)
	}
	if n := histCount(t, hist); n != 16 {
		t.Errorf("histogram has %d samples, want 16", n)
	}
	if st := p.State(); st.Op != "" {
		t.Errorf("state after the round = %+v", st)
	}
}

// A sync that does not return: the round gives up at its deadline, the
// probe reports the sync outstanding, starts no other one, logs once, and
// recovers when the sync returns.
func TestFsyncHungSync(t *testing.T) {
	d := newDirs(t, testenv.DiskDir(t))
	gate := newGate(1)
	fsys := &hookFS{gate: gate}
	logs := &logRecorder{}
	opts := d.opts(16, 2300, 1<<20, nil)
	opts.StallThreshold = 10 * time.Millisecond
	opts.Logger = slog.New(logs)
	p := newFsyncProbe(opts, fsys)
	defer gate.release() // never leave the goroutine blocked

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := p.Measure(ctx)
	var se *FsyncStallError
	if !errors.As(err, &se) || !se.AtDeadline || se.Op != "fdatasync" {
		t.Fatalf("error = %v, want an fdatasync outstanding at the deadline", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Error("a stall must not read as a member that did not answer")
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Measure returned after %s: it waited for the hung sync", took)
	}
	if st := p.State(); st.Op != "fdatasync" || st.OpStart.IsZero() || time.Since(st.OpStart) <= st.StallThreshold {
		t.Fatalf("state while hung = %+v, want fdatasync outstanding past the threshold", st)
	}
	// Later rounds start nothing while the sync is outstanding.
	for range 2 {
		_, err = p.Measure(deadline(t))
		if !errors.As(err, &se) || se.AtDeadline || se.Op != "fdatasync" || se.Outstanding <= 0 {
			t.Fatalf("error = %v, want an earlier fdatasync outstanding", err)
		}
	}
	if n, c := fsys.syncs.Load(), len(fsys.created()); n != 1 || c != 1 {
		t.Errorf("%d syncs started and %d files created while one sync hung, want 1 and 1", n, c)
	}
	if n := logs.count(slog.LevelWarn, "no new sync"); n != 1 {
		t.Errorf("%d warnings about the outstanding sync, want 1", n)
	}

	gate.release()
	testenv.Eventually(t, time.Minute, "the hung sync returned and its file is removed", func() error {
		if st, files, busy := p.State(), names(t, d.probe), p.isBusy(); st.Op != "" || len(files) != 0 || busy {
			return fmt.Errorf("operation %q outstanding, probe directory holds %v, busy %v", st.Op, files, busy)
		}
		return nil
	})
	if n := logs.count(slog.LevelWarn, "has now returned"); n != 1 {
		t.Errorf("%d log lines about the returned sync, want 1", n)
	}
	ds, err := p.Measure(deadline(t))
	if err != nil || len(ds) != 16 {
		t.Fatalf("after recovery: %d syncs, error %v; want 16 and none", len(ds), err)
	}
}
