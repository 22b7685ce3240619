package main

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// dockerfile is the image's build recipe, read as docker would: lines
// joined at their trailing backslashes, comments dropped, split into
// stages at each FROM.
type dockerfile struct {
	stages [][]instruction
}

type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var df dockerfile
	var cur strings.Builder
	for line := range strings.SplitSeq(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		full := strings.TrimSpace(cur.String())
		cur.Reset()
		if full == "" {
			continue
		}
		cmd, args, _ := strings.Cut(full, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			df.stages = append(df.stages, nil)
		}
		if len(df.stages) > 0 {
			df.stages[len(df.stages)-1] = append(df.stages[len(df.stages)-1], in)
		}
	}
	if len(df.stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a build stage and a final one", len(df.stages))
	}
	return df
}

// last returns the final stage's last instruction cmd, or fails.
func (df dockerfile) last(t *testing.T, cmd string) string {
	t.Helper()
	final := df.stages[len(df.stages)-1]
	for i := len(final) - 1; i >= 0; i-- {
		if final[i].cmd == cmd {
			return final[i].args
		}
	}
	t.Fatalf("Dockerfile: no %s in the final stage", cmd)
	return ""
}

// exec form only: a shell form would need a shell, which the image lacks.
func execForm(t *testing.T, what, args string) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(args), &out); err != nil {
		t.Fatalf("Dockerfile: %s %s is not the exec (JSON) form: %v", what, args, err)
	}
	return out
}

// The image runs the binary its build stage makes: build it the same way
// (the same environment, flags and package), check that it is static, and
// run it as ENTRYPOINT + CMD, as the image's user, with the image's
// environment only, against a real etcd.
func TestImageEntrypoint(t *testing.T) {
	df := readDockerfile(t)

	// The build stage's go build.
	var build string
	for _, in := range df.stages[0] {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	if build == "" {
		t.Fatal("Dockerfile: no RUN go build in the build stage")
	}
	m := regexp.MustCompile(`-o (\S+) (\./\S+)$`).FindStringSubmatch(build)
	if m == nil {
		t.Fatalf("Dockerfile: cannot read the output and package of %q", build)
	}
	out, pkg := m[1], m[2]
	if !strings.Contains(build, "CGO_ENABLED=0") {
		t.Fatalf("Dockerfile: the build must be static (CGO_ENABLED=0): %q", build)
	}
	entry := execForm(t, "ENTRYPOINT", df.last(t, "ENTRYPOINT"))
	cmdArgs := execForm(t, "CMD", df.last(t, "CMD"))
	copyLine := df.last(t, "COPY")
	if want := "--from=build " + out + " " + entry[0]; copyLine != want {
		t.Fatalf("Dockerfile: final COPY %q, want %q: the entrypoint must be the binary the build stage makes", copyLine, want)
	}
	if base := df.last(t, "FROM"); !strings.HasPrefix(base, "gcr.io/distroless/static") {
		t.Fatalf("Dockerfile: final base %q: the binary is static, the base must be distroless/static", base)
	}
	uid, gid := imageUser(t, df.last(t, "USER"))

	// Built as the build stage builds it, for this machine's platform.
	dir, err := os.MkdirTemp("", "etcdpulse-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	binPath := filepath.Join(dir, "etcdpulse")
	gob := exec.Command("go", "build", "-o", binPath, pkg)
	gob.Dir = repoRoot
	gob.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := gob.CombinedOutput(); err != nil {
		t.Fatalf("go build as the Dockerfile does: %v\n%s", err, b)
	}
	checkStatic(t, binPath)

	// The agent, as the container starts it: ENTRYPOINT + CMD, then the
	// flags the chart appends; no environment but the image's (distroless
	// sets PATH and SSL_CERT_FILE), working directory /.
	cluster := etcdtest.Start(t, etcdtest.Options{Mode: etcdtest.InProcess})
	data := filepath.Join(dir, "data")
	probe := filepath.Join(dir, "probe")
	for _, d := range []string{data, probe} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t, 23500)
	args := append(append(append([]string{}, entry[1:]...), cmdArgs...),
		"--etcd.endpoints="+cluster.ClientURLs()[0],
		"--etcd.data-dir="+data,
		"--disk.probe-dir="+probe,
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
	)
	c := exec.Command(binPath, args...)
	c.Dir = "/"
	c.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	if os.Geteuid() == 0 {
		// As the image's user, who owns nothing but the probe's directory.
		for _, d := range []string{data, probe} {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	} else {
		t.Logf("not root: running as uid %d, not the image's %d", os.Geteuid(), uid)
	}
	startProcess(t, c)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if body := getBody(t, base+"/readyz"); strings.TrimSpace(body) != "ok" {
		t.Fatalf("/readyz: %q", body)
	}
	waitMetric(t, base+"/metrics", "etcdpulse_cluster_fault_tolerance 0", "etcdpulse_cluster_voting_members 1")
}

// imageUser reads USER uid:gid; the image must not run as root.
func imageUser(t *testing.T, user string) (uid, gid int) {
	t.Helper()
	u, g, ok := strings.Cut(user, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("Dockerfile: USER %q, want numeric uid:gid (a Pod's runAsNonRoot can only check a number)", user)
	}
	if uid == 0 {
		t.Fatal("Dockerfile: USER is root")
	}
	return uid, gid
}

// checkStatic fails unless path is an ELF executable with no program
// interpreter and no shared libraries: it must run on distroless/static,
// which has no libc.
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s has a program interpreter: not static", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		t.Fatalf("%s needs shared libraries %v: not static", path, libs)
	}
}
