package agent

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
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
)

// newMetricsHandler serves the registry; unless the exporter metrics are
// off, it also counts its own requests on it (promhttp_metric_handler_*).
func newMetricsHandler(reg *prometheus.Registry, disableExporterMetrics bool, logger *slog.Logger) http.Handler {
	var h http.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling:     promhttp.ContinueOnError,
	})
	if !disableExporterMetrics {
		h = promhttp.InstrumentMetricHandler(reg, h)
	}
	return h
}

func newHandler(a *Agent) http.Handler {
	wc := a.cfg.Web
	mux := http.NewServeMux()
	mux.Handle(wc.TelemetryPath, a.metrics)
	// Recent probe spans, by name and latency, without any collector.
	mux.Handle("/debug/tracez", a.tracez)
	if wc.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
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
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "etcdpulse",
		Description: "Health-monitoring agent for etcd: leader, quorum and member health, probed actively.",
		Version:     version.Info(),
		Links: []web.LandingLinks{
			{Address: wc.TelemetryPath, Text: "Metrics"},
			{Address: "/healthz", Text: "Health", Description: "the agent is alive"},
			{Address: "/readyz", Text: "Readiness", Description: "the first probe round is done"},
			{Address: "/debug/tracez", Text: "Traces", Description: "recent probe spans (zpages)"},
		},
		// The page shows its box of /debug/pprof links unless told
		// "false": only offer them where they are served.
		Profiling: strconv.FormatBool(wc.EnablePprof),
	})
	if err == nil {
		mux.Handle("/", landing)
	}
	return mux
}

// Listen binds every address before anything is served, so that a taken
// port is an immediate, clear error.
func Listen(addresses []string) ([]net.Listener, error) {
	var ls []net.Listener
	for _, addr := range addresses {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, &ListenError{Addr: addr, Err: err}
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// SystemdListeners returns the sockets systemd passed to the process
// (socket activation: LISTEN_PID, LISTEN_FDS and the descriptors from 3
// on), the way exporter-toolkit takes them for --web.systemd-socket.
func SystemdListeners() ([]net.Listener, error) {
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

// ListenError is an address Listen could not bind. Its message names
// --web.listen-address, the run command's flag; a command whose flags
// differ (the demo's --web.port) words its own from Addr and InUse.
type ListenError struct {
	Addr string
	Err  error
}

// InUse reports whether another process holds the port.
func (e *ListenError) InUse() bool { return errors.Is(e.Err, syscall.EADDRINUSE) }

func (e *ListenError) Error() string {
	if e.InUse() {
		return fmt.Sprintf("--web.listen-address %s: the port is already in use by another process; pick another address", e.Addr)
	}
	return fmt.Sprintf("--web.listen-address %s: %v", e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// Serve serves h on the listeners, with TLS and authentication from an
// exporter-toolkit web config file when one is given, until ctx is done.
func Serve(ctx context.Context, ls []net.Listener, webConfigFile string, h http.Handler, logger *slog.Logger) error {
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

// Addresses formats listener addresses for logs.
func Addresses(ls []net.Listener) string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Addr().String())
	}
	return strings.Join(out, ",")
}
