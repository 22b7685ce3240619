package agent

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/etcdpulse/etcdpulse/collectors"
)

// host reads, at scrape time, the filesystems and block devices of etcd's
// data and WAL directories, the node's CPU iowait, and the etcd process.
var host = capability{
	name:  "host",
	title: "Host and the etcd process",
	settings: []Setting{
		setting("host.enabled", "Read the host and the etcd process.", func(c *Config) any { return &c.Host.Enabled }),
		deprecated(setting("host.pid_file", "File holding the etcd process's PID, read at each scrape; when set, host.process_name is not used.",
			func(c *Config) any { return &c.Host.PIDFile }), "etcd.pid-file"),
		deprecated(setting("host.process_name", "Name of the etcd process (as in /proc/PID/comm), found among all processes (the agent needs etcd's PID namespace: hostPID in Kubernetes); of several, the one listening on the local member's client port. Empty, with no host.pid_file: no process metrics.",
			func(c *Config) any { return &c.Host.ProcessName }), "etcd.process-name"),
	},
	metrics:  append(append([]collectors.Metric(nil), collectors.HostMetrics...), collectors.ProcessMetrics...),
	defaults: func(c *Config) { c.Host = defaultHostConfig() },
	validate: func(c *Config, bad badFunc) { c.Host.validate(bad) },
	wire:     wireHost,
}

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

func defaultHostConfig() HostConfig {
	return HostConfig{Enabled: true, ProcessName: DefaultProcessName}
}

// validate reports problems through bad.
func (h HostConfig) validate(bad badFunc) {
	if !h.Enabled {
		return
	}
	// The kernel keeps 15 bytes of a process name; a longer name is
	// matched through its command line, a path never.
	if strings.ContainsRune(h.ProcessName, '/') {
		bad("host.process_name", "%q is a path: give the process name only, such as %q", h.ProcessName, DefaultProcessName)
	}
}

// wireHost adds the host collector and, when the etcd process is to be
// found, client_golang's process collector for it.
func wireHost(w *wiring) error {
	h := w.cfg.Host
	if !h.Enabled {
		return nil
	}
	w.collect(collectors.NewHostCollector(collectors.HostOptions{
		DataDir: w.cfg.Etcd.DataDir,
		WALDir:  w.cfg.Etcd.WAL(),
		Logger:  w.logger.With("collector", "host"),
	}))
	if h.PIDFile != "" || h.ProcessName != "" {
		w.process = collectors.NewEtcdProcessCollector(collectors.ProcessOptions{
			PIDFile:     h.PIDFile,
			ProcessName: h.ProcessName,
			ClientPort:  clientPort(w.cfg.Etcd.Endpoints[0]),
			DataDir:     w.cfg.Etcd.DataDir,
			Logger:      w.logger.With("collector", "process"),
		})
		w.collect(w.process)
	}
	return nil
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
