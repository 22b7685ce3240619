package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/mattn/go-isatty"

	"github.com/etcdpulse/etcdpulse/agent"
	"github.com/etcdpulse/etcdpulse/internal/demo"
	"github.com/etcdpulse/etcdpulse/probes"
)

type demoValues struct {
	host           string
	port           int
	chaos          bool
	chaosInterval  time.Duration
	chaosDowntime  time.Duration
	statusInterval time.Duration
	promConfig     string
	duration       time.Duration
}

func addDemoCommand(app *kingpin.Application) (*kingpin.CmdClause, *demoValues) {
	f := &demoValues{}
	cmd := app.Command("demo", "Run a 3-member etcd cluster in this process with one agent per member, and show what the agents see.")
	cmd.Flag("web.host", "Loopback address the three agents serve on.").Default("127.0.0.1").StringVar(&f.host)
	cmd.Flag("web.port", "Port of the first agent; the others take the next two.").Default("12379").IntVar(&f.port)
	cmd.Flag("chaos", "Periodically kill a member (every other time the leader) and restart it.").BoolVar(&f.chaos)
	cmd.Flag("chaos.interval", "Time between two chaos faults.").Default("30s").DurationVar(&f.chaosInterval)
	cmd.Flag("chaos.downtime", "How long a killed member stays down.").Default("10s").DurationVar(&f.chaosDowntime)
	cmd.Flag("status.interval", "How often to print the status screen.").Default("2s").DurationVar(&f.statusInterval)
	cmd.Flag("prometheus.config", "Where to write a Prometheus configuration that scrapes the three agents (default: in the demo's temporary directory).").StringVar(&f.promConfig)
	cmd.Flag("duration", "Stop by itself after this long (0: run until Ctrl-C).").Default("0s").DurationVar(&f.duration)
	return cmd, f
}

func runDemo(f *demoValues, stdout, stderr io.Writer) int {
	if ip := net.ParseIP(f.host); ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(stderr, "etcdpulse demo: --web.host %q must be a loopback address such as 127.0.0.1\n", f.host)
		return 1
	}
	var addrs []string
	for i := range 3 {
		addrs = append(addrs, net.JoinHostPort(f.host, fmt.Sprint(f.port+i)))
	}
	// Bind the agents' ports before starting etcd, so a taken port fails fast.
	ls, err := agent.Listen(addrs)
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse demo: %v (use --web.port to move all three agents)\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}

	dir, err := os.MkdirTemp("", "etcdpulse-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse demo: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(stdout, "Starting a 3-member etcd cluster in %s ...\n", dir)
	cluster, err := demo.StartCluster(ctx, dir, 3)
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse demo: %v\n", err)
		for _, l := range ls {
			l.Close()
		}
		return 1
	}
	defer cluster.Close()

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var agents []*agent.Agent
	var wg sync.WaitGroup
	for i, m := range cluster.Members {
		cfg := agent.DefaultConfig()
		// The local member first; the others help while it is down.
		cfg.Etcd.Endpoints = append([]string{m.ClientURL}, without(cluster.ClientURLs(), m.ClientURL)...)
		cfg.Web.ListenAddresses = []string{addrs[i]}
		// The member's own data directory, so the fsync probe measures the
		// demo's disk (it refuses, correctly, where the temp dir is tmpfs).
		cfg.Etcd.DataDir = m.Dir
		a, err := agent.New(agent.Options{Config: cfg, Logger: logger})
		if err != nil {
			fmt.Fprintf(stderr, "etcdpulse demo: %v\n", err)
			return 1
		}
		agents = append(agents, a)
		wg.Add(2)
		go func() { defer wg.Done(); _ = a.Run(ctx) }()
		go func() { defer wg.Done(); _ = agent.Serve(ctx, ls[i:i+1], "", a.Handler(), logger) }()
	}

	promPath := f.promConfig
	if promPath == "" {
		promPath = filepath.Join(dir, "prometheus.yml")
	}
	if err := os.WriteFile(promPath, []byte(prometheusConfig(addrs)), 0o644); err != nil {
		fmt.Fprintf(stderr, "etcdpulse demo: --prometheus.config: %v\n", err)
		return 1
	}

	events := newEventLog(6)
	if f.chaos {
		wg.Add(1)
		go func() { defer wg.Done(); runChaos(ctx, cluster, f, events) }()
	}
	// The first screen waits for the first probe rounds.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !allReady(agents); {
		time.Sleep(100 * time.Millisecond)
	}
	tty := false
	if f, ok := stdout.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	tick := time.NewTicker(f.statusInterval)
	defer tick.Stop()
	for {
		printStatus(stdout, tty, cluster, agents, addrs, promPath, f.chaos, events)
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "\nStopping agents and etcd, removing", dir)
			wg.Wait()
			return 0
		case <-tick.C:
		}
	}
}

func allReady(agents []*agent.Agent) bool {
	for _, a := range agents {
		if !a.Ready() || !a.View().MembershipKnown {
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

func prometheusConfig(addrs []string) string {
	return fmt.Sprintf(`# Written by etcdpulse demo: scrapes the demo's three agents.
# Run: prometheus --config.file=<this file>
global:
  scrape_interval: 15s
  evaluation_interval: 15s
scrape_configs:
  - job_name: etcdpulse
    scrape_interval: 5s
    static_configs:
      - targets: ['%s']
        labels:
          cluster: etcdpulse-demo
`, strings.Join(addrs, "', '"))
}

// runChaos kills a member every interval, the leader every other time, and
// restarts it after the downtime.
func runChaos(ctx context.Context, c *demo.Cluster, f *demoValues, events *eventLog) {
	for n := 0; ; n++ {
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

type eventLog struct {
	mu    sync.Mutex
	max   int
	lines []string
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

func (e *eventLog) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.lines...)
}

func printStatus(w io.Writer, tty bool, c *demo.Cluster, agents []*agent.Agent, addrs []string, promPath string, chaos bool, events *eventLog) {
	var b strings.Builder
	if tty {
		b.WriteString("\033[H\033[2J")
	}
	fmt.Fprintf(&b, "etcdpulse demo — %s   (Ctrl-C to stop)\n\n", time.Now().Format("15:04:05"))
	// Show the view of an agent whose member is running: the one any
	// operator would be reading on a healthy node.
	var v probes.View
	src := -1
	for i, a := range agents {
		if c.Members[i].Running() && a.Ready() {
			v, src = a.View(), i
			break
		}
	}
	if src < 0 {
		v, src = agents[0].View(), 0
	}
	leader := v.LeaderLabel()
	if leader == "" {
		leader = "NONE"
	}
	fmt.Fprintf(&b, "cluster (as seen by the agent of %s):\n", c.Members[src].Name)
	fmt.Fprintf(&b, "  leader %-10s term %-4d leader changes %d\n", leader, v.Term, v.LeaderChanges)
	fmt.Fprintf(&b, "  voting members %d, healthy %d, quorum %d, fault tolerance %d%s\n\n",
		v.Voters, v.HealthyVoters, v.QuorumSize, v.FaultTolerance, toleranceNote(v))
	fmt.Fprintf(&b, "  %-10s %-8s %-10s %-8s %-9s %-10s %s\n", "member", "role", "reachable", "healthy", "idx lag", "db size", "agent")
	for _, m := range v.Members {
		role := "follower"
		switch {
		case m.IsLeader:
			role = "LEADER"
		case m.IsLearner:
			role = "learner"
		}
		db := "-"
		if m.Status != nil {
			db = fmt.Sprintf("%.1f KiB", float64(m.Status.DBSize)/1024)
		}
		addr := ""
		for i, dm := range c.Members {
			if dm.Name == m.Label {
				addr = "http://" + addrs[i] + "/metrics"
			}
		}
		fmt.Fprintf(&b, "  %-10s %-8s %-10s %-8s %-9d %-10s %s\n", m.Label, role, yesNo(m.Reachable), yesNo(m.Healthy), m.RaftIndexLag, db, addr)
	}
	fmt.Fprintf(&b, "\nPrometheus config for the three agents: %s\n", promPath)
	if chaos {
		b.WriteString("\nchaos events:\n")
		for _, l := range events.list() {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	} else {
		b.WriteString("\nRun with --chaos to kill and restart members, the leader included.\n")
	}
	if !tty {
		b.WriteString("\n")
	}
	fmt.Fprint(w, b.String())
}

func toleranceNote(v probes.View) string {
	switch {
	case !v.MembershipKnown:
		return ""
	case v.FaultTolerance < 0:
		return "  << QUORUM LOST"
	case v.FaultTolerance == 0:
		return "  << quorum at risk: one more failure loses it"
	}
	return ""
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}
