// Package agent runs etcdpulse beside one etcd member: it probes the
// member and the cluster around it and exports the verdicts as Prometheus
// metrics.
//
// Beside an etcd process, build an agent with New; inside a program that
// embeds etcd, attach one to the embedded member with Attach. Then:
//
//	a, err := agent.New(agent.Options{Endpoints: []string{"https://127.0.0.1:2379"}, TLS: tlsConfig, Logger: logger})
//	if err != nil { ... }          // only a bad configuration fails here
//	a.Start(ctx)                   // probes in the background until Stop
//	defer a.Stop()
//	mux.Handle("/etcdpulse/", http.StripPrefix("/etcdpulse", a.Handler()))
//
// Handler serves /metrics, /healthz, /readyz, /maintenance (the maintenance
// gate) and /debug/tracez, and
// nothing at "/". etcd failing is reported in the metrics, never returned.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// Options are what an agent is built from. Everything is optional but the
// local member's client URL.
type Options struct {
	// Endpoints are client URLs, the local member's first; set, they
	// replace Config.Etcd.Endpoints.
	Endpoints []string
	// TLS is the client TLS for etcd; set, it replaces the files of
	// Config.Etcd.TLS.
	TLS *tls.Config
	// DataDir and WALDir are the member's --data-dir and --wal-dir; set,
	// they replace Config.Etcd's.
	DataDir, WALDir string
	// Config is every other setting; nil is DefaultConfig().
	Config *Config
	// Logger receives the agent's log; nil discards it.
	Logger *slog.Logger
	// TracerProvider receives a trace per probe round, a span per probe
	// run and per etcd RPC; nil records nothing. An OpenTelemetry SDK
	// provider also feeds /debug/tracez.
	TracerProvider trace.TracerProvider
	// Registerer takes the agent's metrics; nil gives the agent a
	// registry of its own. Handler serves /metrics from it when it is
	// also a prometheus.Gatherer (a *prometheus.Registry is).
	Registerer prometheus.Registerer
}

// Agent probes one etcd member and the cluster around it.
type Agent struct {
	cfg      Config
	logger   *slog.Logger
	gatherer prometheus.Gatherer
	targets  *probes.Targets
	runner   *probes.Runner
	tracez   http.Handler
	untrace  func()
	// caps are the capabilities' collectors, for the tests that check
	// each exports what it declares.
	caps []collectors.CapabilityCollectors
	// stops undo what the capabilities did in etcd, at Stop.
	stops []func(context.Context) error
	// checks are the capabilities' lines of a check report.
	checks []checkFunc

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New builds an agent: it checks the configuration, loads the TLS files and
// creates clients, without contacting etcd (Start does). Only a bad
// configuration is an error.
func New(opts Options) (*Agent, error) {
	return build(opts, nil)
}

func build(opts Options, local probes.LocalStatus) (*Agent, error) {
	cfg := DefaultConfig()
	if opts.Config != nil {
		cfg = *opts.Config
	}
	if opts.Endpoints != nil {
		cfg.Etcd.Endpoints = opts.Endpoints
	}
	if opts.DataDir != "" {
		cfg.Etcd.DataDir = opts.DataDir
	}
	if opts.WALDir != "" {
		cfg.Etcd.WALDir = opts.WALDir
	}
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
		if tlsCfg, err = clientTLS(cfg.Etcd.TLS); err != nil {
			return nil, err
		}
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	reg := opts.Registerer
	var gatherer prometheus.Gatherer
	if reg == nil {
		own := prometheus.NewRegistry()
		reg, gatherer = own, own
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		gatherer = g
	}

	targets, err := probes.NewTargets(cfg.Etcd.Endpoints, probes.ClientConfig{
		TLS:         tlsCfg,
		DialTimeout: time.Duration(cfg.Etcd.DialTimeout),
		Username:    cfg.Etcd.Username,
		Password:    cfg.Etcd.Password,
		// Only the caller's: without one, no per-RPC handler at all.
		TracerProvider: opts.TracerProvider,
	}, logger)
	if err != nil {
		return nil, fieldError("etcd.endpoints", err.Error())
	}
	w := &wiring{cfg: cfg, tls: tlsCfg, logger: logger, state: probes.NewState(), targets: targets, view: &runnerRef{}, etcdMetrics: &etcdMetricsRef{}, local: local, figures: map[string]func() (float64, bool){}, tracer: tp.Tracer("github.com/etcdpulse/etcdpulse/agent")}
	var scheduled []probes.Scheduled
	var caps []collectors.CapabilityCollectors
	for _, cp := range capabilities {
		w.probes, w.collectors = nil, nil
		if err := cp.wire(w); err != nil {
			targets.Close()
			return nil, fmt.Errorf("%s: %w", cp.name, err)
		}
		scheduled = append(scheduled, w.probes...)
		caps = append(caps, collectors.CapabilityCollectors{Name: cp.name, Collectors: w.collectors})
	}
	tick := time.Duration(cfg.Probes.Interval)
	for _, s := range scheduled {
		tick = min(tick, s.Schedule.Interval)
	}
	duration, failures := collectors.NewProbeDuration(), collectors.NewProbeFailures()
	runner := probes.NewRunner(probes.RunnerOptions{
		Targets:  targets,
		State:    w.state,
		Probes:   scheduled,
		Tick:     tick,
		Logger:   logger,
		Tracer:   tp.Tracer("github.com/etcdpulse/etcdpulse/probes"),
		Duration: duration,
		Failures: failures,
		Figures:  figures(w.figures),
		OnView:   onViews(w.views),
	})
	w.view.Runner = runner
	for _, c := range []prometheus.Collector{
		versioncollector.NewCollector("etcdpulse"),
		duration, failures,
		collectors.NewRequestsCollector(targets),
		collectors.NewCapabilitiesCollector(caps),
	} {
		if err := reg.Register(c); err != nil {
			targets.Close()
			return nil, fmt.Errorf("registering the agent's metrics: %w", err)
		}
	}
	a := &Agent{cfg: cfg, logger: logger, gatherer: gatherer, targets: targets, runner: runner, caps: caps, stops: w.stops, checks: w.checks}
	a.tracez, a.untrace = tracez(tp)
	return a, nil
}

// onViews calls each capability's view hook.
func onViews(fs []func(probes.View)) func(probes.View) {
	if len(fs) == 0 {
		return nil
	}
	return func(v probes.View) {
		for _, f := range fs {
			f(v)
		}
	}
}

// figures reads the capabilities' figures for a change event.
func figures(fs map[string]func() (float64, bool)) func() map[string]float64 {
	if len(fs) == 0 {
		return nil
	}
	return func() map[string]float64 {
		out := map[string]float64{}
		for name, f := range fs {
			if v, ok := f(); ok {
				out[name] = v
			}
		}
		return out
	}
}

// Start starts probing in the background. It returns at once; etcd failing
// is reported in the metrics, never returned. The agent stops when ctx is
// done or Stop is called.
func (a *Agent) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done != nil {
		return errors.New("agent already started")
	}
	ctx, a.cancel = context.WithCancel(ctx)
	a.done = make(chan struct{})
	a.logger.Info("probing etcd", "endpoints", a.cfg.Etcd.Endpoints, "interval", a.cfg.Probes.Interval, "timeout", a.cfg.Probes.Timeout)
	go func() {
		defer close(a.done)
		a.runner.Run(ctx)
	}()
	return nil
}

// Stop stops probing, waits for the runs in flight (each ends by its
// deadline, a sync stuck on a hung disk included) and closes the
// connections to etcd.
func (a *Agent) Stop() error {
	a.mu.Lock()
	cancel, done := a.cancel, a.done
	a.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	// The runs are over: remove what the agent wrote, within a bound, so
	// that a stop never waits on a member that does not answer.
	ctx, cancelStops := context.WithTimeout(context.Background(), stopTimeout)
	for _, stop := range a.stops {
		if err := stop(ctx); err != nil {
			a.logger.Warn("cleaning up at stop", "err", err)
		}
	}
	cancelStops()
	a.untrace()
	a.targets.Close()
	return nil
}

// stopTimeout bounds the clean-up at Stop.
const stopTimeout = 2 * time.Second

// View returns the cluster as the last probe round saw it.
func (a *Agent) View() probes.View { return a.runner.View() }

// Ready reports whether the first probe round is done.
func (a *Agent) Ready() bool { return a.runner.Ready() }

// Handler serves /metrics (when the agent's registry can be gathered),
// /healthz, /readyz, /maintenance and /debug/tracez, relative to wherever it is mounted,
// and nothing else: mount it under any prefix with http.StripPrefix.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	if a.gatherer != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(a.gatherer, promhttp.HandlerOpts{
			EnableOpenMetrics: true,
			ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelError),
			ErrorHandling:     promhttp.ContinueOnError,
		}))
	}
	// Recent probe spans, by name and latency, without any collector.
	mux.Handle("/debug/tracez", a.tracez)
	// Whether a member can be taken down now.
	mux.HandleFunc("GET /maintenance", a.serveMaintenance)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.Ready() {
			http.Error(w, "first probe round not done yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Capability describes one capability of the agent for its documentation:
// the configuration rows and metrics it declares.
type Capability struct {
	Name, Title string
	Settings    []Setting
	Metrics     []collectors.Metric
}

// Capabilities lists what the agent is made of, in the order of the
// documentation: the agent itself (how it reaches etcd, its own metrics),
// then each capability.
func Capabilities() []Capability {
	out := []Capability{{Name: "agent", Title: "The agent", Settings: coreSettings, Metrics: collectors.AgentMetrics}}
	for _, cp := range capabilities {
		out = append(out, Capability{Name: cp.name, Title: cp.title, Settings: cp.settings, Metrics: cp.metrics})
	}
	return out
}

// Catalogue lists every metric the agent can export, in the order of
// Capabilities.
func Catalogue() []collectors.Metric {
	var rows []collectors.Metric
	for _, c := range Capabilities() {
		rows = append(rows, c.Metrics...)
	}
	return rows
}

// clientTLS builds the TLS configuration for etcd clients from files. The
// client certificate is read again at each handshake, so a rotated
// certificate is picked up without a restart.
func clientTLS(c TLSConfig) (*tls.Config, error) {
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fieldError("etcd.tls.ca_file", err.Error())
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return nil, fieldError("etcd.tls.ca_file", fmt.Sprintf("%q holds no PEM certificate", c.CAFile))
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
			return nil, fieldError("etcd.tls.cert_file", fmt.Sprintf("cannot load the client certificate %q with key %q (etcd.tls.key_file): %v", c.CertFile, c.KeyFile, err))
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
			return nil, fieldError("etcd.tls.cert_file", err.Error())
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
