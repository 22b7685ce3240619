package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// RulesFileName is the name of the alert rule file the demo writes beside
// its Prometheus configuration, which loads it by this relative name.
const RulesFileName = "etcdpulse-rules.yml"

// PrometheusConfig is a Prometheus configuration that scrapes the agents
// at targets and loads RulesFileName from the configuration's directory.
func PrometheusConfig(targets []string) string {
	return fmt.Sprintf(`# Written by etcdpulse demo: scrapes the demo's three agents and loads the
# etcdpulse alert rules from %[1]s, beside this file.
# Run: prometheus --config.file=<this file>
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files: ['%[1]s']
scrape_configs:
  - job_name: etcdpulse
    # The rules read the classic buckets of the latency histograms.
    always_scrape_classic_histograms: true
    static_configs:
      - targets: ['%[2]s']
        labels:
          cluster: etcdpulse-demo
`, RulesFileName, strings.Join(targets, "', '"))
}

// WritePrometheusConfig writes the configuration to path and the rule file
// beside it, and returns the rule file's path.
func WritePrometheusConfig(path string, targets []string, rules []byte) (string, error) {
	rulesPath := filepath.Join(filepath.Dir(path), RulesFileName)
	if err := os.WriteFile(rulesPath, rules, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(PrometheusConfig(targets)), 0o644); err != nil {
		return "", err
	}
	return rulesPath, nil
}

// CheckPrometheusBinary runs `bin --version` and checks that bin is a
// Prometheus server (not promtool, not anything else).
func CheckPrometheusBinary(ctx context.Context, bin string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("cannot run %q: %v (expected the path of a Prometheus server binary)", bin, err)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(out), []byte("prometheus, version")) {
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return fmt.Errorf("%q is not a Prometheus server: its --version printed %q (expected \"prometheus, version ...\")", bin, first)
	}
	return nil
}

// PortFree reports an error when addr cannot be bound, saying whether
// another process holds it.
func PortFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s is already in use by another process", addr)
		}
		return fmt.Errorf("cannot listen on %s: %v", addr, err)
	}
	return l.Close()
}

// PrometheusOptions configure StartPrometheus.
type PrometheusOptions struct {
	// Bin is the Prometheus server binary.
	Bin string
	// Config is the configuration file.
	Config string
	// Dir holds its data (Dir/prometheus-data) and log (Dir/prometheus.log).
	Dir string
	// Addr is the loopback host:port it listens on.
	Addr string
}

// Prometheus is a Prometheus server the demo runs.
type Prometheus struct {
	// URL is where it serves.
	URL string
	// Log is its log file.
	Log string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // how it exited, once done is closed
}

// prometheusReadyTimeout bounds how long StartPrometheus waits for
// /-/ready: generous, for a shared, loaded machine.
const prometheusReadyTimeout = 2 * time.Minute

// StartPrometheus starts Prometheus and returns once it is ready to serve
// queries, or an error with the end of its log when it exits before.
func StartPrometheus(ctx context.Context, opts PrometheusOptions) (*Prometheus, error) {
	logPath := filepath.Join(opts.Dir, "prometheus.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child holds its own descriptor
	cmd := exec.Command(opts.Bin,
		"--config.file="+opts.Config,
		"--storage.tsdb.path="+filepath.Join(opts.Dir, "prometheus-data"),
		"--web.listen-address="+opts.Addr,
		// The agents attach trace exemplars to their latency histograms.
		"--enable-feature=exemplar-storage",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", opts.Bin, err)
	}
	p := &Prometheus{URL: "http://" + opts.Addr, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, prometheusReadyTimeout)
	defer cancel()
	for {
		if ready(ctx, p.URL+"/-/ready") {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("prometheus exited before it was ready (%v); the end of its log %s:\n%s", p.err, logPath, tail(logPath, 10))
		case <-ctx.Done():
			p.Stop()
			return nil, fmt.Errorf("prometheus not ready on %s within %s: %w; the end of its log %s:\n%s", p.URL, prometheusReadyTimeout, ctx.Err(), logPath, tail(logPath, 10))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func ready(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Exited returns how Prometheus exited, or nil while it runs.
func (p *Prometheus) Exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return errors.New("exited")
		}
		return p.err
	default:
		return nil
	}
}

// prometheusStopTimeout is how long Stop lets Prometheus shut down (it
// writes its head block) before killing it.
const prometheusStopTimeout = 30 * time.Second

// Stop stops Prometheus (SIGTERM, then SIGKILL) and waits until it exited.
func (p *Prometheus) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(prometheusStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}
