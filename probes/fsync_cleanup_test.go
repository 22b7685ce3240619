package probes

import (
	"slices"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// Two probes on one directory in one process, as the agents of the demo's
// members would share one: the second starts (and sweeps) while the first
// has its file open, and both measure. The live file is left alone.
func TestFsyncSharedDirectory(t *testing.T) {
	d := newDirs(t, testenv.DiskDir(t))
	gate := newGate(1) // the first probe's untimed sync of its new file
	first := newFsyncProbe(d.opts(16, 2300, 1<<20, nil), &hookFS{gate: gate})
	second := newFsyncProbe(d.opts(16, 2300, 1<<20, nil), &hookFS{})
	defer gate.release()

	type result struct {
		ds  []time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		ds, err := first.Measure(deadline(t))
		done <- result{ds, err}
	}()
	gate.waitEntered(t)
	held := names(t, d.probe)
	if len(held) != 1 {
		t.Fatalf("probe directory holds %v while the first probe syncs, want its one file", held)
	}
	ds, err := second.Measure(deadline(t))
	if err != nil || len(ds) != 16 {
		t.Fatalf("second probe: %d syncs, error %v; want 16 and none", len(ds), err)
	}
	if got := names(t, d.probe); !slices.Equal(got, held) {
		t.Errorf("after the second probe's round the directory holds %v, want the first probe's live file %v", got, held)
	}
	gate.release()
	r := <-done
	if r.err != nil || len(r.ds) != 16 {
		t.Fatalf("first probe: %d syncs, error %v; want 16 and none", len(r.ds), r.err)
	}
	for i, p := range []*FsyncProbe{first, second} {
		if st := p.State(); st.Refused != "" {
			t.Errorf("probe %d refused: %+v", i, st)
		}
	}
	if got := names(t, d.probe); len(got) != 0 {
		t.Errorf("probe directory holds %v after both rounds", got)
	}
}
