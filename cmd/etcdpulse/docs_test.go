package main

import (
	"os"
	"strings"
	"testing"

	"github.com/etcdpulse/etcdpulse/agent"
)

// The references in docs/ are what the code generates: a capability's
// metrics or settings cannot drift from them.
func TestDocsUpToDate(t *testing.T) {
	config, err := configurationReference()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct{ path, want, cmd string }{
		{"../../docs/metrics.md", metricsReference(), "docs metrics"},
		{"../../docs/configuration.md", config, "docs config"},
	} {
		got, err := os.ReadFile(d.path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != d.want {
			t.Errorf("%s is stale: run `make docs` (go run ./cmd/etcdpulse %s)", d.path, d.cmd)
		}
	}
}

// Every row of the catalogue is in the metrics reference, under its
// capability's title, and every setting has its flag in the configuration
// reference and the YAML example.
func TestReferencesComplete(t *testing.T) {
	metrics := metricsReference()
	for _, c := range agent.Capabilities() {
		for _, m := range c.Metrics {
			if !strings.Contains(metrics, "| `"+m.Name+"` |") {
				t.Errorf("%s (capability %s) missing from the metrics reference", m.Name, c.Name)
			}
		}
	}
	config, err := configurationReference()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range settings() {
		if r.Flag != "" && !strings.Contains(config, "| `--"+r.Flag+"` | `"+r.Path+"` |") {
			t.Errorf("--%s (%s) missing from the flags table", r.Flag, r.Path)
		}
		last := r.Path[strings.LastIndex(r.Path, ".")+1:]
		if !strings.Contains(config, "  "+last+": ") {
			t.Errorf("%s missing from the YAML example", r.Path)
		}
	}
}
