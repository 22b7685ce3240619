package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-logr/logr"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/etcdpulse/etcdpulse/agent"
)

type flagValues struct {
	configFile  string
	configCheck bool
	endpoints   []string
	cacert      string
	cert        string
	key         string
	// web holds the flags exporter-toolkit's kingpinflag defines:
	// --web.listen-address, --web.config.file and (on Linux)
	// --web.systemd-socket.
	web                    *web.FlagConfig
	telemetryPath          string
	disableExporterMetrics bool
	enablePprof            bool
	logLevel               string
	logFormat              string
	dataDir                string
	walDir                 string
	probeDir               string
	metricsURL             string
	pidFile                string
	processName            string

	set map[string]*bool
}

func addRunCommand(app *kingpin.Application) (*kingpin.CmdClause, *flagValues) {
	f := &flagValues{set: map[string]*bool{}}
	cmd := app.Command("run", "Run the agent beside an etcd member (the default command).").Default()
	flag := func(name, help string) *kingpin.FlagClause {
		fc := cmd.Flag(name, help)
		f.set[name] = new(bool)
		fc.IsSetByUser(f.set[name])
		return fc
	}
	cmd.Flag("config.file", "YAML file with every setting; flags override it.").StringVar(&f.configFile)
	cmd.Flag("config.check", "Validate the configuration and the TLS files, then exit: 0 when valid, 1 when not.").BoolVar(&f.configCheck)
	flag("etcd.endpoints", "Client URL of the local etcd member; repeat or separate with commas to add members used only while the local one does not answer.").Default(agent.DefaultEndpoint).StringsVar(&f.endpoints)
	flag("etcd.cacert", "CA bundle to verify etcd's server certificate.").StringVar(&f.cacert)
	flag("etcd.cert", "Client certificate for etcd.").StringVar(&f.cert)
	flag("etcd.key", "Key of the client certificate for etcd.").StringVar(&f.key)
	// The web flags every Prometheus exporter has, from the helper that
	// defines them for all of them.
	f.web = kingpinflag.AddFlags(cmd, agent.DefaultListenAddress)
	for _, name := range []string{"web.listen-address", "web.config.file", "web.systemd-socket"} {
		f.set[name] = new(bool)
		if fc := cmd.GetFlag(name); fc != nil { // web.systemd-socket is Linux only
			fc.IsSetByUser(f.set[name])
		}
	}
	flag("web.telemetry-path", "Path under which to expose metrics.").Default(agent.DefaultTelemetryPath).StringVar(&f.telemetryPath)
	flag("web.disable-exporter-metrics", "Exclude the agent's own metrics about itself (go_*, process_*, promhttp_*).").BoolVar(&f.disableExporterMetrics)
	flag("web.enable-pprof", "Serve Go's runtime profiles of the agent under /debug/pprof/ (off by default).").BoolVar(&f.enablePprof)
	flag("log.level", "Only log messages with the given severity or above: debug, info, warn, error.").Default("info").StringVar(&f.logLevel)
	flag("log.format", "Output format of log messages: logfmt, json.").Default("logfmt").StringVar(&f.logFormat)
	flag("etcd.data-dir", "The member's data directory (etcd's --data-dir), for the fsync probe and the host collector.").Default(agent.DefaultDataDir).StringVar(&f.dataDir)
	flag("etcd.wal-dir", "The member's WAL directory (etcd's --wal-dir); default: the data directory's member/wal.").StringVar(&f.walDir)
	flag("disk.probe-dir", "Directory for the fsync probe's file, on the WAL's filesystem and outside member/; default: "+agent.DefaultProbeDirName+" beside the data directory (beside the WAL directory when --etcd.wal-dir is outside the data directory).").StringVar(&f.probeDir)
	flag("etcd.metrics-url", "The local member's own metrics URL (kubeadm: http://127.0.0.1:2381/metrics), read every 15 s to keep etcd's WAL fsync, backend commit and peer RTT histograms beside the agent's; default: not read.").StringVar(&f.metricsURL)
	flag("etcd.pid-file", "File holding the etcd process's PID, for its CPU, memory and file descriptor metrics; default: find the process by --etcd.process-name.").StringVar(&f.pidFile)
	flag("etcd.process-name", "Name of the etcd process, found among all processes (the agent needs etcd's PID namespace: hostPID in Kubernetes) when --etcd.pid-file is not set.").Default(agent.DefaultProcessName).StringVar(&f.processName)
	return cmd, f
}

// config merges the file (if any) with the flags the user set.
func (f *flagValues) config() (agent.Config, error) {
	cfg := agent.DefaultConfig()
	if f.configFile != "" {
		var err error
		if cfg, err = agent.LoadFile(f.configFile); err != nil {
			return cfg, err
		}
	}
	// Each flag the user set overrides its field of the file.
	overrides := map[string]func(){
		"etcd.endpoints":               func() { cfg.Etcd.Endpoints = splitList(f.endpoints) },
		"etcd.cacert":                  func() { cfg.Etcd.TLS.CAFile = f.cacert },
		"etcd.cert":                    func() { cfg.Etcd.TLS.CertFile = f.cert },
		"etcd.key":                     func() { cfg.Etcd.TLS.KeyFile = f.key },
		"web.listen-address":           func() { cfg.Web.ListenAddresses = *f.web.WebListenAddresses },
		"web.config.file":              func() { cfg.Web.ConfigFile = *f.web.WebConfigFile },
		"web.systemd-socket":           func() { cfg.Web.SystemdSocket = *f.web.WebSystemdSocket },
		"web.telemetry-path":           func() { cfg.Web.TelemetryPath = f.telemetryPath },
		"web.disable-exporter-metrics": func() { cfg.Web.DisableExporterMetrics = f.disableExporterMetrics },
		"web.enable-pprof":             func() { cfg.Web.EnablePprof = f.enablePprof },
		"log.level":                    func() { cfg.Log.Level = f.logLevel },
		"log.format":                   func() { cfg.Log.Format = f.logFormat },
		"etcd.data-dir":                func() { cfg.Etcd.DataDir = f.dataDir },
		"etcd.wal-dir":                 func() { cfg.Etcd.WALDir = f.walDir },
		"disk.probe-dir":               func() { cfg.Disk.ProbeDir = f.probeDir },
		"etcd.metrics-url":             func() { cfg.Etcd.MetricsURL = f.metricsURL },
		"etcd.pid-file":                func() { cfg.Host.PIDFile = f.pidFile },
		"etcd.process-name":            func() { cfg.Host.ProcessName = f.processName },
	}
	for name, apply := range overrides {
		if *f.set[name] {
			apply()
		}
	}
	return cfg, cfg.Validate()
}

func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func newLogger(c agent.LogConfig, w io.Writer) *slog.Logger {
	lvl, fmtv := promslog.NewLevel(), promslog.NewFormat()
	_ = lvl.Set(c.Level)
	_ = fmtv.Set(c.Format)
	return promslog.New(&promslog.Config{Level: lvl, Format: fmtv, Writer: w})
}

func runAgent(f *flagValues, stdout, stderr io.Writer) int {
	cfg, err := f.config()
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse: invalid configuration:\n%s\n", indent(err.Error()))
		return 1
	}
	logger := newLogger(cfg.Log, stderr)
	tp, shutdownTracing, running, err := newTracing(logger)
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse: invalid tracing configuration:\n%s\n", indent(err.Error()))
		return 1
	}
	defer shutdownTracing()
	// New reads the TLS files and builds the clients; it never waits for
	// etcd, so etcd down or refusing the agent is reported once running.
	a, err := agent.New(agent.Options{Config: cfg, Logger: logger, TracerProvider: tp})
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse: invalid configuration:\n%s\n", indent(err.Error()))
		return 1
	}
	if f.configCheck {
		if cfg.Web.SystemdSocket {
			// The sockets are systemd's to bind, when it starts the agent.
			fmt.Fprintln(stdout, "configuration is valid")
			return 0
		}
		return checkListen(cfg.Web.ListenAddresses, stdout, stderr)
	}
	running.Store(a)
	ls, err := listeners(cfg.Web)
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger.Info("starting etcdpulse", "version", version.Info(), "listen", agent.Addresses(ls))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Run(ctx) })
	g.Go(func() error { return agent.Serve(ctx, ls, cfg.Web.ConfigFile, a.Handler(), logger) })
	if err := g.Wait(); err != nil {
		logger.Error("etcdpulse stopped", "err", err)
		return 1
	}
	return 0
}

// checkListen ends --config.check: everything run does before serving has
// passed, and each listen address is bound once and released, so that an
// address this host does not have, or a port the agent may not bind,
// fails here rather than at startup. A port in use now passes with a
// note: the agent this configuration is meant for may hold it.
func checkListen(addrs []string, stdout, stderr io.Writer) int {
	var errs []string
	for i, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		switch {
		case err == nil:
			l.Close()
		case errors.Is(err, syscall.EADDRINUSE):
			fmt.Fprintf(stderr, "note: web.listen_addresses[%d] (--web.listen-address) %s is in use now; run needs it free\n", i, addr)
		default:
			errs = append(errs, fmt.Sprintf("web.listen_addresses[%d] (--web.listen-address): cannot listen on %s: %v", i, addr, errors.Unwrap(err)))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(stderr, "etcdpulse: invalid configuration:\n%s\n", indent(strings.Join(errs, "\n")))
		return 1
	}
	fmt.Fprintln(stdout, "configuration is valid")
	return 0
}

// listeners binds the listen addresses, or takes the sockets systemd passed
// (socket activation) with --web.systemd-socket.
func listeners(c agent.WebConfig) ([]net.Listener, error) {
	if c.SystemdSocket {
		return agent.SystemdListeners()
	}
	return agent.Listen(c.ListenAddresses)
}

// newTracing builds the tracer provider from the OTEL_* environment. The
// OpenTelemetry error handler and logger are process-wide, so they are set
// here, in the command, never in the agent library. running is where the
// agent goes once built: the exported resource names its member from it.
func newTracing(logger *slog.Logger) (trace.TracerProvider, func(), *atomic.Pointer[agent.Agent], error) {
	otel.SetErrorHandler(agent.NewErrorHandler(logger))
	otel.SetLogger(logr.FromSlogHandler(logger.Handler()))
	running := new(atomic.Pointer[agent.Agent])
	member := agent.LocalMemberOf(running)
	tp, shutdown, err := agent.NewTracerProvider(context.Background(), agent.TracingOptions{Logger: logger, Member: member})
	if err != nil {
		return nil, nil, nil, err
	}
	return tp, func() {
		// Bounded: with the collector gone, queued spans are dropped.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			logger.Debug("tracing shutdown", "err", err)
		}
	}, running, nil
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
