package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/etcdpulse/etcdpulse/agent"
)

// runFlags are the run command's flags: the configuration file, the check,
// and a flag per row of the configuration table.
type runFlags struct {
	configFile  string
	configCheck bool
	config      *configFlags
}

func addRunCommand(app *kingpin.Application) (*kingpin.CmdClause, *runFlags) {
	f := &runFlags{}
	cmd := app.Command("run", "Run the agent beside an etcd member (the default command).").Default()
	cmd.Flag("config.file", "YAML file with every setting; flags override it.").StringVar(&f.configFile)
	cmd.Flag("config.check", "Validate the configuration and the TLS files, then exit: 0 when valid, 1 when not.").BoolVar(&f.configCheck)
	f.config = addConfigFlags(cmd)
	return cmd, f
}

// load merges the file (if any) with the flags given, and validates.
func (f *runFlags) load() (fileConfig, error) {
	cfg := defaultFileConfig()
	if f.configFile != "" {
		var err error
		if cfg, err = loadFile(f.configFile); err != nil {
			return cfg, err
		}
	}
	f.config.apply(&cfg)
	return cfg, cfg.validate()
}

func newLogger(c logConfig, w io.Writer) *slog.Logger {
	lvl, fmtv := promslog.NewLevel(), promslog.NewFormat()
	_ = lvl.Set(c.Level)
	_ = fmtv.Set(c.Format)
	return promslog.New(&promslog.Config{Level: lvl, Format: fmtv, Writer: w})
}

func runAgent(f *runFlags, stdout, stderr io.Writer) int {
	cfg, err := f.load()
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse: invalid configuration:\n%s\n", indent(err.Error()))
		return 1
	}
	logger := newLogger(cfg.Log, stderr)
	for _, name := range f.config.deprecated {
		logger.Warn("a deprecated flag was used; it will be removed", "flag", "--"+name)
	}
	var running atomic.Pointer[agent.Agent]
	tp, shutdownTracing, err := newTracing(logger, &running)
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse: invalid tracing configuration:\n%s\n", indent(err.Error()))
		return 1
	}
	defer shutdownTracing()
	a, h, err := newAgent(cfg, logger, tp)
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
	logger.Info("starting etcdpulse", "version", version.Info(), "listen", addrString(ls))
	if err := a.Start(ctx); err != nil {
		logger.Error("etcdpulse stopped", "err", err)
		return 1
	}
	defer a.Stop()
	if err := serve(ctx, ls, cfg.Web.ConfigFile, h, logger); err != nil {
		logger.Error("etcdpulse stopped", "err", err)
		return 1
	}
	return 0
}

// newAgent builds the agent of a configuration, and the handler that
// serves it. New reads the TLS files and builds the clients; it never waits
// for etcd, so etcd down or refusing the agent is reported once running.
func newAgent(cfg fileConfig, logger *slog.Logger, tp trace.TracerProvider) (*agent.Agent, http.Handler, error) {
	reg := newRegistry(cfg.Web)
	a, err := agent.New(agent.Options{Config: &cfg.Config, Logger: logger, TracerProvider: tp, Registerer: reg})
	if err != nil {
		return nil, nil, err
	}
	return a, newHandler(a, reg, cfg.Web, logger), nil
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
func listeners(c webConfig) ([]net.Listener, error) {
	if c.SystemdSocket {
		return systemdListeners()
	}
	return listenAll(c.ListenAddresses)
}

// newTracing builds the tracer provider from the OTEL_* environment. The
// OpenTelemetry error handler and logger are process-wide, so they are set
// here, in the command, never in the agent library. running is where the
// agent goes once built: the exported resource names its member from it.
func newTracing(logger *slog.Logger, running *atomic.Pointer[agent.Agent]) (trace.TracerProvider, func(), error) {
	otel.SetErrorHandler(newErrorHandler(logger, 5*time.Minute, time.Now))
	otel.SetLogger(logr.FromSlogHandler(logger.Handler()))
	tp, shutdown, err := newTracerProvider(context.Background(), logger, localMemberOf(running))
	if err != nil {
		return nil, nil, err
	}
	return tp, func() {
		// Bounded: with the collector gone, queued spans are dropped.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			logger.Debug("tracing shutdown", "err", err)
		}
	}, nil
}

// localMemberOf returns the local member's name and ID for the agent that
// p will hold: the tracer provider exists before the agent does, so the
// agent is looked up at each call. "" and 0 until p holds an agent that
// knows its local member.
func localMemberOf(p *atomic.Pointer[agent.Agent]) func() (name string, id uint64) {
	return func() (string, uint64) {
		if a := p.Load(); a != nil {
			for _, m := range a.View().Members {
				if m.Local {
					return m.Name, m.ID
				}
			}
		}
		return "", 0
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
