// Command etcdpulse is a health-monitoring agent for etcd. See README.md.
package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
)

func init() {
	if version.Version == "" {
		version.Version = "0.1.0-dev"
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// run parses the command line and runs the chosen command; it returns the
// process exit code.
func run(args []string) int {
	app := kingpin.New("etcdpulse", "Health-monitoring agent for etcd: probes a member and its cluster and exports Prometheus metrics.")
	app.Version(version.Print("etcdpulse"))
	app.HelpFlag.Short('h')
	runCmd := addRunCommand(app)
	demoCmd := addDemoCommand(app)
	docsCmd := addDocsCommand(app)
	app.Command("version", "Print the version.")

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdpulse: %v\n", err)
		return 2
	}
	switch cmd {
	case runCmd.FullCommand():
		return runAgent(runFlags)
	case demoCmd.FullCommand():
		return runDemo(demoFlags)
	case docsCmd.FullCommand():
		return runDocs()
	case "version":
		fmt.Println(version.Print("etcdpulse"))
	}
	return 0
}
