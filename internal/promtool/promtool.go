// Package promtool runs the real promtool for tests: rule checks, rule unit
// tests and PromQL parsing. `make test` builds promtool from the module
// graph into bin/ and points ETCDPULSE_PROMTOOL at it.
//
// It is internal to etcdpulse: not public API.
package promtool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Env names the promtool binary to use.
const Env = "ETCDPULSE_PROMTOOL"

// Path returns the promtool binary: $ETCDPULSE_PROMTOOL, else bin/promtool
// at the module root, else promtool on PATH. A missing promtool fails the
// test: `make test` provides it.
func Path(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(Env); p != "" {
		return p
	}
	if root, err := moduleRoot(); err == nil {
		if p := filepath.Join(root, "bin", "promtool"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	t.Fatalf("promtool not found: run the tests with `make test`, which builds it, or set %s", Env)
	return ""
}

// Run runs promtool with args and returns its combined output; a non-zero
// exit fails the test with that output.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(Path(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// CheckExpressions parses PromQL expressions with promtool, by writing them
// as recording rules and running `promtool check rules`. Keys name the
// expressions in errors.
func CheckExpressions(t testing.TB, exprs map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("groups:\n  - name: expressions\n    rules:\n")
	for i, k := range keys {
		fmt.Fprintf(&b, "      # %s\n      - record: expr_%d\n        expr: %q\n", strings.ReplaceAll(k, "\n", " "), i, exprs[k])
	}
	path := filepath.Join(t.TempDir(), "exprs.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(Path(t), "check", "rules", "--lint=none", path).CombinedOutput()
	if err != nil {
		t.Errorf("PromQL that does not parse:\n%s\nexpressions (expr_N in the order of):\n  %s", out, strings.Join(keys, "\n  "))
	}
}

// metricName matches identifiers that can be metric names; the caller
// keeps those of interest (by prefix).
var metricName = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)

// MetricNames returns the metric names with one of the given prefixes that
// an expression refers to. Label values in quotes are skipped.
func MetricNames(expr string, prefixes ...string) []string {
	expr = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`).ReplaceAllString(expr, `""`)
	seen := map[string]bool{}
	var out []string
	for _, id := range metricName.FindAllString(expr, -1) {
		for _, p := range prefixes {
			if strings.HasPrefix(id, p) && !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	sort.Strings(out)
	return out
}

// EtcdMetrics returns etcd's own metric names, as listed in
// internal/promtool/testdata/etcd-metrics.txt (see that file's header).
func EtcdMetrics(t testing.TB) map[string]bool {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "internal", "promtool", "testdata", "etcd-metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out[l] = true
		}
	}
	return out
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// PrometheusEnv names the Prometheus server binary to use.
const PrometheusEnv = "ETCDPULSE_PROMETHEUS"

// PrometheusPath returns the Prometheus server binary: $ETCDPULSE_PROMETHEUS,
// else bin/prometheus at the module root, else prometheus on PATH. A missing
// binary fails the test: `make test` provides it.
func PrometheusPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(PrometheusEnv); p != "" {
		return p
	}
	if root, err := moduleRoot(); err == nil {
		if p := filepath.Join(root, "bin", "prometheus"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	t.Fatalf("prometheus not found: run the tests with `make test`, which builds it, or set %s", PrometheusEnv)
	return ""
}
