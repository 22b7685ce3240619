// Command etcdpulse is a health-monitoring agent for etcd. See README.md.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"

	"github.com/etcdpulse/etcdpulse/internal/buildinfo"
)

// Before anything reads the version (the agents' etcdpulse_build_info is
// labelled when they are built): what the build did not stamp with -ldflags
// comes from the VERSION file and Go's build info.
func init() { buildinfo.Stamp() }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses the command line and runs the chosen command; it returns the
// process exit code: 0, 1 for a configuration or runtime error, 2 for bad
// usage; check has its own (checkExit*).
func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("etcdpulse", "Health-monitoring agent for etcd: probes a member and its cluster and exports Prometheus metrics.\n\n"+
		// The flags of the default command are not in this help: say where.
		"Without a command, etcdpulse runs the agent (run). To see its flags:\n\n"+
		"  etcdpulse run --help")
	app.Version(version.Print("etcdpulse"))
	app.HelpFlag.Short('h')
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	runCmd, runFlags := addRunCommand(app)
	checkCmd, checkFlags := addCheckCommand(app)
	demoCmd, demoFlags := addDemoCommand(app)
	docsMetricsCmd, docsConfigCmd := addDocsCommand(app)
	alertsCmd, alertsFormat := addAlertsCommand(app)
	dashboardsCmd, dashboardsDir := addDashboardsCommand(app)
	app.Command("version", "Print the version.")

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse: %v\n", err)
		if len(args) > 0 && args[0] == "check" {
			// check's 2 means failures found.
			return checkExitConfig
		}
		return 2
	}
	switch cmd {
	case runCmd.FullCommand():
		return runAgent(runFlags, stdout, stderr)
	case checkCmd.FullCommand():
		return runCheck(checkFlags, stdout, stderr)
	case demoCmd.FullCommand():
		return runDemo(demoFlags, stdout, stderr)
	case alertsCmd.FullCommand():
		return runAlerts(*alertsFormat, stdout, stderr)
	case dashboardsCmd.FullCommand():
		return runDashboards(*dashboardsDir, stdout, stderr)
	case docsMetricsCmd.FullCommand():
		fmt.Fprint(stdout, metricsReference())
	case docsConfigCmd.FullCommand():
		text, err := configurationReference()
		if err != nil {
			fmt.Fprintf(stderr, "etcdpulse: %v\n", err)
			return 1
		}
		fmt.Fprint(stdout, text)
	case "version":
		fmt.Fprintln(stdout, version.Print("etcdpulse"))
	}
	return 0
}
