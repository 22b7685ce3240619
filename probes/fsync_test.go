package probes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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
	waitUntil(t, "the hung sync returned and its file is removed", func() bool {
		return p.State().Op == "" && len(names(t, d.probe)) == 0 && !p.isBusy()
	})
	if n := logs.count(slog.LevelWarn, "has now returned"); n != 1 {
		t.Errorf("%d log lines about the returned sync, want 1", n)
	}
	ds, err := p.Measure(deadline(t))
	if err != nil || len(ds) != 16 {
		t.Fatalf("after recovery: %d syncs, error %v; want 16 and none", len(ds), err)
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

// --- helpers ---

type dirs struct{ data, wal, probe string }

// newDirs lays out a member's directories under base, with the probe
// directory beside the data directory.
func newDirs(t testing.TB, base string) dirs {
	t.Helper()
	d := dirs{data: filepath.Join(base, "etcd")}
	d.wal = filepath.Join(d.data, "member", "wal")
	d.probe = filepath.Join(base, ".etcdpulse-probe")
	for _, dir := range []string{d.wal, d.probe} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func (d dirs) opts(syncs, writeSize int, fileSize int64, obs prometheus.Observer) FsyncOptions {
	return FsyncOptions{Dir: d.probe, WALDir: d.wal, DataDir: d.data, Syncs: syncs, WriteSize: writeSize,
		FileSize: fileSize, StallThreshold: time.Second, Observer: obs}
}

// tmpfsDir is a temporary directory on a tmpfs: /dev/shm, else any
// writable tmpfs mount.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	candidates := []string{"/dev/shm"}
	if f, err := os.Open("/proc/mounts"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if fields := strings.Fields(s.Text()); len(fields) > 2 && fields[2] == "tmpfs" {
				candidates = append(candidates, fields[1])
			}
		}
		f.Close()
	}
	for _, c := range candidates {
		if st, err := (osFS{}).Statfs(c); err != nil || classifyFS(st.Type) != RefusedTmpfs {
			continue
		}
		dir, err := os.MkdirTemp(c, "etcdpulse-fsync-test-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	testenv.Unavailable(t, "no writable tmpfs on this machine (tried /dev/shm and the tmpfs mounts in /proc/mounts)")
	return ""
}

func deadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within a minute", what)
}

func (p *FsyncProbe) isBusy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func newHist() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Help: "h"})
}

func histCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// hookFS is the real file system with hooks: a statfs override, a gate
// that holds one sync, and counts.
type hookFS struct {
	osFS
	statfs func(fsStat) fsStat
	gate   *gate
	// failCreate, when set, runs before each creation; an error fails it.
	failCreate func(path string) error
	syncs      atomic.Int32
	maxWritten atomic.Int64
	mu         sync.Mutex
	sizes      []int64
}

func (h *hookFS) Create(path string, size int64) (syncFile, error) {
	if h.failCreate != nil {
		if err := h.failCreate(path); err != nil {
			return nil, err
		}
	}
	f, err := h.osFS.Create(path, size)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.sizes = append(h.sizes, size)
	h.mu.Unlock()
	return &hookFile{syncFile: f, fs: h}, nil
}

func (h *hookFS) created() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sizes)
}

func (h *hookFS) Statfs(path string) (fsStat, error) {
	st, err := h.osFS.Statfs(path)
	if err == nil && h.statfs != nil {
		st = h.statfs(st)
	}
	return st, err
}

type hookFile struct {
	syncFile
	fs      *hookFS
	written int64
}

func (f *hookFile) Write(b []byte) (int, error) {
	n, err := f.syncFile.Write(b)
	f.written += int64(n)
	for {
		m := f.fs.maxWritten.Load()
		if f.written <= m || f.fs.maxWritten.CompareAndSwap(m, f.written) {
			break
		}
	}
	return n, err
}

func (f *hookFile) Sync() error {
	n := f.fs.syncs.Add(1)
	if g := f.fs.gate; g != nil && int(n) == g.at {
		close(g.entered)
		<-g.released
	}
	return f.syncFile.Sync()
}

// gate holds the at-th sync until released.
type gate struct {
	at       int
	entered  chan struct{}
	released chan struct{}
	once     sync.Once
}

func newGate(at int) *gate {
	return &gate{at: at, entered: make(chan struct{}), released: make(chan struct{})}
}

func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(time.Minute):
		t.Fatal("the gated sync never started")
	}
}

func (g *gate) release() { g.once.Do(func() { close(g.released) }) }

// logRecorder keeps log records.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) records() []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

func (l *logRecorder) count(level slog.Level, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Level == level && strings.Contains(r.Message, substr) {
			n++
		}
	}
	return n
}
