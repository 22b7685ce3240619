package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/etcdpulse/etcdpulse/agent"
)

// checkFlags are the check command's: the run command's configuration
// (the same endpoint and TLS flags), and the check's own.
type checkFlags struct {
	runFlags
	output      string
	maintenance string
	disk        time.Duration
	timeout     time.Duration
	verbose     bool
}

// Exit codes of the check command.
const (
	checkExitPass   = 0
	checkExitWarn   = 1
	checkExitFail   = 2
	checkExitConfig = 3
)

func addCheckCommand(app *kingpin.Application) (*kingpin.CmdClause, *checkFlags) {
	f := &checkFlags{}
	cmd := app.Command("check", "Probe the cluster once and print a report: a PASS, INFO, WARN or FAIL line per check, with the measured value, the threshold and what to do. Exit code: 0 when every check passed, 1 with warnings, 2 with failures, 3 for bad flags or configuration.")
	cmd.Flag("config.file", "YAML file with every setting, as for run; flags override it.").StringVar(&f.configFile)
	cmd.Flag("output", "Report format: text or json.").Default("text").StringVar(&f.output)
	cmd.Flag("maintenance", "Also answer whether this member (name or hexadecimal ID) can be taken down now; a no fails the check.").StringVar(&f.maintenance)
	cmd.Flag("disk.duration", "How long to run the fsync probe for the disk line, back to back as fio's recipe for etcd does; 0s skips it.").Default(agent.DefaultCheckDisk.String()).DurationVar(&f.disk)
	cmd.Flag("timeout", "Deadline of the whole check; what has not answered by then is reported failed.").Default("30s").DurationVar(&f.timeout)
	cmd.Flag("verbose", "Write the agent's log to standard error while it checks.").BoolVar(&f.verbose)
	f.config = addConfigFlags(cmd)
	return cmd, f
}

func runCheck(f *checkFlags, stdout, stderr io.Writer) int {
	if f.output != "text" && f.output != "json" {
		fmt.Fprintf(stderr, "etcdpulse: --output must be text or json, got %q\n", f.output)
		return checkExitConfig
	}
	if f.timeout <= 0 {
		fmt.Fprintf(stderr, "etcdpulse: --timeout must be positive, got %s\n", f.timeout)
		return checkExitConfig
	}
	if f.disk < 0 {
		fmt.Fprintf(stderr, "etcdpulse: --disk.duration must not be negative, got %s\n", f.disk)
		return checkExitConfig
	}
	if f.disk >= f.timeout {
		fmt.Fprintf(stderr, "etcdpulse: --disk.duration (%s) must be shorter than --timeout (%s)\n", f.disk, f.timeout)
		return checkExitConfig
	}
	cfg, err := f.load()
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse: invalid configuration:\n%s\n", indent(err.Error()))
		return checkExitConfig
	}
	logger := slog.New(slog.DiscardHandler)
	if f.verbose {
		logger = newLogger(cfg.Log, stderr)
	}
	a, err := agent.New(agent.Options{Config: &cfg.Config, Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse: invalid configuration:\n%s\n", indent(err.Error()))
		return checkExitConfig
	}
	disk := f.disk
	if disk == 0 {
		disk = -1 // skipped
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	r := a.Check(ctx, agent.CheckOptions{Disk: disk, Maintenance: f.maintenance})
	cancel()
	_ = a.Stop()
	if f.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
	} else {
		fmt.Fprint(stdout, reportText(r))
	}
	return r.ExitCode()
}

// reportText is the report for people: a line per check, the worst first,
// the commands to run under the line that needs them, the maintenance
// gate's answer, and a summary.
func reportText(r agent.Report) string {
	var b strings.Builder
	counts := map[agent.Level]int{}
	for _, f := range r.Findings {
		counts[f.Level]++
		line := f.Level.String() + " " + f.Summary
		if f.Hint != "" {
			line += ": " + f.Hint
		}
		if f.Runbook != "" && f.Level != agent.Pass {
			line += " (" + f.Runbook + ")"
		}
		fmt.Fprintln(&b, line)
		for _, c := range f.Commands {
			fmt.Fprintln(&b, "     run: "+c)
		}
	}
	if g := r.Maintenance; g != nil {
		fmt.Fprintln(&b)
		fmt.Fprint(&b, "maintenance: "+g.Text())
	}
	fmt.Fprintf(&b, "\n%s: %d failed, %d warnings, %d notes, %d passed (endpoints %s)\n", r.Level, counts[agent.Fail], counts[agent.Warn], counts[agent.Info], counts[agent.Pass], strings.Join(r.Endpoints, ","))
	return b.String()
}
