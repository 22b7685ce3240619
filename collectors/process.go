package collectors

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	gnet "github.com/shirou/gopsutil/v4/net"
	"github.com/shirou/gopsutil/v4/process"
)

// The etcd process: client_golang's process collector (its help texts) with
// the etcdpulse_etcd namespace, through NewEtcdProcessCollector; absent
// while the process is not found or not readable.
var (
	EtcdProcessCPU = Metric{"etcdpulse_etcd_process_cpu_seconds_total", Counter,
		"Total user and system CPU time spent in seconds.", nil}
	EtcdProcessOpenFDs = Metric{"etcdpulse_etcd_process_open_fds", Gauge,
		"Number of open file descriptors.", nil}
	EtcdProcessMaxFDs = Metric{"etcdpulse_etcd_process_max_fds", Gauge,
		"Maximum number of open file descriptors.", nil}
	EtcdProcessVirtualMemory = Metric{"etcdpulse_etcd_process_virtual_memory_bytes", Gauge,
		"Virtual memory size in bytes.", nil}
	EtcdProcessVirtualMemoryMax = Metric{"etcdpulse_etcd_process_virtual_memory_max_bytes", Gauge,
		"Maximum amount of virtual memory available in bytes.", nil}
	EtcdProcessRSS = Metric{"etcdpulse_etcd_process_resident_memory_bytes", Gauge,
		"Resident memory size in bytes.", nil}
	EtcdProcessStartTime = Metric{"etcdpulse_etcd_process_start_time_seconds", Gauge,
		"Start time of the process since unix epoch in seconds.", nil}
	EtcdProcessNetworkReceive = Metric{"etcdpulse_etcd_process_network_receive_bytes_total", Counter,
		"Number of bytes received by the process over the network.", nil}
	EtcdProcessNetworkTransmit = Metric{"etcdpulse_etcd_process_network_transmit_bytes_total", Counter,
		"Number of bytes sent by the process over the network.", nil}
)

// ProcessMetrics lists these rows in documentation order.
var ProcessMetrics = []Metric{EtcdProcessCPU, EtcdProcessOpenFDs, EtcdProcessMaxFDs, EtcdProcessVirtualMemory, EtcdProcessVirtualMemoryMax, EtcdProcessRSS, EtcdProcessStartTime, EtcdProcessNetworkReceive, EtcdProcessNetworkTransmit}

// ProcessOptions says how to find the etcd process.
type ProcessOptions struct {
	// PIDFile, when set, holds the etcd process's PID; it is read at each
	// scrape, so a restarted etcd is followed.
	PIDFile string
	// ProcessName finds the etcd process by name when PIDFile is empty.
	ProcessName string
	// ClientPort is the local member's client port. Of several processes
	// named ProcessName, the one listening on it is the local member.
	ClientPort uint32
	// DataDir is the member's data directory: failing a listener, the
	// process with a file open under it is the local member.
	DataDir string
	// FindEvery bounds how often all processes are scanned for
	// ProcessName while it is not found; 0 means DefaultFindEvery.
	FindEvery time.Duration
	Logger    *slog.Logger
}

// etcdProcessNamespace makes client_golang's process metrics
// etcdpulse_etcd_process_*.
const etcdProcessNamespace = "etcdpulse_etcd"

// NewEtcdProcessCollector returns client_golang's process collector for the
// etcd process: CPU, memory, file descriptors, start time and network
// bytes, read from /proc at scrape time. Its metrics are absent while the
// process is not found or not readable; reading its file descriptors needs
// etcd's user or CAP_SYS_PTRACE.
func NewEtcdProcessCollector(opts ProcessOptions) *EtcdProcessCollector {
	f := newProcessFinder(opts)
	return &EtcdProcessCollector{
		Collector: clientcollectors.NewProcessCollector(clientcollectors.ProcessCollectorOpts{
			PidFn:     f.pid,
			Namespace: etcdProcessNamespace,
		}),
		finder: f,
	}
}

// EtcdProcessCollector is client_golang's process collector for the etcd
// process, and says when the process is not found.
type EtcdProcessCollector struct {
	prometheus.Collector
	finder *processFinder
}

// Err implements Failing: why the process was not found at the last
// scrape.
func (c *EtcdProcessCollector) Err() error {
	c.finder.mu.Lock()
	defer c.finder.mu.Unlock()
	return c.finder.log.err()
}

// processFinder finds the etcd process: from the PID file at every call;
// by name, the cached process while it lives, else a scan of all processes
// at most every FindEvery.
type processFinder struct {
	opts ProcessOptions
	log  failureLog

	mu       sync.Mutex
	proc     *process.Process
	lastScan time.Time
	scanErr  error
}

func newProcessFinder(opts ProcessOptions) *processFinder {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FindEvery <= 0 {
		opts.FindEvery = DefaultFindEvery
	}
	return &processFinder{opts: opts, log: failureLog{logger: opts.Logger, failing: map[string]bool{}}}
}

// pid is the process collector's PidFn.
func (f *processFinder) pid() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ctx := context.Background()
	p, err := f.find(ctx)
	if !f.log.report("the etcd process ("+f.where()+")", err) {
		return 0, err
	}
	return int(p.Pid), nil
}

func (f *processFinder) where() string {
	if f.opts.PIDFile != "" {
		return "PID file " + f.opts.PIDFile
	}
	return "process name " + strconv.Quote(f.opts.ProcessName)
}

func (f *processFinder) find(ctx context.Context) (*process.Process, error) {
	if f.opts.PIDFile != "" {
		pid, err := readPIDFile(f.opts.PIDFile)
		if err != nil {
			return nil, err
		}
		if f.proc == nil || f.proc.Pid != pid {
			f.proc = nil
			p, err := process.NewProcessWithContext(ctx, pid)
			if err != nil {
				return nil, fmt.Errorf("PID %d: %w", pid, err)
			}
			f.proc = p
			f.found(ctx, p, "named by "+f.opts.PIDFile)
		}
		if running, _ := f.proc.IsRunningWithContext(ctx); !running {
			f.proc = nil
			return nil, fmt.Errorf("PID %d from %s is not running", pid, f.opts.PIDFile)
		}
		return f.proc, nil
	}
	if f.proc != nil {
		// Still the same process (IsRunning compares start times, so a
		// reused PID does not count) and still etcd?
		running, _ := f.proc.IsRunningWithContext(ctx)
		if name, err := (&process.Process{Pid: f.proc.Pid}).NameWithContext(ctx); running && err == nil && name == f.opts.ProcessName {
			return f.proc, nil
		}
		f.proc = nil
		f.lastScan = time.Time{} // look for the new one now
	}
	if !f.lastScan.IsZero() && time.Since(f.lastScan) < f.opts.FindEvery {
		return nil, f.scanErr
	}
	f.lastScan = time.Now()
	f.proc, f.scanErr = f.scan(ctx)
	return f.proc, f.scanErr
}

// scan finds the processes named ProcessName and picks the local member's:
// the one listening on its client port, else the one with files open under
// its data directory, else the oldest (the one a supervisor started
// first), with a warning.
func (f *processFinder) scan(ctx context.Context) (*process.Process, error) {
	pids, err := process.PidsWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var found []*process.Process
	for _, pid := range pids {
		if name, err := (&process.Process{Pid: pid}).NameWithContext(ctx); err != nil || name != f.opts.ProcessName {
			continue
		}
		if p, err := process.NewProcessWithContext(ctx, pid); err == nil {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no process named %q among %d processes (is the PID namespace shared with etcd's?)", f.opts.ProcessName, len(pids))
	case 1:
		f.found(ctx, found[0], "the only process of that name")
		return found[0], nil
	}
	if f.opts.ClientPort != 0 {
		if p := slices.IndexFunc(found, func(p *process.Process) bool { return listensOn(ctx, p, f.opts.ClientPort) }); p >= 0 {
			f.found(ctx, found[p], fmt.Sprintf("listens on the client port %d", f.opts.ClientPort))
			return found[p], nil
		}
	}
	if f.opts.DataDir != "" {
		if p := slices.IndexFunc(found, func(p *process.Process) bool { return hasFileUnder(ctx, p, f.opts.DataDir) }); p >= 0 {
			f.found(ctx, found[p], "has files open under the data directory "+f.opts.DataDir)
			return found[p], nil
		}
	}
	start := func(p *process.Process) int64 { t, _ := p.CreateTimeWithContext(ctx); return t }
	slices.SortFunc(found, func(a, b *process.Process) int {
		if d := start(a) - start(b); d != 0 {
			return int(max(min(d, 1), -1))
		}
		return int(a.Pid - b.Pid)
	})
	f.opts.Logger.Warn("several processes have the etcd process name, and none listens on the local member's client port or holds its data directory open (reading that needs etcd's user or CAP_SYS_PTRACE); using the oldest (set --etcd.pid-file to choose)",
		"name", f.opts.ProcessName, "count", len(found), "pid", found[0].Pid, "client_port", f.opts.ClientPort)
	return found[0], nil
}

// found logs the process chosen and why, and warns once if its file
// descriptors cannot be read: the process collector leaves them out
// silently.
func (f *processFinder) found(ctx context.Context, p *process.Process, why string) {
	f.opts.Logger.Info("found the etcd process", "pid", p.Pid, "how", why)
	if _, err := p.NumFDsWithContext(ctx); err != nil {
		f.opts.Logger.Warn("cannot count the etcd process's open file descriptors (needs etcd's user or CAP_SYS_PTRACE); etcdpulse_etcd_process_open_fds is absent", "pid", p.Pid, "err", err)
	}
}

func listensOn(ctx context.Context, p *process.Process, port uint32) bool {
	conns, err := p.ConnectionsWithContext(ctx)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(conns, func(c gnet.ConnectionStat) bool { return c.Status == "LISTEN" && c.Laddr.Port == port })
}

func hasFileUnder(ctx context.Context, p *process.Process, dir string) bool {
	files, err := p.OpenFilesWithContext(ctx)
	if err != nil {
		return false
	}
	prefix := filepath.Clean(dir) + string(filepath.Separator)
	return slices.ContainsFunc(files, func(of process.OpenFilesStat) bool { return strings.HasPrefix(of.Path, prefix) })
}

func readPIDFile(path string) (int32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 32)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s does not hold a PID: %.40q", path, b)
	}
	return int32(pid), nil
}

// failureLog logs what starts or stops failing, once per change.
type failureLog struct {
	logger  *slog.Logger
	failing map[string]bool
}

// err lists what is failing now, nil when nothing is.
func (l *failureLog) err() error {
	if len(l.failing) == 0 {
		return nil
	}
	return fmt.Errorf("cannot read %s", strings.Join(slices.Sorted(maps.Keys(l.failing)), ", "))
}

// report logs err for what when it starts or stops, and says whether
// there was none.
func (l *failureLog) report(what string, err error, attrs ...any) bool {
	was := l.failing[what]
	switch {
	case err != nil && !was:
		l.failing[what] = true
		l.logger.Warn("cannot read "+what+"; its metrics are absent until it can be read", append(attrs, "err", err)...)
	case err == nil && was:
		delete(l.failing, what)
		l.logger.Info("reading "+what+" again", attrs...)
	}
	return err == nil
}

// PID returns the etcd process's PID, found as for the process metrics: a
// new PID is a restarted etcd.
func (c *EtcdProcessCollector) PID() (int, error) { return c.finder.pid() }
