package main

import (
	"fmt"
	"io"

	"github.com/alecthomas/kingpin/v2"

	"github.com/etcdpulse/etcdpulse/alerts"
)

func addAlertsCommand(app *kingpin.Application) (*kingpin.CmdClause, *string) {
	cmd := app.Command("alerts", "Print the alert rules: a Prometheus rule file, or a PrometheusRule manifest.")
	format := cmd.Flag("format", "Output format: prometheus (a rule file) or prometheusrule (a prometheus-operator manifest).").Default("prometheus").Enum("prometheus", "prometheusrule")
	return cmd, format
}

func runAlerts(format string, stdout, stderr io.Writer) int {
	render := alerts.RuleFile
	if format == "prometheusrule" {
		render = alerts.PrometheusRule
	}
	out, err := render()
	if err != nil {
		fmt.Fprintf(stderr, "etcdpulse alerts: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}
