package agent

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// HostConfig configures the host and etcd-process collector, read at
// scrape time: the filesystems and block devices of etcd's data and WAL
// directories, the node's CPU iowait and the etcd process's resources.
type HostConfig struct {
	// Enabled turns the host collector on.
	Enabled bool `yaml:"enabled"`
	// PIDFile holds the etcd process's PID; when set, ProcessName is not
	// used.
	PIDFile string `yaml:"pid_file"`
	// ProcessName finds the etcd process by name (as in /proc/PID/comm);
	// empty, with no PIDFile, leaves the process metrics out.
	ProcessName string `yaml:"process_name"`
}

// DefaultProcessName is the etcd binary's name, which static pods and
// systemd units keep.
const DefaultProcessName = "etcd"

// etcd's own metrics (etcd.metrics_url): read in the background, never at
// scrape time. They are cumulative histograms, so the interval only sets
// how fresh they are, not what they hold; a Prometheus scrape interval
// suffices, and the response (a few hundred KiB) is read four times a
// minute.
const (
	etcdMetricsInterval = 15 * time.Second
	etcdMetricsTimeout  = 5 * time.Second
)

func defaultHostConfig() HostConfig {
	return HostConfig{Enabled: true, ProcessName: DefaultProcessName}
}

// validate reports problems through bad(field, flag, format, args...).
func (h HostConfig) validate(etcd EtcdConfig, bad func(field, flag, format string, args ...any)) {
	if raw := etcd.MetricsURL; raw != "" {
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("etcd.metrics_url", "etcd.metrics-url", "%q is not an http(s) URL, such as %q", raw, "http://127.0.0.1:2381/metrics")
		}
	}
	if !h.Enabled {
		return
	}
	// The kernel keeps 15 bytes of a process name; a longer name is
	// matched through its command line, a path never.
	if strings.ContainsRune(h.ProcessName, '/') {
		bad("host.process_name", "etcd.process-name", "%q is a path: give the process name only, such as %q", h.ProcessName, DefaultProcessName)
	}
}

// addHost wires the host collector and, when etcd.metrics_url is set, the
// reader of etcd's own metrics into a new agent.
func addHost(w *wiring) error {
	if h := w.cfg.Host; h.Enabled {
		cs := []prometheus.Collector{collectors.NewHostCollector(collectors.HostOptions{
			DataDir: w.cfg.Etcd.DataDir,
			WALDir:  w.cfg.Etcd.WAL(),
			Logger:  w.logger.With("collector", "host"),
		})}
		if h.PIDFile != "" || h.ProcessName != "" {
			cs = append(cs, collectors.NewEtcdProcessCollector(collectors.ProcessOptions{
				PIDFile:     h.PIDFile,
				ProcessName: h.ProcessName,
				ClientPort:  clientPort(w.cfg.Etcd.Endpoints[0]),
				DataDir:     w.cfg.Etcd.DataDir,
				Logger:      w.logger.With("collector", "process"),
			}))
		}
		for _, c := range cs {
			if err := w.registry.Register(c); err != nil {
				return fmt.Errorf("host: register metrics: %w", err)
			}
		}
	}
	return addEtcdMetrics(w)
}

// clientPort is the port of a client URL, 0 when it has none (a unix
// socket, or the scheme's default).
func clientPort(endpoint string) uint32 {
	u, err := url.Parse(endpoint)
	if err != nil {
		return 0
	}
	p, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil {
		return 0
	}
	return uint32(p)
}

func addEtcdMetrics(w *wiring) error {
	raw := w.cfg.Etcd.MetricsURL
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &FieldError{Field: "etcd.metrics_url", Flag: "etcd.metrics-url", Msg: fmt.Sprintf("%q is not an http(s) URL, such as %q", raw, "http://127.0.0.1:2381/metrics")}
	}
	var tlsCfg *tls.Config
	if u.Scheme == "https" {
		tlsCfg = w.tls
	}
	e := collectors.NewEtcdMetrics(collectors.EtcdMetricsOptions{
		URL:     raw,
		TLS:     tlsCfg,
		Members: w.targets,
		Logger:  w.logger,
	})
	if err := w.registry.Register(e); err != nil {
		return fmt.Errorf("etcd metrics: register metrics: %w", err)
	}
	*w.probes = append(*w.probes, probes.Scheduled{
		Probe:    e,
		Scope:    probes.LocalMember,
		Schedule: probes.Schedule{Interval: etcdMetricsInterval, Timeout: etcdMetricsTimeout},
	})
	return nil
}
