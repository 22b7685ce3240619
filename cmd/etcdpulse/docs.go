package main

import (
	"github.com/alecthomas/kingpin/v2"

	"github.com/etcdpulse/etcdpulse/collectors"
)

func addDocsCommand(app *kingpin.Application) *kingpin.CmdClause {
	docs := app.Command("docs", "Print generated reference documentation.").Hidden()
	return docs.Command("metrics", "Print the metrics reference (docs/metrics.md).")
}

func docsText() string { return collectors.Markdown() }
