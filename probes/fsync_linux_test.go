package probes

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// A starting agent's sweep can catch a new file between its creation and
// its lock: lockNew notices (the file gone, or locked by the sweep) and
// the round measures on a file under another name.
func TestFsyncNewFileTaken(t *testing.T) {
	d := newDirs(t, testenv.DiskDir(t))
	open := func(name string) (*os.File, string) {
		path := filepath.Join(d.probe, name)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f, path
	}
	// Swept before the lock: the name is gone.
	f, path := open("swept")
	if removed, err := (osFS{}).RemoveUnlocked(path); !removed || err != nil {
		t.Fatalf("RemoveUnlocked of an unlocked file: removed %v, error %v", removed, err)
	}
	if err := lockNew(f, path); !errors.Is(err, errFileTaken) {
		t.Errorf("lockNew of a swept file: %v, want errFileTaken", err)
	}
	// Locked by the sweep, which is about to remove it.
	f, path = open("locked")
	sweeper, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sweeper.Close()
	if err := unix.Flock(int(sweeper.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if err := lockNew(f, path); !errors.Is(err, errFileTaken) {
		t.Errorf("lockNew of a file the sweep holds: %v, want errFileTaken", err)
	}
	// Not swept: locked, and then safe from any sweep.
	f, path = open("kept")
	if err := lockNew(f, path); err != nil {
		t.Fatal(err)
	}
	if removed, err := (osFS{}).RemoveUnlocked(path); removed || err != nil {
		t.Errorf("RemoveUnlocked of a live file: removed %v, error %v; want it kept", removed, err)
	}

	// The round takes another name.
	e := newDirs(t, testenv.DiskDir(t))
	swept := false
	fsys := &hookFS{failCreate: func(path string) error {
		if swept {
			return nil
		}
		swept = true
		return sweepBeforeLock(path)
	}}
	p := newFsyncProbe(e.opts(4, 2300, 1<<20, nil), fsys)
	if ds, err := p.Measure(deadline(t)); err != nil || len(ds) != 4 {
		t.Fatalf("%d syncs, error %v; want 4 and none", len(ds), err)
	}
	if got := names(t, e.probe); len(got) != 0 {
		t.Errorf("probe directory holds %v", got)
	}
}

// sweepBeforeLock does what osFS.Create does, with a sweep between the
// file's creation and its lock, and returns what lockNew said.
func sweepBeforeLock(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := (osFS{}).RemoveUnlocked(path); err != nil {
		return err
	}
	if err := lockNew(f, path); err != nil {
		return err
	}
	return errors.New("lockNew missed the sweep")
}
