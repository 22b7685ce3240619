package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"strings"
	"text/template"

	"github.com/alecthomas/kingpin/v2"
	"go.yaml.in/yaml/v3"

	"github.com/etcdpulse/etcdpulse/agent"
)

func addDocsCommand(app *kingpin.Application) (metrics, config *kingpin.CmdClause) {
	docs := app.Command("docs", "Print generated reference documentation.").Hidden()
	return docs.Command("metrics", "Print the metrics reference (docs/metrics.md)."),
		docs.Command("config", "Print the configuration reference (docs/configuration.md).")
}

// metricsReference renders docs/metrics.md from the agent's capabilities.
func metricsReference() string {
	var b strings.Builder
	b.WriteString("# Metrics reference\n\n")
	b.WriteString("Generated from the agent's capabilities (`agent.Capabilities`: each declares the metrics it exports, beside the collector that computes them) by `go run ./cmd/etcdpulse docs metrics`; do not edit by hand.\n\n")
	b.WriteString("`member` is the etcd member name, or its hex ID while the name is empty. Node and cluster identity come from Prometheus target labels.\n")
	b.WriteString("Per-member values that come from a member's status are absent while the member does not answer; `etcdpulse_member_reachable` says so.\n")
	for _, c := range agent.Capabilities() {
		if len(c.Metrics) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n| metric | type | labels | meaning |\n|---|---|---|---|\n", c.Title)
		for _, m := range c.Metrics {
			labels := "—"
			if len(m.Labels) > 0 {
				labels = "`" + strings.Join(m.Labels, "`, `") + "`"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", m.Name, m.Type, labels, m.Help)
		}
	}
	return b.String()
}

//go:embed configuration.md.tmpl
var configurationTemplate string

// configurationReference renders docs/configuration.md: the prose of the
// template around the flags table and the YAML example, both made from the
// configuration table.
func configurationReference() (string, error) {
	example, err := yamlExample()
	if err != nil {
		return "", err
	}
	t, err := template.New("configuration.md").Parse(configurationTemplate)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]string{"Flags": flagsTable(), "YAML": example})
	return b.String(), err
}

// flagsTable is every flag of run, by section of the table.
func flagsTable() string {
	var b strings.Builder
	defaults := defaultFileConfig()
	b.WriteString("| flag | YAML field | default | meaning |\n|---|---|---|---|\n")
	b.WriteString("| `--config.file` | — | none | the YAML file below |\n")
	b.WriteString("| `--config.check` | — | false | validate, build the agent and bind the listen addresses as `run` would, then exit |\n")
	var deprecated []string
	for _, r := range settings() {
		flag := "—"
		if r.Flag != "" {
			flag = "`--" + r.Flag + "`"
		}
		def := format(r.value(&defaults))
		switch def {
		case "":
			def = "none"
		default:
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s |\n", flag, r.Path, def, strings.ReplaceAll(r.Help, "|", `\|`))
		for _, old := range r.Deprecated {
			deprecated = append(deprecated, fmt.Sprintf("`--%s` (`--%s`)", old, r.Flag))
		}
	}
	if len(deprecated) > 0 {
		fmt.Fprintf(&b, "\nFormer flag names, still accepted with a warning in the log: %s.\n", strings.Join(deprecated, ", "))
	}
	return b.String()
}

// yamlExample is the whole file with every default, each field commented
// with the first sentence of its help.
func yamlExample() (string, error) {
	var doc yaml.Node
	if err := doc.Encode(defaultFileConfig()); err != nil {
		return "", err
	}
	help := map[string]string{}
	for _, r := range settings() {
		first, _, _ := strings.Cut(r.Help, ". ")
		help[r.Path] = strings.TrimSuffix(first, ".")
	}
	var annotate func(n *yaml.Node, path string)
	annotate = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := strings.TrimPrefix(path+"."+k.Value, ".")
				if h, ok := help[p]; ok {
					// On the value: a key's comment lands after a flow list.
					v.LineComment = h
				}
				annotate(v, p)
			}
		case yaml.SequenceNode:
			n.Style = yaml.FlowStyle
		}
	}
	annotate(&doc, "")
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return "", err
	}
	return "```yaml\n" + b.String() + "```\n", nil
}
