package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/alecthomas/kingpin/v2"
	"go.yaml.in/yaml/v3"

	"github.com/etcdpulse/etcdpulse/alerts"
	"github.com/etcdpulse/etcdpulse/internal/promtool"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
	"github.com/etcdpulse/etcdpulse/probes"
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
		{[]string{"run", "--config.file", "testdata/config/good.yml", "--config.check"}, 0, "configuration is valid\n"},
		{[]string{"run", "--config.check"}, 0, "configuration is valid\n"},
		{[]string{"run", "--config.file", "testdata/config/unknown-field.yml", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  --config.file testdata/config/unknown-field.yml: line 2: unknown field \"etcd.endpoint\" (valid fields of etcd: endpoints, tls, dial_timeout, username, password, key_prefix, data_dir, wal_dir, metrics_url, quota_backend_bytes, read_only)\n"},
		{[]string{"run", "--etcd.endpoints", "127.0.0.1:2379", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  etcd.endpoints[0] (--etcd.endpoints): \"127.0.0.1:2379\" is not a client URL (expected http://host:port or https://host:port)\n"},
		{[]string{"run", "--etcd.tls.ca-file", "/nonexistent/ca.crt", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  etcd.tls.ca_file (--etcd.tls.ca-file): cannot read \"/nonexistent/ca.crt\": no such file or directory\n"},
		// The former name still works.
		{[]string{"run", "--etcd.cacert", "/nonexistent/ca.crt", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  etcd.tls.ca_file (--etcd.tls.ca-file): cannot read \"/nonexistent/ca.crt\": no such file or directory\n"},
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
		{[]string{"run", "--config.file", "testdata/config/bad-int.yml", "--config.check"}, 1,
			"etcdpulse: invalid configuration:\n  --config.file testdata/config/bad-int.yml: line 2: field disk.syncs: expected an integer, got \"many\"\n"},
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
	cfg, err := f.load()
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
	parse := func(args ...string) webConfig {
		t.Helper()
		app := kingpin.New("etcdpulse", "")
		_, f := addRunCommand(app)
		if _, err := app.Parse(append([]string{"run", "--config.file", path}, args...)); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.load()
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
	want := webConfig{
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
	code, _, errOut := runCmd("run", "--web.systemd-socket", "--etcd.endpoints", "http://127.0.0.1:1", "--host.process-name", "")
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
	want := fmt.Sprintf("etcdpulse demo: --web.port %d: 127.0.0.1:%d is already in use by another process; pick another port (the three agents take --web.port and the next two)\n", base, base+1)
	if code != 1 || errOut != want {
		t.Errorf("exit %d, stderr %q; want exit 1, %q", code, errOut, want)
	}
}

// Bad demo flags fail before anything starts, naming the flag and what
// was expected.
func TestDemoBadFlags(t *testing.T) {
	prom := promtool.PrometheusPath(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	cases := []struct {
		args []string
		want string // stderr, exactly
	}{
		{[]string{"--web.host", "10.0.0.1"}, `--web.host "10.0.0.1" must be a loopback address such as 127.0.0.1`},
		{[]string{"--web.port", "65534"}, "--web.port 65534: expected a port from 1 to 65533 (the three agents take it and the next two)"},
		{[]string{"--web.port", "0"}, "--web.port 0: expected a port from 1 to 65533 (the three agents take it and the next two)"},
		{[]string{"--status.interval", "0s"}, "--status.interval 0s: expected a positive duration such as 10s"},
		{[]string{"--chaos", "--chaos.downtime=-1s"}, "--chaos.downtime -1s: expected a positive duration such as 10s"},
		{[]string{"--duration=-1s"}, "--duration -1s: expected 0 (run until Ctrl-C) or a positive duration"},
		{[]string{"--with-prometheus", prom, "--web.port", "9089"}, "--prometheus.port 9090 is one of the agents' ports (--web.port 9089 and the next two): pick another port"},
		{[]string{"--with-prometheus", prom, "--prometheus.port", "70000"}, "--prometheus.port 70000: expected a port from 1 to 65535"},
		{[]string{"--with-prometheus", prom, "--prometheus.port", fmt.Sprint(takenPort)},
			fmt.Sprintf("--prometheus.port %d: 127.0.0.1:%d is already in use by another process; pick another port", takenPort, takenPort)},
		{[]string{"--with-prometheus", "/nonexistent/prometheus"},
			`--with-prometheus: cannot run "/nonexistent/prometheus": fork/exec /nonexistent/prometheus: no such file or directory (expected the path of a Prometheus server binary)`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, out, errOut := runCmd(append([]string{"demo"}, c.args...)...)
			want := "etcdpulse demo: " + c.want + "\n"
			if code != 1 || errOut != want || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, no output, stderr %q", code, out, errOut, want)
			}
		})
	}
	// A binary that is not a Prometheus server: promtool.
	code, _, errOut := runCmd("demo", "--with-prometheus", promtool.Path(t))
	if want := fmt.Sprintf("etcdpulse demo: --with-prometheus: %q is not a Prometheus server: its --version printed \"promtool, version", promtool.Path(t)); code != 1 || !strings.HasPrefix(errOut, want) {
		t.Errorf("exit %d, stderr %q; want exit 1 and a message starting %q", code, errOut, want)
	}
}

// The demo end to end: a 3-member cluster, three agents that see it
// healthy, a scrape config naming them, and after Ctrl-C nothing left
// behind.
func TestDemo(t *testing.T) {
	base := freeBase(t)
	promPath := t.TempDir() + "/prometheus.yml"
	// The demo's temporary directory on a disk, so that every agent's
	// fsync probe measures (it refuses on tmpfs).
	t.Setenv("TMPDIR", testenv.DiskDir(t))
	var out testenv.Buffer
	done := make(chan int)
	go func() {
		done <- run([]string{"demo", "--web.port", fmt.Sprint(base), "--duration", "5m", "--status.interval", "500ms", "--prometheus.config", promPath}, &out, io.Discard)
	}()
	for i := range 3 {
		url := fmt.Sprintf("http://127.0.0.1:%d/metrics", base+i)
		// Each agent measures fsync in a probe directory of its own, and
		// reads its member's own metrics URL.
		waitMetric(t, url, "etcdpulse_cluster_has_leader 1", "etcdpulse_cluster_fault_tolerance 1", "etcdpulse_up 1",
			fmt.Sprintf(`etcdpulse_probe_success{member="member-%d",probe="fsync"} 1`, i),
			fmt.Sprintf(`etcdpulse_probe_success{member="member-%d",probe="etcd_metrics"} 1`, i),
			"etcdpulse_etcd_metrics_up 1")
		// Spans in memory: /debug/tracez shows the probe runs.
		tracez := fmt.Sprintf("http://127.0.0.1:%d/debug/tracez", base+i)
		waitPage(t, tracez, probes.SpanRound, probes.SpanProbePrefix+probes.ProbeStatus, probes.SpanProbePrefix+probes.ProbeFsync)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
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
	// The shipped rules, beside the configuration.
	rules, err := alerts.RuleFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.RuleFiles) != 1 {
		t.Fatalf("rule_files = %v, want one file", cfg.RuleFiles)
	}
	if got, err := os.ReadFile(filepath.Join(filepath.Dir(promPath), cfg.RuleFiles[0])); err != nil || !bytes.Equal(got, rules) {
		t.Errorf("rule file %s (error %v) differs from `etcdpulse alerts`", cfg.RuleFiles[0], err)
	}
	promtool.Run(t, "check", "config", promPath)
	// Wait for a screen with every agent's fsync p99.
	p99 := regexp.MustCompile(`(?m)^  member-\d  \S+  p99 \d`)
	testenv.Eventually(t, 60*time.Second, "a screen with fault tolerance 1 and every agent's fsync p99", func() error {
		if s := lastScreen(out.String()); !strings.Contains(s, "fault tolerance 1\n") || len(p99.FindAllString(s, -1)) != 3 {
			return fmt.Errorf("last screen:\n%s", s)
		}
		return nil
	})
	// The maintenance gate, on the command's own handler: yes for the
	// followers, no for the leader.
	testenv.Eventually(t, 60*time.Second, "the gate: yes for two members, no for the leader", func() error {
		var answers []string
		yes, leader := 0, 0
		for i := range 3 {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/maintenance", base+i))
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers = append(answers, fmt.Sprintf("%d %s", resp.StatusCode, body))
			switch {
			case resp.StatusCode == http.StatusOK && strings.HasPrefix(string(body), fmt.Sprintf("yes: member-%d can be taken down now", i)):
				yes++
			case resp.StatusCode == http.StatusConflict && strings.Contains(string(body), fmt.Sprintf("member-%d is the leader", i)):
				leader++
			}
		}
		if yes != 2 || leader != 1 {
			return fmt.Errorf("answers: %q", answers)
		}
		return nil
	})
	// The check it suggests passes against it.
	endpoint := regexp.MustCompile(`Check it: etcdpulse check --etcd.endpoints=(\S+)`).FindStringSubmatch(out.String())
	if endpoint == nil {
		t.Fatalf("no check command printed:\n%s", out.String())
	}
	if code, report, _ := runCmd("check", "--etcd.endpoints="+endpoint[1], "--no-disk.enabled"); code != 0 ||
		!strings.Contains(report, "PASS fault tolerance 1: 3 of 3 voters healthy, quorum 2") {
		t.Errorf("check against the demo: exit code %d, want 0:\n%s", code, report)
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
	if n := len(p99.FindAllString(lastScreen(screen), -1)); n != 3 {
		t.Errorf("last status screen shows the fsync p99 of %d agents, want 3:\n%s", n, lastScreen(screen))
	}
	checkWidth(t, screen)
	dir := regexp.MustCompile(`cluster in\s+(\S+) \.\.\.`).FindStringSubmatch(screen)
	if dir == nil {
		t.Fatalf("no data directory printed:\n%s", screen)
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Errorf("data directory %s left behind (stat: %v)", dir[1], err)
	}
}

// The demo with a real Prometheus: it scrapes the three agents, has the
// shipped rule groups loaded, shows on the status screen, and stops with
// the demo.
func TestDemoWithPrometheus(t *testing.T) {
	base := freeBase(t)
	promPort := freePort(t, base)
	var out testenv.Buffer
	done := make(chan int, 1)
	go func() {
		// --duration only bounds a demo the test fails to stop.
		done <- run([]string{"demo", "--web.port", fmt.Sprint(base), "--duration", "10m", "--status.interval", "1s",
			"--with-prometheus", promtool.PrometheusPath(t), "--prometheus.port", fmt.Sprint(promPort)}, &out, io.Discard)
	}()
	prom := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	var targets struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	waitAPI(t, done, &out, prom+"/api/v1/targets", &targets, func() bool {
		up := 0
		for _, tg := range targets.Data.ActiveTargets {
			if tg.Health == "up" {
				up++
			}
		}
		return up == 3 && len(targets.Data.ActiveTargets) == 3
	})
	var rules struct {
		Data struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name   string `json:"name"`
					Health string `json:"health"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	var want struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []any  `yaml:"rules"`
		} `yaml:"groups"`
	}
	raw, err := alerts.RuleFile()
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	wantRules := map[string]int{} // rules per group
	for _, g := range want.Groups {
		wantRules[g.Name] = len(g.Rules)
	}
	waitAPI(t, done, &out, prom+"/api/v1/rules", &rules, func() bool {
		if len(rules.Data.Groups) != len(want.Groups) {
			return false
		}
		for _, g := range rules.Data.Groups {
			if n, ok := wantRules[g.Name]; !ok || len(g.Rules) != n {
				return false
			}
			for _, r := range g.Rules {
				if r.Health != "ok" { // evaluated without error
					return false
				}
			}
		}
		return true
	})
	testenv.Eventually(t, time.Minute, "the Prometheus URL on the screen", func() error {
		if !strings.Contains(out.String(), "Prometheus: "+prom) {
			return fmt.Errorf("not on the screen yet")
		}
		return nil
	})
	select {
	case code := <-done:
		t.Fatalf("demo exited (%d) before it was stopped:\n%s", code, out.String())
	default:
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 0 {
		t.Fatalf("demo exit %d:\n%s", code, out.String())
	}
	screen := out.String()
	if !strings.Contains(screen, "Prometheus: "+prom+"   (alerts: "+prom+"/alerts)") {
		t.Errorf("status screen does not show Prometheus' URL:\n%s", lastScreen(screen))
	}
	checkWidth(t, screen)
	// Stopped with the demo: nothing answers on its port any more.
	if resp, err := http.Get(prom + "/-/ready"); err == nil {
		resp.Body.Close()
		t.Errorf("Prometheus still answers on %s after the demo stopped", prom)
	}
}

// waitAPI polls a Prometheus API endpoint into v until ok, failing when
// the demo exits first or after a generous deadline.
func waitAPI(t *testing.T, done chan int, out *testenv.Buffer, url string, v any, ok func() bool) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		select {
		case code := <-done:
			t.Fatalf("demo exited (%d) while waiting for %s:\n%s", code, url, out.String())
		default:
		}
		resp, err := http.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = string(body)
		if resp.StatusCode == http.StatusOK && json.Unmarshal(body, v) == nil && ok() {
			return
		}
	}
	t.Fatalf("%s never as expected; last answer:\n%s", url, last)
}

// lastScreen is the last status screen of the demo's output (each is
// written whole, in one write).
func lastScreen(out string) string {
	screens := strings.Split(out, "etcdpulse demo — ")
	return screens[len(screens)-1]
}

// checkWidth fails for any line of the demo's output wider than a
// default terminal.
func checkWidth(t *testing.T, out string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > statusWidth {
			t.Errorf("line of %d columns, want at most %d:\n%s", n, statusWidth, l)
		}
	}
}

func waitPage(t *testing.T, url string, contents ...string) {
	t.Helper()
	var body string
	var status int
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(url)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body, status = string(b), resp.StatusCode
		if status == http.StatusOK && !slices.ContainsFunc(contents, func(c string) bool { return !strings.Contains(body, c) }) {
			return
		}
	}
	t.Fatalf("%s: status %d, want 200 and a page with %v; last body:\n%s", url, status, contents, body)
}

// freePort finds a free loopback port outside base..base+2.
func freePort(t *testing.T, base int) int {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port < base || port > base+2 {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
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

// Every setting has a flag after its YAML path; a former name still sets
// the same field, and is reported for the deprecation warning.
func TestFlagsFromTable(t *testing.T) {
	path := t.TempDir() + "/c.yml"
	if err := os.WriteFile(path, []byte("disk:\n  syncs: 8\n  interval: 30s\nhost:\n  pid_file: /from/file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	app := kingpin.New("etcdpulse", "")
	_, f := addRunCommand(app)
	args := []string{"run", "--config.file", path, "--disk.syncs", "4", "--no-network.enabled",
		"--probes.status.timeout", "500ms", "--etcd.pid-file", "/from/flag", "--etcd.tls.server-name", "etcd.example"}
	if _, err := app.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Disk.Syncs != 4 || time.Duration(cfg.Disk.Interval) != 30*time.Second || cfg.Network.Enabled ||
		time.Duration(cfg.Probes.Status.Timeout) != 500*time.Millisecond || cfg.Host.PIDFile != "/from/flag" ||
		cfg.Etcd.TLS.ServerName != "etcd.example" {
		t.Errorf("config = %+v", cfg.Config)
	}
	if !slices.Equal(f.config.deprecated, []string{"etcd.pid-file"}) {
		t.Errorf("deprecated flags used = %v, want [etcd.pid-file]", f.config.deprecated)
	}
	// A value of the wrong type is refused by the flag parser, naming it.
	app = kingpin.New("etcdpulse", "")
	addRunCommand(app)
	if _, err := app.Parse([]string{"run", "--disk.syncs", "many"}); err == nil || !strings.Contains(err.Error(), "--disk.syncs") || !strings.Contains(err.Error(), `expected an integer, got "many"`) {
		t.Errorf("--disk.syncs many: %v", err)
	}
}
