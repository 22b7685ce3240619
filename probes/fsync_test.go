package probes

import (
	"bufio"
	"context"
	"errors"
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

// Helpers for the fsync probe's tests: real directories on a disk or a
// tmpfs, and a file system that holds a chosen sync until released.

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
