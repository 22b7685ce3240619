package probes

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

func TestClassifyFS(t *testing.T) {
	for _, c := range []struct {
		name   string
		fsType int64
		want   string
	}{
		{"tmpfs", 0x01021994, RefusedTmpfs},
		{"ramfs", 0x858458f6, RefusedTmpfs},
		{"overlay", 0x794c7630, RefusedOverlay},
		{"ext4", 0xef53, ""},
		{"xfs", 0x58465342, ""},
		{"btrfs", 0x9123683e, ""},
		{"unknown", 0x12345678, ""},
	} {
		if got := classifyFS(c.fsType); got != c.want {
			t.Errorf("%s (0x%x): %q, want %q", c.name, c.fsType, got, c.want)
		}
	}
}

func TestFsyncNoSpace(t *testing.T) {
	d := newDirs(t, testenv.DiskDir(t))
	fsys := &hookFS{statfs: func(s fsStat) fsStat { s.Avail = 100 << 20; return s }}
	p := newFsyncProbe(d.opts(16, 2300, 1<<20, nil), fsys)
	_, err := p.Measure(deadline(t))
	var re *FsyncRefusedError
	if !errors.As(err, &re) || re.Reason != RefusedNoSpace {
		t.Fatalf("error = %v, want a no_space refusal", err)
	}
	if p.State().Refused != RefusedNoSpace || len(fsys.created()) != 0 {
		t.Errorf("state %+v, files created %v", p.State(), fsys.created())
	}
}

func TestFsyncRefusesTmpfs(t *testing.T) {
	tmp := tmpfsDir(t)
	d := newDirs(t, tmp)
	logs := &logRecorder{}
	opts := d.opts(16, 2300, 1<<20, nil)
	opts.Logger = slog.New(logs)
	fsys := &hookFS{}
	p := newFsyncProbe(opts, fsys)
	for range 2 {
		_, err := p.Measure(deadline(t))
		var re *FsyncRefusedError
		if !errors.As(err, &re) || re.Reason != RefusedTmpfs {
			t.Fatalf("error = %v, want a tmpfs refusal", err)
		}
	}
	if p.State().Refused != RefusedTmpfs || len(fsys.created()) != 0 || len(names(t, d.probe)) != 0 {
		t.Errorf("state %+v, files %v", p.State(), names(t, d.probe))
	}
	if n := logs.count(slog.LevelWarn, "refuses to measure"); n != 1 {
		t.Errorf("%d refusal warnings for two rounds, want 1", n)
	}
}

func TestFsyncRefusesOtherDevice(t *testing.T) {
	wal := newDirs(t, tmpfsDir(t))
	d := newDirs(t, testenv.DiskDir(t))
	opts := d.opts(16, 2300, 1<<20, nil)
	opts.WALDir, opts.DataDir = wal.wal, wal.data
	p := newFsyncProbe(opts, &hookFS{})
	_, err := p.Measure(deadline(t))
	var re *FsyncRefusedError
	if !errors.As(err, &re) || re.Reason != RefusedOtherDevice || !strings.Contains(re.Detail, "--disk.probe-dir") {
		t.Fatalf("error = %v, want an other_device refusal naming --disk.probe-dir", err)
	}
}

// No data directory (no etcd here): refused, nothing created; once the
// member's directories appear, the probe measures.
func TestFsyncNoWALDirThenRecovers(t *testing.T) {
	base := testenv.DiskDir(t)
	data := filepath.Join(base, "etcd")
	probeDir := filepath.Join(base, ".etcdpulse-probe")
	logs := &logRecorder{}
	p := newFsyncProbe(FsyncOptions{Dir: probeDir, WALDir: filepath.Join(data, "member", "wal"), DataDir: data,
		Syncs: 4, WriteSize: 2300, FileSize: 1 << 20, StallThreshold: time.Second, Logger: slog.New(logs)}, &hookFS{})
	_, err := p.Measure(deadline(t))
	var re *FsyncRefusedError
	if !errors.As(err, &re) || re.Reason != RefusedNoWALDir {
		t.Fatalf("error = %v, want a no_wal_dir refusal", err)
	}
	if _, err := os.Stat(probeDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("probe directory created without a data directory: %v", err)
	}
	// etcd creates the data directory first, the WAL directory later: the
	// data directory stands in for the WAL's.
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if ds, err := p.Measure(deadline(t)); err != nil || len(ds) != 4 {
		t.Fatalf("%d syncs, error %v; want 4 and none", len(ds), err)
	}
	if p.State().Refused != "" {
		t.Errorf("still refused: %+v", p.State())
	}
	if w, i := logs.count(slog.LevelWarn, "refuses"), logs.count(slog.LevelInfo, "measuring"); w != 1 || i != 1 {
		t.Errorf("%d refusal and %d measuring log lines, want 1 each", w, i)
	}
}

// A WAL directory that cannot be read is refused with the system's error,
// naming the path once (an *fs.PathError already names it).
func TestFsyncRefusalNamesPathOnce(t *testing.T) {
	base := testenv.DiskDir(t)
	file := filepath.Join(base, "not-a-directory")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wal := filepath.Join(file, "member", "wal")
	p := newFsyncProbe(FsyncOptions{Dir: filepath.Join(base, ".etcdpulse-probe"), WALDir: wal, DataDir: file,
		Syncs: 4, WriteSize: 2300, FileSize: 1 << 20, StallThreshold: time.Second}, &hookFS{})
	_, err := p.Measure(deadline(t))
	var re *FsyncRefusedError
	if !errors.As(err, &re) || re.Reason != RefusedError {
		t.Fatalf("error = %v, want an error refusal", err)
	}
	if n := strings.Count(re.Detail, wal); n != 1 || !strings.Contains(re.Detail, "not a directory") {
		t.Fatalf("detail %q: want %s named once with the system's error", re.Detail, wal)
	}
}
