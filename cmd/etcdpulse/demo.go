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
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/mattn/go-isatty"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/etcdpulse/etcdpulse/agent"
	"github.com/etcdpulse/etcdpulse/alerts"
	"github.com/etcdpulse/etcdpulse/internal/demo"
)

type demoValues struct {
	host           string
	port           int
	chaos          bool
	chaosInterval  time.Duration
	chaosDowntime  time.Duration
	statusInterval time.Duration
	promConfig     string
	withPrometheus string
	prometheusPort int
	duration       time.Duration
}

func addDemoCommand(app *kingpin.Application) (*kingpin.CmdClause, *demoValues) {
	f := &demoValues{}
	cmd := app.Command("demo", "Run a 3-member etcd cluster in this process with one agent per member, and show what the agents see.")
	cmd.Flag("web.host", "Loopback address the three agents (and --with-prometheus) serve on.").Default("127.0.0.1").StringVar(&f.host)
	cmd.Flag("web.port", "Port of the first agent; the others take the next two.").Default("12379").IntVar(&f.port)
	cmd.Flag("chaos", "Periodically kill a member (every other time the leader) and restart it.").BoolVar(&f.chaos)
	cmd.Flag("chaos.interval", "Time between two chaos faults.").Default("30s").DurationVar(&f.chaosInterval)
	cmd.Flag("chaos.downtime", "How long a killed member stays down.").Default("10s").DurationVar(&f.chaosDowntime)
	cmd.Flag("status.interval", "How often to print the status screen.").Default("2s").DurationVar(&f.statusInterval)
	cmd.Flag("prometheus.config", "Where to write a Prometheus configuration that scrapes the three agents; the alert rules go beside it as "+demo.RulesFileName+" (default: in the demo's temporary directory).").StringVar(&f.promConfig)
	cmd.Flag("with-prometheus", "Also run the Prometheus server binary at PATH on that configuration, with its data in the demo's temporary directory, until the demo stops.").PlaceHolder("PATH").StringVar(&f.withPrometheus)
	cmd.Flag("prometheus.port", "Port of the Prometheus that --with-prometheus starts, on --web.host.").Default("9090").IntVar(&f.prometheusPort)
	cmd.Flag("duration", "Stop by itself after this long (0: run until Ctrl-C).").Default("0s").DurationVar(&f.duration)
	return cmd, f
}

// validate checks the flags that need no I/O.
func (f *demoValues) validate() error {
	if ip := net.ParseIP(f.host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--web.host %q must be a loopback address such as 127.0.0.1", f.host)
	}
	if f.port < 1 || f.port > 65535-2 {
		return fmt.Errorf("--web.port %d: expected a port from 1 to 65533 (the three agents take it and the next two)", f.port)
	}
	positive := []struct {
		flag string
		d    time.Duration
		need bool
	}{
		{"--status.interval", f.statusInterval, true},
		{"--chaos.interval", f.chaosInterval, f.chaos},
		{"--chaos.downtime", f.chaosDowntime, f.chaos},
	}
	for _, p := range positive {
		if p.need && p.d <= 0 {
			return fmt.Errorf("%s %s: expected a positive duration such as 10s", p.flag, p.d)
		}
	}
	if f.duration < 0 {
		return fmt.Errorf("--duration %s: expected 0 (run until Ctrl-C) or a positive duration", f.duration)
	}
	if f.withPrometheus != "" {
		if f.prometheusPort < 1 || f.prometheusPort > 65535 {
			return fmt.Errorf("--prometheus.port %d: expected a port from 1 to 65535", f.prometheusPort)
		}
		if f.prometheusPort >= f.port && f.prometheusPort <= f.port+2 {
			return fmt.Errorf("--prometheus.port %d is one of the agents' ports (--web.port %d and the next two): pick another port", f.prometheusPort, f.port)
		}
	}
	return nil
}

// listenError words agent.Listen's error for the demo, whose agents'
// addresses come from --web.port, not --web.listen-address.
func (f *demoValues) listenError(err error) string {
	var le *listenError
	switch {
	case errors.As(err, &le) && le.InUse():
		return fmt.Sprintf("--web.port %d: %s is already in use by another process; pick another port (the three agents take --web.port and the next two)", f.port, le.Addr)
	case errors.As(err, &le):
		return fmt.Sprintf("--web.port %d: cannot listen on %s: %v", f.port, le.Addr, le.Err)
	}
	return fmt.Sprintf("--web.port %d: %v", f.port, err)
}

func runDemo(f *demoValues, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "etcdpulse demo: "+format+"\n", args...)
		return 1
	}
	if err := f.validate(); err != nil {
		return fail("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	// Check what can fail fast before starting etcd.
	var promAddr string
	if f.withPrometheus != "" {
		if err := demo.CheckPrometheusBinary(ctx, f.withPrometheus); err != nil {
			return fail("--with-prometheus: %v", err)
		}
		promAddr = net.JoinHostPort(f.host, strconv.Itoa(f.prometheusPort))
		if err := demo.PortFree(promAddr); err != nil {
			return fail("--prometheus.port %d: %v; pick another port", f.prometheusPort, err)
		}
	}
	var addrs []string
	for i := range 3 {
		addrs = append(addrs, net.JoinHostPort(f.host, strconv.Itoa(f.port+i)))
	}
	ls, err := listenAll(addrs)
	if err != nil {
		return fail("%s", f.listenError(err))
	}
	// Serve closes each listener when it returns; this closes those never
	// served when the demo fails on its way up.
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()

	dir, err := os.MkdirTemp("", "etcdpulse-demo-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(dir)
	fmt.Fprint(stdout, fit(fmt.Sprintf("Starting a 3-member etcd cluster in %s ...", dir), statusWidth)+"\n")
	cluster, err := demo.StartCluster(ctx, dir, 3)
	if err != nil {
		return fail("%v", err)
	}
	defer cluster.Close()
	// What on-call would run against it: the agent finds the other
	// members from the member list.
	fmt.Fprint(stdout, fit("Check it: etcdpulse check --etcd.endpoints="+cluster.Members[0].ClientURL, statusWidth)+"\n")
	// The members run in this process: its PID is etcd's, for the agents'
	// process metrics.
	pidFile := filepath.Join(dir, "etcd.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fail("%v", err)
	}

	var tps []*sdktrace.TracerProvider
	defer func() {
		for _, tp := range tps {
			_ = tp.Shutdown(context.Background())
		}
	}()
	// Everything below runs until ctx ends or the demo fails; then it is
	// stopped and waited for before the cluster closes.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	logger := slog.New(slog.DiscardHandler)
	var agents []*agent.Agent
	var registries []*prometheus.Registry
	for i, m := range cluster.Members {
		cfg := agent.DefaultConfig()
		// A probe directory of its own beside the member's data directory
		// (which Attach finds, with its client and metrics URLs), as on
		// separate nodes, so that the fsync probe measures the demo's
		// disk (it refuses, correctly, where the temp dir is tmpfs).
		cfg.Disk.ProbeDir = m.ProbeDir
		cfg.Host.PIDFile = pidFile
		// Spans stay in memory, with no exporter: /debug/tracez shows them.
		tp := sdktrace.NewTracerProvider()
		tps = append(tps, tp)
		reg := newRegistry(webConfig{})
		// Attached as a program that embeds etcd would: the member's own
		// status is read in process. The local member first; the others
		// help while it is down.
		a, err := agent.Attach(m.Etcd(), agent.Options{
			Endpoints:      append([]string{m.ClientURL}, without(cluster.ClientURLs(), m.ClientURL)...),
			Config:         &cfg,
			Logger:         logger,
			TracerProvider: tp,
			Registerer:     reg,
		})
		if err != nil {
			return fail("%v", err)
		}
		agents, registries = append(agents, a), append(registries, reg)
		if err := a.Start(ctx); err != nil {
			return fail("%v", err)
		}
		defer a.Stop()
		h := newHandler(a, reg, webConfig{TelemetryPath: defaultTelemetryPath}, logger)
		wg.Add(1)
		go func() { defer wg.Done(); _ = serve(ctx, ls[i:i+1], "", h, logger) }()
	}

	promPath := f.promConfig
	if promPath == "" {
		promPath = filepath.Join(dir, "prometheus.yml")
	}
	rules, err := alerts.RuleFile()
	if err != nil {
		return fail("%v", err)
	}
	if _, err := demo.WritePrometheusConfig(promPath, addrs, rules); err != nil {
		return fail("--prometheus.config: %v", err)
	}
	var prom *demo.Prometheus
	if f.withPrometheus != "" {
		fmt.Fprintf(stdout, "Starting Prometheus on %s ...\n", promAddr)
		prom, err = demo.StartPrometheus(ctx, demo.PrometheusOptions{Bin: f.withPrometheus, Config: promPath, Dir: dir, Addr: promAddr})
		if err != nil {
			return fail("--with-prometheus: %v", err)
		}
		defer prom.Stop()
	}

	events := newEventLog(6)
	if f.chaos {
		events.plan("fault", time.Now().Add(f.chaosInterval))
		wg.Add(1)
		go func() { defer wg.Done(); runChaos(ctx, cluster, f, events) }()
	}
	// The first screen waits until every agent has probed every member.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !allReady(agents); {
		time.Sleep(100 * time.Millisecond)
	}
	tty := false
	if f, ok := stdout.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	board := &statusBoard{cluster: cluster, agents: agents, registries: registries, addrs: addrs, promConfig: promPath, prom: prom, chaos: f.chaos, events: events}
	tick := time.NewTicker(f.statusInterval)
	defer tick.Stop()
	for {
		fmt.Fprint(stdout, board.screen(time.Now()).render(tty))
		select {
		case <-ctx.Done():
			fmt.Fprint(stdout, "\n"+fit("Stopping agents and etcd, removing "+dir, statusWidth)+"\n")
			return 0
		case <-tick.C:
		}
	}
}

func allReady(agents []*agent.Agent) bool {
	for _, a := range agents {
		if v := a.View(); !a.Ready() || !v.MembershipKnown || !v.HealthKnown {
			return false
		}
	}
	return true
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

// runChaos kills a member every interval, the leader every other time, and
// restarts it after the downtime.
func runChaos(ctx context.Context, c *demo.Cluster, f *demoValues, events *eventLog) {
	for n := 0; ; n++ {
		if n > 0 {
			events.plan("fault", time.Now().Add(f.chaosInterval))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.chaosInterval):
		}
		// Even rounds take the leader, odd ones a follower, in turn.
		var leader *demo.Member
		var followers []*demo.Member
		for _, m := range c.Members {
			if m.IsLeader() {
				leader = m
			} else {
				followers = append(followers, m)
			}
		}
		victim, what := followers[(n/2)%len(followers)], "follower"
		if n%2 == 0 && leader != nil {
			victim, what = leader, "leader"
		}
		events.add("chaos: killing %s %s", what, victim.Name)
		events.plan("restart of "+victim.Name, time.Now().Add(f.chaosDowntime))
		victim.Kill()
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.chaosDowntime):
		}
		if err := c.Restart(ctx, victim); err != nil {
			events.add("chaos: restart of %s failed: %v", victim.Name, err)
			continue
		}
		events.add("chaos: restarted %s", victim.Name)
	}
}

// eventLog keeps the last chaos events and the next one planned.
type eventLog struct {
	mu     sync.Mutex
	max    int
	lines  []string
	next   string
	nextAt time.Time
}

func newEventLog(n int) *eventLog { return &eventLog{max: n} }

func (e *eventLog) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines = append(e.lines, time.Now().Format("15:04:05 ")+fmt.Sprintf(format, args...))
	if len(e.lines) > e.max {
		e.lines = e.lines[len(e.lines)-e.max:]
	}
}

// plan records what chaos does next, and when.
func (e *eventLog) plan(what string, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.next, e.nextAt = what, at
}

func (e *eventLog) snapshot() (lines []string, next string, nextAt time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.lines...), e.next, e.nextAt
}
