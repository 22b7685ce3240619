// Package agent wires etcdpulse together: configuration, the probes and
// their runner, the one Prometheus registry and the HTTP handler. A Go
// program that embeds etcd can run an Agent beside its member with New,
// Run and Handler; the etcdpulse command does the same.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// Options are what an Agent is built from.
type Options struct {
	Config Config
	// Logger is required for useful logs; nil discards them.
	Logger *slog.Logger
	// TracerProvider receives a trace per probe round, a span per probe
	// run and per etcd RPC; nil is no-op. When it is an OpenTelemetry SDK
	// provider, the agent adds a zpages span processor to it for
	// /debug/tracez, and removes it when Run returns. NewTracerProvider
	// builds one from the OTEL_* environment variables.
	TracerProvider trace.TracerProvider
	// TLS, when set, is used for etcd instead of Config.Etcd.TLS (for a
	// program that already holds its client TLS config).
	TLS *tls.Config
}

// Agent probes one etcd member and the cluster around it.
type Agent struct {
	cfg      Config
	logger   *slog.Logger
	registry *prometheus.Registry
	targets  *probes.Targets
	runner   *probes.Runner
	tracez   http.Handler
	untrace  func()
	// metrics serves the registry; built once, since it registers the
	// promhttp_metric_handler_* metrics that count its own requests.
	metrics http.Handler
}

// New builds an agent: it checks the configuration, loads the TLS files and
// creates (lazy) clients. It does not contact etcd; Run does.
func New(opts Options) (*Agent, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tlsCfg := opts.TLS
	if tlsCfg == nil && cfg.Etcd.TLS.Enabled() {
		var err error
		if tlsCfg, err = ClientTLS(cfg.Etcd.TLS); err != nil {
			return nil, err
		}
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}

	reg := prometheus.NewRegistry()
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            collectors.ProbeDuration.Name,
		Help:                            collectors.ProbeDuration.Help,
		Buckets:                         prometheus.ExponentialBuckets(0.0001, 2, 16), // 100 µs … 3.3 s
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  100,
		NativeHistogramMinResetDuration: time.Hour,
	}, collectors.ProbeDuration.Labels)
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: collectors.ProbeFailures.Name,
		Help: collectors.ProbeFailures.Help,
	}, collectors.ProbeFailures.Labels)

	targets, err := probes.NewTargets(cfg.Etcd.Endpoints, probes.ClientConfig{
		TLS:         tlsCfg,
		DialTimeout: time.Duration(cfg.Etcd.DialTimeout),
		Username:    cfg.Etcd.Username,
		Password:    cfg.Etcd.Password,
		// Only the caller's: without one, no per-RPC handler at all.
		TracerProvider: opts.TracerProvider,
	}, logger)
	if err != nil {
		return nil, &FieldError{Field: "etcd.endpoints", Flag: "etcd.endpoints", Msg: err.Error()}
	}
	state := probes.NewState()
	sched := func(s ProbeSchedule) probes.Schedule {
		i, t := cfg.Probes.Schedule(s)
		return probes.Schedule{Interval: i, Timeout: t}
	}
	scheduled := []probes.Scheduled{
		{Probe: &probes.MemberListProbe{Targets: targets}, Scope: probes.AnyMember, Schedule: sched(cfg.Probes.MemberList)},
		{Probe: &probes.StatusProbe{State: state, Targets: targets}, Scope: probes.EveryMember, Schedule: sched(cfg.Probes.Status)},
		{Probe: &probes.ReadProbe{Key: cfg.Etcd.KeyPrefix + "health"}, Scope: probes.EveryMember, Schedule: sched(cfg.Probes.Read)},
		{Probe: &probes.ReadProbe{Key: cfg.Etcd.KeyPrefix + "health", Serializable: true}, Scope: probes.EveryMember, Schedule: sched(cfg.Probes.Read)},
	}
	// Capabilities beyond the core add their probes and collectors here,
	// each from its own file.
	w := &wiring{cfg: cfg, tls: tlsCfg, logger: logger, state: state, targets: targets, registry: reg, probes: &scheduled}
	for _, add := range []func(*wiring) error{addDisk, addNetwork, addHost} {
		if err := add(w); err != nil {
			targets.Close()
			return nil, err
		}
	}
	tick := time.Duration(cfg.Probes.Interval)
	var everyMember []string
	for _, s := range scheduled {
		tick = min(tick, s.Schedule.Interval)
		if s.Scope == probes.EveryMember {
			everyMember = append(everyMember, s.Probe.Name())
		}
	}
	figs, onView := figureHooks(tp, reg)
	runner := probes.NewRunner(probes.RunnerOptions{
		Targets:  targets,
		State:    state,
		Probes:   scheduled,
		Tick:     tick,
		Logger:   logger,
		Tracer:   tp.Tracer("github.com/etcdpulse/etcdpulse/probes"),
		Duration: duration,
		Failures: failures,
		Figures:  figs,
		OnView:   onView,
	})
	reg.MustRegister(
		versioncollector.NewCollector("etcdpulse"),
		duration,
		failures,
		collectors.NewClusterCollector(runner, everyMember),
	)
	if !cfg.Web.DisableExporterMetrics {
		// The agent's own process, as every Prometheus exporter reports it.
		// Several agents in one process (the demo) each report it on their
		// own registry.
		reg.MustRegister(
			promcollectors.NewGoCollector(),
			promcollectors.NewProcessCollector(promcollectors.ProcessCollectorOpts{}),
		)
	}
	a := &Agent{cfg: cfg, logger: logger, registry: reg, targets: targets, runner: runner}
	a.metrics = newMetricsHandler(reg, cfg.Web.DisableExporterMetrics, logger)
	a.tracez, a.untrace = tracez(tp)
	return a, nil
}

// wiring is what a capability needs to add its probes and collectors.
type wiring struct {
	cfg Config
	// tls is the client TLS for etcd (from Options.TLS or the files), nil
	// for plain connections.
	tls      *tls.Config
	logger   *slog.Logger
	state    *probes.State
	targets  *probes.Targets
	registry *prometheus.Registry
	probes   *[]probes.Scheduled
}

// Run probes until ctx is done, then closes the etcd clients. It returns
// only then: etcd failing is reported in metrics, never returned.
func (a *Agent) Run(ctx context.Context) error {
	defer a.targets.Close()
	defer a.untrace()
	a.logger.Info("probing etcd", "endpoints", a.cfg.Etcd.Endpoints, "interval", a.cfg.Probes.Interval, "timeout", a.cfg.Probes.Timeout)
	a.runner.Run(ctx)
	return nil
}

// View returns the cluster as the last probe round saw it.
func (a *Agent) View() probes.View { return a.runner.View() }

// Ready reports whether the first probe round is done.
func (a *Agent) Ready() bool { return a.runner.Ready() }

// Registry is the agent's own Prometheus registry.
func (a *Agent) Registry() *prometheus.Registry { return a.registry }

// Config returns the configuration the agent runs with.
func (a *Agent) Config() Config { return a.cfg }

// ClientTLS builds the TLS configuration for etcd clients from files. The
// client certificate is read again at each handshake, so a rotated
// certificate is picked up without a restart.
func ClientTLS(c TLSConfig) (*tls.Config, error) {
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, &FieldError{Field: "etcd.tls.ca_file", Flag: "etcd.cacert", Msg: err.Error()}
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return nil, &FieldError{Field: "etcd.tls.ca_file", Flag: "etcd.cacert", Msg: fmt.Sprintf("%q holds no PEM certificate", c.CAFile)}
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
			return nil, &FieldError{Field: "etcd.tls.cert_file", Flag: "etcd.cert", Msg: fmt.Sprintf("cannot load the client certificate %q with key %q (--etcd.key): %v", c.CertFile, c.KeyFile, err)}
		}
		info := transport.TLSInfo{
			CertFile:           c.CertFile,
			KeyFile:            c.KeyFile,
			TrustedCAFile:      c.CAFile,
			ServerName:         c.ServerName,
			InsecureSkipVerify: c.InsecureSkipVerify,
		}
		cfg, err := info.ClientConfig()
		if err != nil {
			return nil, &FieldError{Field: "etcd.tls", Flag: "etcd.cert", Msg: err.Error()}
		}
		return cfg, nil
	}
	cfg := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, _ := os.ReadFile(c.CAFile)
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AppendCertsFromPEM(pem)
	}
	return cfg, nil
}

// Handler serves the metrics (on Config.Web.TelemetryPath, /metrics by
// default), /healthz, /readyz, /debug/tracez, /debug/pprof/ when
// Config.Web.EnablePprof is set, and a landing page.
func (a *Agent) Handler() http.Handler {
	return newHandler(a)
}
