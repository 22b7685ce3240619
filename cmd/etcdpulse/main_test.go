package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"go.yaml.in/yaml/v3"

	"github.com/etcdpulse/etcdpulse/agent"
)

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestConfigCheck(t *testing.T) {
	cases := []struct {
		args []string
		code int
		out  string // exact stderr, or stdout when code is 0
	}{
		{[]string{"run", "--config.file", "../../agent/testdata/config/good.yml", "--config.check"}, 0, "configuration is valid\n"},
		{[]string{"run", "--config.check"}, 0, "configuration is valid\n"},
		{[]string{"run", "--config.file", "../../agent/testdata/config/unknown-field.yml", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  --config.file ../../agent/testdata/config/unknown-field.yml: line 2: unknown field \"etcd.endpoint\" (valid fields of etcd: endpoints, tls, dial_timeout, username, password, key_prefix, data_dir, wal_dir, metrics_url)\n"},
		{[]string{"run", "--etcd.endpoints", "127.0.0.1:2379", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  etcd.endpoints[0] (--etcd.endpoints): \"127.0.0.1:2379\" is not a client URL (expected http://host:port or https://host:port)\n"},
		{[]string{"run", "--etcd.cacert", "/nonexistent/ca.crt", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  etcd.tls.ca_file (--etcd.cacert): cannot read \"/nonexistent/ca.crt\": no such file or directory\n"},
		{[]string{"run", "--log.format", "xml", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  log.format (--log.format): \"xml\" is not one of logfmt, json\n"},
		{[]string{"run", "--etcd.endpoints", "http://127.0.0.1:99999", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  etcd.endpoints[0] (--etcd.endpoints): \"http://127.0.0.1:99999\" has port \"99999\": expected a number from 1 to 65535, such as \"http://127.0.0.1:2379\"\n"},
		{[]string{"run", "--web.listen-address", "127.0.0.1:70000", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  web.listen_addresses[0] (--web.listen-address): \"127.0.0.1:70000\" has port \"70000\": expected a number from 0 to 65535, such as \":12379\"\n"},
		// An address this host does not have (TEST-NET-1): run would fail
		// to bind it, so the check does (nothing is sent anywhere).
		{[]string{"run", "--web.listen-address", "192.0.2.1:12379", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  web.listen_addresses[0] (--web.listen-address): cannot listen on 192.0.2.1:12379: bind: cannot assign requested address\n"},
		{[]string{"run", "--config.file", "../../agent/testdata/config/bad-int.yml", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  --config.file ../../agent/testdata/config/bad-int.yml: line 2: field disk.syncs: expected an integer, got \"many\"\n"},
		{[]string{"run", "--web.telemetry-path", "/healthz", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  web.telemetry_path (--web.telemetry-path): \"/healthz\" is the agent's health endpoint; pick another path, such as \"/metrics\"\n"},
		{[]string{"run", "--no-such-flag"}, 2, "etcdpulse: unknown long flag '--no-such-flag'\n"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args[1:], " "), func(t *testing.T) {
			code, out, errOut := runCmd(c.args...)
			got := errOut
			if c.code == 0 {
				got = out
			}
			if code != c.code || got != c.out {
				t.Errorf("exit %d, output:\n%s\nwant exit %d, output:\n%s", code, got, c.code, c.out)
			}
		})
	}
}

// A port in use when the configuration is checked may be the running
// agent's that the configuration is for: a note, not an error.
func TestConfigCheckPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, out, errOut := runCmd("run", "--web.listen-address", l.Addr().String(), "--config.check")
	if code != 0 || out != "configuration is valid\n" {
		t.Errorf("exit %d, stdout %q; want 0 and the configuration valid", code, out)
	}
	if want := "note: web.listen_addresses[0] (--web.listen-address) " + l.Addr().String() + " is in use now; run needs it free\n"; errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
}

// Flags override the file; fields the flags leave alone keep the file's value.
func TestFlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/c.yml"
	if err := os.WriteFile(path, []byte("etcd:\n  endpoints: [\"http://10.0.0.1:2379\"]\nlog:\n  level: debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	app := kingpin.New("etcdpulse", "")
	_, f := addRunCommand(app)
	if _, err := app.Parse([]string{"run", "--config.file", path, "--etcd.endpoints", "http://127.0.0.1:2379,http://127.0.0.2:2379"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Etcd.Endpoints, ","); got != "http://127.0.0.1:2379,http://127.0.0.2:2379" {
		t.Errorf("endpoints = %s, want the flag's", got)
	}
	if cfg.Log.Level != "debug" {
		t.Errorf("log level = %s, want the file's debug", cfg.Log.Level)
	}
}

// The web flags, exporter-toolkit's included, override the file's web
// section one by one, like every other flag.
func TestWebFlagsOverrideFile(t *testing.T) {
	path := t.TempDir() + "/c.yml"
	file := "web:\n  listen_addresses: [\"127.0.0.1:9001\"]\n  telemetry_path: /from-file\n  enable_pprof: true\n  disable_exporter_metrics: true\n"
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) agent.WebConfig {
		t.Helper()
		app := kingpin.New("etcdpulse", "")
		_, f := addRunCommand(app)
		if _, err := app.Parse(append([]string{"run", "--config.file", path}, args...)); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config()
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Web
	}
	if got := parse(); !slices.Equal(got.ListenAddresses, []string{"127.0.0.1:9001"}) || got.TelemetryPath != "/from-file" || !got.EnablePprof || !got.DisableExporterMetrics || got.SystemdSocket {
		t.Errorf("without flags: %+v, want the file's values", got)
	}
	args := []string{"--web.listen-address", "127.0.0.1:9002", "--web.listen-address", "127.0.0.1:9003",
		"--web.telemetry-path", "/from-flag", "--no-web.enable-pprof"}
	want := agent.WebConfig{
		ListenAddresses: []string{"127.0.0.1:9002", "127.0.0.1:9003"},
		TelemetryPath:   "/from-flag",
		// Not given as a flag: the file's.
		DisableExporterMetrics: true,
	}
	if runtime.GOOS == "linux" { // the only platform with the flag
		args = append(args, "--web.systemd-socket")
		want.SystemdSocket = true
	}
	got := parse(args...)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("with flags: %+v\nwant %+v", got, want)
	}
}

// --web.systemd-socket without sockets from systemd is a clear error.
func TestSystemdSocketMissing(t *testing.T) {
	code, _, errOut := runCmd("run", "--web.systemd-socket", "--etcd.endpoints", "http://127.0.0.1:1", "--etcd.process-name", "")
	want := "etcdpulse: --web.systemd-socket: systemd passed no listening socket (LISTEN_FDS and LISTEN_PID unset or not for this process); start etcdpulse from a systemd .socket unit, or drop the flag to bind --web.listen-address\n"
	if code != 1 || errOut != want {
		t.Errorf("exit %d, stderr %q; want exit 1, %q", code, errOut, want)
	}
}

func TestServePortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, _, errOut := runCmd("run", "--web.listen-address", l.Addr().String(), "--etcd.endpoints", "http://127.0.0.1:1")
	want := fmt.Sprintf("etcdpulse: --web.listen-address %s: the port is already in use by another process; pick another address\n", l.Addr())
	if code != 1 || errOut != want {
		t.Errorf("exit %d, stderr %q; want exit 1, %q", code, errOut, want)
	}
}

func TestDemoPortTaken(t *testing.T) {
	base := freeBase(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+1))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, _, errOut := runCmd("demo", "--web.port", fmt.Sprint(base), "--duration", "1s")
	want := fmt.Sprintf("etcdpulse demo: --web.listen-address 127.0.0.1:%d: the port is already in use by another process; pick another address (use --web.port to move all three agents)\n", base+1)
	if code != 1 || errOut != want {
		t.Errorf("exit %d, stderr %q; want exit 1, %q", code, errOut, want)
	}
}

// The demo end to end: a 3-member cluster, three agents that see it
// healthy, a scrape config naming them, and after Ctrl-C nothing left
// behind.
func TestDemo(t *testing.T) {
	base := freeBase(t)
	promPath := t.TempDir() + "/prometheus.yml"
	var out syncBuffer
	done := make(chan int)
	go func() {
		done <- run([]string{"demo", "--web.port", fmt.Sprint(base), "--duration", "5m", "--status.interval", "500ms", "--prometheus.config", promPath}, &out, io.Discard)
	}()
	for i := range 3 {
		url := fmt.Sprintf("http://127.0.0.1:%d/metrics", base+i)
		waitMetric(t, url, "etcdpulse_cluster_has_leader 1", "etcdpulse_cluster_fault_tolerance 1", "etcdpulse_up 1")
	}
	var cfg struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	raw, err := os.ReadFile(promPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("prometheus config: %v", err)
	}
	want := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", base, base+1, base+2)
	if got := strings.Join(cfg.ScrapeConfigs[0].StaticConfigs[0].Targets, ","); got != want {
		t.Errorf("scrape targets = %s, want %s", got, want)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if strings.Contains(out.String(), "fault tolerance 1\n") {
			break
		}
	}
	// Ctrl-C: the demo's own signal handler stops everything.
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 0 {
		t.Fatalf("demo exit %d:\n%s", code, out.String())
	}
	screen := out.String()
	for _, s := range []string{"leader member-", "voting members 3, healthy 3, quorum 2, fault tolerance 1", "member-0", "member-2"} {
		if !strings.Contains(screen, s) {
			t.Errorf("status screen lacks %q:\n%s", s, screen)
		}
	}
	dir := regexp.MustCompile(`cluster in (\S+) \.\.\.`).FindStringSubmatch(screen)
	if dir == nil {
		t.Fatalf("no data directory printed:\n%s", screen)
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Errorf("data directory %s left behind (stat: %v)", dir[1], err)
	}
}

func waitMetric(t *testing.T, url string, lines ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var body string
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			ok := true
			for _, l := range lines {
				ok = ok && strings.Contains(body, "\n"+l+"\n")
			}
			if ok {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never showed %v; last body:\n%s", url, lines, body)
}

// freeBase finds three consecutive free loopback ports.
func freeBase(t *testing.T) int {
	for range 100 {
		base := 30000 + rand.IntN(20000)
		var ls []net.Listener
		for i := range 3 {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if len(ls) == 3 {
			return base
		}
	}
	t.Fatal("no three consecutive free ports")
	return 0
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
