package main

import (
	"fmt"
	"io"

	"github.com/alecthomas/kingpin/v2"

	"github.com/etcdpulse/etcdpulse/dashboards"
)

func addDashboardsCommand(app *kingpin.Application) (*kingpin.CmdClause, *string) {
	cmd := app.Command("dashboards", "Print the Grafana dashboards as one JSON array, or write one file per dashboard.")
	dir := cmd.Flag("output-dir", "Write each dashboard to DIR/<uid>.json instead of printing them.").PlaceHolder("DIR").ExistingDir()
	return cmd, dir
}

func runDashboards(dir string, stdout, stderr io.Writer) int {
	if dir != "" {
		if err := dashboards.WriteFiles(dir); err != nil {
			fmt.Fprintf(stderr, "etcdpulse dashboards: %v\n", err)
			return 1
		}
		return 0
	}
	out, err := dashboards.Render()
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse dashboards: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}
