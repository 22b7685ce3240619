package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
)

func newHandler(a *Agent) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelError),
		ErrorHandling:     promhttp.ContinueOnError,
	}))
	// Recent probe spans, by name and latency, without any collector.
	mux.Handle("/debug/tracez", a.tracez)
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
			{Address: "/metrics", Text: "Metrics"},
			{Address: "/healthz", Text: "Health", Description: "the agent is alive"},
			{Address: "/readyz", Text: "Readiness", Description: "the first probe round is done"},
			{Address: "/debug/tracez", Text: "Traces", Description: "recent probe spans (zpages)"},
		},
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
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
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
