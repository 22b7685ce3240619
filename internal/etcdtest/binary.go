package etcdtest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// EtcdBinaryEnv names the environment variable that, when set, gives the path
// of the etcd binary used in Process mode instead of building one.
const EtcdBinaryEnv = "ETCDPULSE_ETCD_BIN"

// CompatEtcdBinaryEnv names the environment variable giving the path of an
// older etcd binary to stay compatible with (`make test` unpacks Debian 12's
// etcd-server, 3.4, and sets it).
const CompatEtcdBinaryEnv = "ETCDPULSE_ETCD_COMPAT_BIN"

// CompatEtcdBinary returns $ETCDPULSE_ETCD_COMPAT_BIN, the older etcd the
// agent must keep working with. Without it the test is unavailable: a
// failure under `make test`, a skip under a plain `go test`.
func CompatEtcdBinary(t testing.TB) string {
	t.Helper()
	return testenv.EnvFile(t, CompatEtcdBinaryEnv, "`make test` unpacks Debian's etcd-server (3.4) into bin/etcd-3.4 and sets it")
}

var etcdBin struct {
	sync.Mutex
	done bool
	path string
	err  error
}

// EtcdBinary returns the path of a real etcd binary: $ETCDPULSE_ETCD_BIN if
// set, else one built from go.etcd.io/etcd/server/v3 once per test process.
func EtcdBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EtcdBinaryEnv); p != "" {
		return p
	}
	etcdBin.Lock()
	defer etcdBin.Unlock()
	if !etcdBin.done {
		start := time.Now()
		etcdBin.path, etcdBin.err = buildEtcd()
		etcdBin.done = true
		if etcdBin.err == nil {
			t.Logf("etcdtest: etcd binary %s ready in %v", etcdBin.path, time.Since(start).Round(time.Millisecond))
		}
	}
	if etcdBin.err != nil {
		t.Fatalf("etcdtest: building etcd: %v", etcdBin.err)
	}
	return etcdBin.path
}

// moduleRoot walks up from the working directory to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if st, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !st.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found above the working directory; set " + EtcdBinaryEnv + " to an etcd binary")
		}
		dir = parent
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// buildEtcd builds the etcd binary into a directory of os.TempDir() keyed by
// the module root and its go.mod/go.sum, holding an exclusive file lock so
// that concurrent test binaries serialize instead of clashing. go build skips
// relinking when the existing output is up to date, so later builds are quick.
func buildEtcd() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s/%s\n", root, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, f := range []string{"go.mod", "go.sum"} {
		b, _ := os.ReadFile(filepath.Join(root, f))
		h.Write(b)
	}
	dir := filepath.Join(os.TempDir(), "etcdpulse-etcdtest-"+hex.EncodeToString(h.Sum(nil))[:16])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	bin := filepath.Join(dir, "etcd")
	cmd := exec.Command(goTool(), "build", "-o", bin, "go.etcd.io/etcd/server/v3")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build go.etcd.io/etcd/server/v3 in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// EtcdctlBinaryEnv names the environment variable giving the etcdctl binary
// (`make test` builds it from the version pinned in go.mod and sets it).
const EtcdctlBinaryEnv = "ETCDPULSE_ETCDCTL_BIN"

// EtcdctlBinary returns $ETCDPULSE_ETCDCTL_BIN, for tests that run the
// commands the docs give. Without it the test is unavailable: a failure
// under `make test`, a skip under a plain `go test`.
func EtcdctlBinary(t testing.TB) string {
	t.Helper()
	return testenv.EnvFile(t, EtcdctlBinaryEnv, "`make tools` builds bin/etcdctl and `make test` sets it")
}
