package collectors

import (
	"bytes"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

func writePIDFile(t *testing.T, pid int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "etcd.pid")
	if err := os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// This test process stands in for etcd: every metric of client_golang's
// process collector, under our names, passes promlint and is catalogued.
func TestEtcdProcessCollectorRealProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	c := NewEtcdProcessCollector(ProcessOptions{PIDFile: writePIDFile(t, os.Getpid())})
	mfs := families(t, c)
	must := func(m Metric) float64 {
		t.Helper()
		v, ok := value(mfs, m.Name)
		if !ok {
			t.Fatalf("%s absent", m.Name)
		}
		return v
	}
	if v := must(EtcdProcessCPU); v <= 0 {
		t.Errorf("process CPU = %v, want > 0", v)
	}
	if v := must(EtcdProcessRSS); v <= 0 {
		t.Errorf("resident memory = %v, want > 0", v)
	}
	if open, limit := must(EtcdProcessOpenFDs), must(EtcdProcessMaxFDs); open <= 0 || open > limit {
		t.Errorf("open fds %v, max fds %v", open, limit)
	}
	started := time.Unix(int64(must(EtcdProcessStartTime)), 0)
	if time.Since(started) < 0 || time.Since(started) > 24*time.Hour {
		t.Errorf("start time %v is not within the last day", started)
	}
	problems, err := promlint.New(bytes.NewReader(gather(t, c))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for name, mf := range mfs {
		m, ok := Find(ProcessMetrics, name)
		if !ok {
			t.Errorf("%s exported but not in the catalogue", name)
			continue
		}
		if m.Help != mf.GetHelp() {
			t.Errorf("%s: help %q, catalogue %q", name, mf.GetHelp(), m.Help)
		}
	}
}

// By name, the collector finds a process called like this test binary.
// Other test binaries of the same name may run on a shared machine, so only
// the presence of the metrics is asserted.
func TestEtcdProcessByName(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	name, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	c := NewEtcdProcessCollector(ProcessOptions{ProcessName: strings.TrimSpace(string(name))})
	for _, m := range []Metric{EtcdProcessCPU, EtcdProcessRSS, EtcdProcessMaxFDs, EtcdProcessStartTime} {
		if testutil.CollectAndCount(c, m.Name) == 0 {
			t.Errorf("%s absent with process name %q", m.Name, name)
		}
	}
}

// A process that cannot be found is absent, not zero, and logged once per
// change, not at every scrape.
func TestEtcdProcessUnreadable(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	pidFile := filepath.Join(t.TempDir(), "etcd.pid")
	c := NewEtcdProcessCollector(ProcessOptions{PIDFile: pidFile, Logger: logger})
	var n int
	for range 3 {
		n = testutil.CollectAndCount(c)
	}
	if n != 0 {
		t.Errorf("%d series exported without a process", n)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), pidFile) {
		t.Errorf("want one log line naming the PID file after 3 scrapes:\n%s", logs.String())
	}

	// The process appears: its metrics appear, and the log says so.
	logs.Reset()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	if testutil.CollectAndCount(c, EtcdProcessRSS.Name) != 1 {
		t.Error("process metrics absent once the PID file names a live process")
	}
	if !strings.Contains(logs.String(), "reading the etcd process") || !strings.Contains(logs.String(), "found the etcd process") {
		t.Errorf("logs after the process appeared:\n%s", logs.String())
	}

	// A PID that no process has.
	if err := os.WriteFile(pidFile, []byte("2147483646"), 0o600); err != nil {
		t.Fatal(err)
	}
	if testutil.CollectAndCount(c, EtcdProcessRSS.Name) != 0 {
		t.Error("process metrics exported for a PID that does not exist")
	}

	// No process of that name.
	c = NewEtcdProcessCollector(ProcessOptions{ProcessName: "no-such-etcd", Logger: logger})
	if testutil.CollectAndCount(c, EtcdProcessCPU.Name) != 0 {
		t.Error("process metrics exported with no process of that name")
	}
}

// Two etcd processes on one host (other tests may run more): the one
// listening on the local member's client port is chosen, else the one with
// the local member's data directory open, and the log says which and why.
func TestEtcdProcessChoosesLocalMember(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	var members []*etcdtest.Member
	for range 2 {
		members = append(members, etcdtest.Start(t, etcdtest.Options{Mode: etcdtest.Process}).Member(0))
	}
	name, err := os.ReadFile("/proc/" + strconv.Itoa(members[0].PID()) + "/comm")
	if err != nil {
		t.Fatal(err)
	}
	port := func(m *etcdtest.Member) uint32 {
		u, err := url.Parse(m.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		p, err := strconv.Atoi(u.Port())
		if err != nil {
			t.Fatal(err)
		}
		return uint32(p)
	}
	for _, tc := range []struct {
		name string
		opts ProcessOptions
		want *etcdtest.Member
		why  string
	}{
		{"by client port", ProcessOptions{ClientPort: port(members[1]), DataDir: members[0].DataDir()}, members[1], "listens on the client port"},
		{"by data directory", ProcessOptions{ClientPort: 1, DataDir: members[0].DataDir()}, members[0], "has files open under the data directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			tc.opts.ProcessName = strings.TrimSpace(string(name))
			tc.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			pid, err := newProcessFinder(tc.opts).pid()
			if err != nil {
				t.Fatal(err)
			}
			if pid != tc.want.PID() {
				t.Errorf("chose PID %d, want %d (%s); log:\n%s", pid, tc.want.PID(), tc.name, logs.String())
			}
			if !strings.Contains(logs.String(), "found the etcd process") || !strings.Contains(logs.String(), tc.why) || !strings.Contains(logs.String(), "pid="+strconv.Itoa(pid)) {
				t.Errorf("the log does not say which process and why:\n%s", logs.String())
			}
		})
	}
}
