package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/etcdpulse/etcdpulse/agent"
)

// newRegistry is the process's one registry: the agent's metrics and,
// unless they are off, the process's own (go_*, process_*).
func newRegistry(w webConfig) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	if !w.DisableExporterMetrics {
		// The agent's own process, as every Prometheus exporter reports it.
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return reg
}

// newHandler serves the metrics on the telemetry path (counting its own
// requests, promhttp_metric_handler_*, unless the exporter metrics are
// off), the agent's health and trace pages, profiles when enabled, and a
// landing page at "/".
func newHandler(a *agent.Agent, reg *prometheus.Registry, w webConfig, logger *slog.Logger) http.Handler {
	var metrics http.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling:     promhttp.ContinueOnError,
	})
	if !w.DisableExporterMetrics {
		metrics = promhttp.InstrumentMetricHandler(reg, metrics)
	}
	mux := http.NewServeMux()
	mux.Handle(w.TelemetryPath, metrics)
	for _, path := range []string{"/healthz", "/readyz", "/maintenance", "/debug/tracez"} {
		mux.Handle(path, a.Handler())
	}
	if w.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "etcdpulse",
		Description: "Health-monitoring agent for etcd: leader, quorum and member health, probed actively.",
		Version:     version.Info(),
		Links: []web.LandingLinks{
			{Address: w.TelemetryPath, Text: "Metrics"},
			{Address: "/healthz", Text: "Health", Description: "the agent is alive"},
			{Address: "/readyz", Text: "Readiness", Description: "the first probe round is done"},
			{Address: "/maintenance", Text: "Maintenance gate", Description: "can this member be taken down now? 200 yes, 409 no, with the reasons"},
			{Address: "/debug/tracez", Text: "Traces", Description: "recent probe spans (zpages)"},
		},
		// The page shows its box of /debug/pprof links unless told
		// "false": only offer them where they are served.
		Profiling: strconv.FormatBool(w.EnablePprof),
	})
	if err == nil {
		mux.Handle("/", landing)
	}
	return mux
}

// listenAll binds every address before anything is served, so that a taken
// port is an immediate, clear error.
func listenAll(addresses []string) ([]net.Listener, error) {
	var ls []net.Listener
	for _, addr := range addresses {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, &listenError{Addr: addr, Err: err}
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// systemdListeners returns the sockets systemd passed to the process
// (socket activation: LISTEN_PID, LISTEN_FDS and the descriptors from 3
// on), the way exporter-toolkit takes them for --web.systemd-socket.
func systemdListeners() ([]net.Listener, error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("--web.systemd-socket: %w", err)
	}
	var out []net.Listener
	for _, l := range ls {
		// A descriptor that is not a listening socket comes back nil.
		if l != nil {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--web.systemd-socket: systemd passed no listening socket (LISTEN_FDS and LISTEN_PID unset or not for this process); start etcdpulse from a systemd .socket unit, or drop the flag to bind --web.listen-address")
	}
	return out, nil
}

// listenError is an address Listen could not bind. Its message names
// --web.listen-address, the run command's flag; a command whose flags
// differ (the demo's --web.port) words its own from Addr and InUse.
type listenError struct {
	Addr string
	Err  error
}

// InUse reports whether another process holds the port.
func (e *listenError) InUse() bool { return errors.Is(e.Err, syscall.EADDRINUSE) }

func (e *listenError) Error() string {
	if e.InUse() {
		return fmt.Sprintf("--web.listen-address %s: the port is already in use by another process; pick another address", e.Addr)
	}
	return fmt.Sprintf("--web.listen-address %s: %v", e.Addr, e.Err)
}

func (e *listenError) Unwrap() error { return e.Err }

// serve serves h on the listeners, with TLS and authentication from an
// exporter-toolkit web config file when one is given, until ctx is done.
func serve(ctx context.Context, ls []net.Listener, webConfigFile string, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// net/http reports what it cannot hand to a handler (a failed TLS
		// handshake, a panic) here; without it those lines bypass the
		// structured logger in Go's default log format.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError),
	}
	flags := &web.FlagConfig{WebConfigFile: &webConfigFile, WebListenAddresses: new([]string), WebSystemdSocket: new(bool)}
	for _, l := range ls {
		*flags.WebListenAddresses = append(*flags.WebListenAddresses, l.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- web.ServeMultiple(ls, srv, flags, logger) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// addrString formats listener addresses for logs.
func addrString(ls []net.Listener) string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Addr().String())
	}
	return strings.Join(out, ",")
}
