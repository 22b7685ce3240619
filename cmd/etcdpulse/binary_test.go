package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// The etcdpulse binary, built once per test run for the tests that need a
// process of its own: socket activation, --help, version stamping.
var (
	binOnce sync.Once
	binDir  string
	bin     builtBin
	binErr  error
)

// builtBin is etcdpulse built with a plain `go build` in a git checkout.
type builtBin struct {
	path string
	// commit is the checkout's HEAD, and commitTime its committer time.
	commit     string
	commitTime time.Time
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// builtBinary returns etcdpulse built with a plain `go build` from this
// source tree, as it is on disk. Go records VCS information only in a
// checkout whose .git is a directory (not in a git worktree, whose .git is
// a file), so the build runs in a fresh repository holding a snapshot of
// the tree: what git would commit here, committed there.
func builtBinary(t *testing.T) builtBin {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "etcdpulse-bin-"); binErr != nil {
			return
		}
		src := filepath.Join(binDir, "src")
		if bin.commit, bin.commitTime, binErr = snapshot(repoRoot, src); binErr != nil {
			return
		}
		bin.path = filepath.Join(binDir, "etcdpulse")
		// -buildvcs=auto is go build's default; given here because a
		// machine's GOFLAGS may turn VCS stamping off (this one's does).
		binErr = goBuild(filepath.Join(src, "cmd", "etcdpulse"), bin.path, "-buildvcs=auto")
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return bin
}

// repoRoot is the module's root, seen from this package's directory.
const repoRoot = "../.."

// snapshot copies the files git would commit from the tree at root (the
// tracked ones still on disk and the untracked ones not ignored) into a new
// repository at dst and commits them.
func snapshot(root, dst string) (commit string, at time.Time, err error) {
	list, err := git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	if err != nil {
		return "", at, err
	}
	for _, name := range strings.Split(strings.TrimRight(list, "\x00"), "\x00") {
		fi, err := os.Lstat(filepath.Join(root, name))
		if os.IsNotExist(err) {
			continue // deleted, not yet committed
		}
		if err != nil {
			return "", at, err
		}
		if !fi.Mode().IsRegular() {
			return "", at, fmt.Errorf("snapshot: %s is not a regular file", name)
		}
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			return "", at, err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, name)), 0o755); err != nil {
			return "", at, err
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, fi.Mode().Perm()); err != nil {
			return "", at, err
		}
	}
	for _, args := range [][]string{
		{"init", "-q"},
		{"add", "-A"},
		{"-c", "user.name=etcdpulse test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", "snapshot"},
	} {
		if _, err := git(dst, args...); err != nil {
			return "", at, err
		}
	}
	out, err := git(dst, "log", "-1", "--format=%H %ct")
	if err != nil {
		return "", at, err
	}
	var unix int64
	if _, err := fmt.Sscanf(out, "%s %d", &commit, &unix); err != nil {
		return "", at, fmt.Errorf("git log: %q: %v", out, err)
	}
	return commit, time.Unix(unix, 0), nil
}

// git runs git in dir and returns its standard output.
func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s in %s: %v: %s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return string(out), nil
}

// goBuild builds the package in dir into out.
func goBuild(dir, out string, args ...string) error {
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, args...), ".")...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build in %s: %v\n%s", dir, err, b)
	}
	return nil
}

// process is a running etcdpulse, stopped with SIGTERM when the test ends.
type process struct {
	cmd    *exec.Cmd
	stderr *testenv.Buffer
	done   chan struct{}
	err    error
}

func startProcess(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{cmd: cmd, stderr: new(testenv.Buffer), done: make(chan struct{})}
	cmd.Stdout = io.Discard
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop sends SIGTERM and waits; it fails the test unless the process exits 0.
func (p *process) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			t.Errorf("etcdpulse did not stop within 60s of SIGTERM; log:\n%s", p.stderr.String())
			return
		}
	}
	if p.err != nil && !t.Failed() {
		t.Errorf("etcdpulse: %v; log:\n%s", p.err, p.stderr.String())
	}
}

// listenAddress waits for the agent's start line and returns the address
// it listens on.
func (p *process) listenAddress(t *testing.T) string {
	t.Helper()
	re := regexp.MustCompile(`msg="starting etcdpulse".* listen=(\S+)`)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := re.FindStringSubmatch(p.stderr.String()); m != nil {
			return m[1]
		}
		select {
		case <-p.done:
			t.Fatalf("etcdpulse exited (%v); log:\n%s", p.err, p.stderr.String())
		default:
		}
	}
	t.Fatalf("no start line within 60s; log:\n%s", p.stderr.String())
	return ""
}

// getBody GETs url until it answers 200, for up to a minute, and returns
// the body.
func getBody(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			return string(b)
		}
		last = fmt.Sprintf("%s: %s", resp.Status, b)
	}
	t.Fatalf("GET %s: no 200 within 60s; last: %s", url, last)
	return ""
}

// quietArgs point the agent at an endpoint where nothing listens and keep
// it off the host's etcd: for tests of the process, not of the probes.
func quietArgs(t *testing.T) []string {
	endpoint := "http://" + testenv.RefusedAddr(t)
	return []string{"--etcd.endpoints", endpoint, "--etcd.data-dir", t.TempDir(), "--host.process-name", ""}
}

// --web.systemd-socket serves on the socket systemd passes (fd 3, with
// LISTEN_FDS and LISTEN_PID naming the process) and binds no address.
func TestSystemdSocketActivation(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("socket activation, and the flag, are Linux only")
	}
	bin := builtBinary(t).path
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	socket, err := l.(*net.TCPListener).File() // a duplicate: the socket outlives l
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	// A taken port as --web.listen-address: binding it would fail.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	// LISTEN_PID must be the agent's own PID: sh sets it to its own, then
	// execs the agent in its place, as systemd does.
	args := append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, bin, "run", "--web.systemd-socket", "--web.listen-address", taken.Addr().String()}, quietArgs(t)...)
	cmd := exec.Command("sh", args...)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1")
	cmd.ExtraFiles = []*os.File{socket} // fd 3
	p := startProcess(t, cmd)
	socket.Close() // only the agent holds the socket now

	if got := p.listenAddress(t); got != addr {
		t.Errorf("the agent says it listens on %s, want the passed socket %s", got, addr)
	}
	body := getBody(t, "http://"+addr+"/metrics")
	if !strings.Contains(body, "\netcdpulse_build_info{") {
		t.Errorf("/metrics on the passed socket lacks etcdpulse_build_info:\n%s", body)
	}
	p.stop(t)
}

// `etcdpulse --help` says how to see the flags of run, the default command,
// and that command lists them.
func TestHelpShowsRunFlags(t *testing.T) {
	bin := builtBinary(t).path
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--help").Output()
	if err != nil {
		t.Fatalf("--help: %v", err)
	}
	const pointer = "etcdpulse run --help"
	if !strings.Contains(string(out), "\n  "+pointer+"\n") {
		t.Fatalf("etcdpulse --help does not say %q:\n%s", pointer, out)
	}
	runHelp, err := exec.CommandContext(ctx, bin, strings.Fields(pointer)[1:]...).Output()
	if err != nil {
		t.Fatalf("%s: %v", pointer, err)
	}
	for _, flag := range []string{"--etcd.endpoints", "--web.listen-address", "--web.config.file", "--web.telemetry-path", "--web.disable-exporter-metrics", "--web.enable-pprof", "--web.systemd-socket"} {
		if !regexp.MustCompile(`\s--(\[no-\])?` + regexp.QuoteMeta(flag[2:]) + `[=\s]`).Match(runHelp) {
			t.Errorf("%s does not list %s:\n%s", pointer, flag, runHelp)
		}
	}
}
