package main

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/etcdpulse/etcdpulse/internal/buildinfo"
)

// versionOutput is what `etcdpulse version` prints.
type versionOutput struct {
	version, branch, revision, buildUser, buildDate string
}

var versionRE = regexp.MustCompile(`^etcdpulse, version (\S*) \(branch: (\S*), revision: (\S*)\)\n\s+build user:\s+(\S*)\n\s+build date:\s+(\S*)\n`)

func runVersion(t *testing.T, bin string) versionOutput {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	m := versionRE.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("%s version printed:\n%s", bin, out)
	}
	return versionOutput{m[1], m[2], m[3], m[4], m[5]}
}

// buildInfoLabels runs the agent from bin and returns the labels of its
// etcdpulse_build_info.
func buildInfoLabels(t *testing.T, bin string) map[string]string {
	t.Helper()
	p := startProcess(t, exec.Command(bin, append([]string{"run", "--web.listen-address", "127.0.0.1:0"}, quietArgs(t)...)...))
	body := getBody(t, "http://"+p.listenAddress(t)+"/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	mf, ok := mfs["etcdpulse_build_info"]
	if !ok || len(mf.Metric) != 1 {
		t.Fatalf("no single etcdpulse_build_info:\n%s", body)
	}
	labels := map[string]string{}
	for _, l := range mf.Metric[0].Label {
		labels[l.GetName()] = l.GetValue()
	}
	p.stop(t)
	return labels
}

// versionFile is the version in the VERSION file.
func versionFile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// A plain `go build` in a checkout stamps nothing: the binary reports the
// VERSION file's version, and the commit and its time from Go's build info.
func TestPlainBuildVersion(t *testing.T) {
	b := builtBinary(t)
	got := runVersion(t, b.path)
	want := versionOutput{
		version:  versionFile(t),
		branch:   buildinfo.Unknown,
		revision: b.commit, // the snapshot is committed whole: not modified
		// Go records no builder; the date is the commit's.
		buildUser: buildinfo.Unknown,
		buildDate: b.commitTime.UTC().Format(buildinfo.DateFormat),
	}
	if got != want {
		t.Errorf("version:\n got %+v\nwant %+v", got, want)
	}
	labels := buildInfoLabels(t, b.path)
	if labels["version"] != want.version || labels["revision"] != want.revision || labels["branch"] != want.branch {
		t.Errorf("etcdpulse_build_info labels %v, want version %s, revision %s, branch %s", labels, want.version, want.revision, want.branch)
	}
}

// `make build` stamps everything from git and the build host, as promu
// does.
func TestMakeBuildVersion(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("make", "-C", repoRoot, "build", "BIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "etcdpulse")
	got := runVersion(t, bin)

	head, err := git(repoRoot, "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	status, err := git(repoRoot, "status", "--porcelain")
	if err != nil {
		t.Fatal(err)
	}
	revision := strings.TrimSpace(head)
	if status != "" {
		revision += "-modified"
	}
	branch, err := git(repoRoot, "rev-parse", "--abbrev-ref", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	want := versionOutput{
		version:   versionFile(t),
		branch:    strings.TrimSpace(branch),
		revision:  revision,
		buildUser: u.Username + "@" + host,
		buildDate: got.buildDate,
	}
	if got != want {
		t.Errorf("version:\n got %+v\nwant %+v", got, want)
	}
	if _, err := time.Parse(buildinfo.DateFormat, got.buildDate); err != nil {
		t.Errorf("build date %q is not in promu's format: %v", got.buildDate, err)
	}
	labels := buildInfoLabels(t, bin)
	if labels["version"] != want.version || labels["revision"] != want.revision || labels["branch"] != want.branch {
		t.Errorf("etcdpulse_build_info labels %v, want version %s, revision %s, branch %s", labels, want.version, want.revision, want.branch)
	}
}
