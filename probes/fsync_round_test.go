package probes

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// A round on a real disk: one fresh file, every sync timed, the file gone
// afterwards, stale files from earlier agents swept (an older version's
// name, and one of a dead agent with this process's PID, as a restarted
// container's agent has), other files left.
func TestFsyncMeasuresOnRealFiles(t *testing.T) {
	d := newDirs(t, testenv.DiskDir(t))
	stale := filepath.Join(d.probe, fsyncFilePrefix+"99-7"+fsyncFileSuffix)
	samePID := filepath.Join(d.probe, fmt.Sprintf("%s%d-%s-3%s", fsyncFilePrefix, os.Getpid(), newFsyncToken(), fsyncFileSuffix))
	other := filepath.Join(d.probe, "keep.txt")
	for _, f := range []string{stale, samePID, other} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fsys := &hookFS{}
	hist := newHist()
	p := newFsyncProbe(d.opts(16, 2300, 1<<20, hist), fsys)

	ds, err := p.Measure(deadline(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 16 {
		t.Fatalf("%d syncs timed, want 16", len(ds))
	}
	for i, d := range ds {
		if d <= 0 || d > time.Minute {
			t.Errorf("sync %d took %s, not plausible", i, d)
		}
	}
	// A real fdatasync reaches the disk: tmpfs answers in well under a
	// microsecond, a disk never does.
	if m := median(ds); m < time.Microsecond {
		t.Errorf("median fdatasync %s: not on a disk", m)
	}
	if n := histCount(t, hist); n != 16 {
		t.Errorf("histogram has %d samples, want 16", n)
	}
	st := p.State()
	if st.WrittenBytes != 16*2300 || st.Refused != "" || st.Op != "" || !st.OpStart.IsZero() {
		t.Errorf("state after a round = %+v", st)
	}
	if got := fsys.created(); len(got) != 1 || got[0] != 1<<20 {
		t.Errorf("preallocated %v, want one file of 1 MiB", got)
	}
	if got := names(t, d.probe); !slices.Equal(got, []string{"keep.txt"}) {
		t.Errorf("probe directory holds %v after the round, want only keep.txt", got)
	}
}

// A round never writes past the file size, whatever syncs says.
func TestFsyncFileSizeBound(t *testing.T) {
	d := newDirs(t, testenv.DiskDir(t))
	fsys := &hookFS{}
	p := newFsyncProbe(d.opts(100, 4096, 64<<10, nil), fsys)
	ds, err := p.Measure(deadline(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 16 {
		t.Errorf("%d syncs, want 16 (64 KiB / 4 KiB)", len(ds))
	}
	if got := fsys.maxWritten.Load(); got > 64<<10 {
		t.Errorf("wrote %d bytes into a 64 KiB file", got)
	}
	if got := names(t, d.probe); len(got) != 0 {
		t.Errorf("probe directory holds %v", got)
	}
}
