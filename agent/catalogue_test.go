package agent

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// capabilityMetrics returns the rows a capability declares.
func capabilityMetrics(name string) []collectors.Metric {
	for _, c := range Capabilities() {
		if c.Name == name {
			return c.Metrics
		}
	}
	return nil
}

// Every row of the catalogue follows the naming rules, once.
func TestCatalogue(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Catalogue() {
		if seen[m.Name] {
			t.Errorf("%s listed twice", m.Name)
		}
		seen[m.Name] = true
		if !strings.HasPrefix(m.Name, "etcdpulse_") {
			t.Errorf("%s lacks the etcdpulse_ prefix", m.Name)
		}
		if (m.Type == collectors.Counter) != strings.HasSuffix(m.Name, "_total") {
			t.Errorf("%s: _total goes on counters and only on them", m.Name)
		}
		if !strings.HasSuffix(m.Help, ".") {
			t.Errorf("%s: help text should be a sentence", m.Name)
		}
	}
}

// Every setting has a YAML path, help, a pointer into the configuration of
// one of the supported types, and a flag that follows its path, once.
func TestSettings(t *testing.T) {
	paths, flags := map[string]bool{}, map[string]bool{}
	cfg := DefaultConfig()
	for _, c := range Capabilities() {
		for _, s := range c.Settings {
			if paths[s.Path] {
				t.Errorf("%s listed twice", s.Path)
			}
			paths[s.Path] = true
			if s.Help == "" || !strings.HasSuffix(s.Help, ".") {
				t.Errorf("%s: help %q should be a sentence", s.Path, s.Help)
			}
			switch s.Value(&cfg).(type) {
			case *string, *[]string, *bool, *int, *int64, *Duration:
			default:
				t.Errorf("%s: value of type %T", s.Path, s.Value(&cfg))
			}
			if s.Flag == "" {
				continue
			}
			if s.Flag != strings.ReplaceAll(s.Path, "_", "-") {
				t.Errorf("%s: flag --%s does not follow the path", s.Path, s.Flag)
			}
			for _, f := range append([]string{s.Flag}, s.Deprecated...) {
				if flags[f] {
					t.Errorf("flag --%s used twice", f)
				}
				flags[f] = true
			}
		}
	}
}

// Each capability reports on itself: one that cannot read what it exports
// shows as 0, whatever etcd does; the others as 1.
func TestCapabilitySelfReport(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-data-dir")
	a := startAgent(t, []string{closedEndpoint(t)}, func(c *Config) {
		c.Etcd.DataDir = missing
		c.Etcd.MetricsURL = "http://" + testenv.RefusedAddr(t) + "/metrics"
		c.Host.ProcessName = "no-such-etcd"
	})
	a.waitFor(t, "each capability's own verdict",
		// etcd down is a measurement, not a broken capability.
		gauge("etcdpulse_capability_success", 1, "capability", "membership"),
		gauge("etcdpulse_capability_success", 1, "capability", "network"),
		// The data directory and the process cannot be read, the metrics
		// URL refuses, the fsync probe refuses to measure.
		gauge("etcdpulse_capability_success", 0, "capability", "host"),
		gauge("etcdpulse_capability_success", 0, "capability", "etcd_metrics"),
		gauge("etcdpulse_capability_success", 0, "capability", "disk"),
		func(m metrics) error {
			for _, c := range []string{"membership", "disk", "network", "host", "etcd_metrics"} {
				if v, ok := m.value("etcdpulse_capability_duration_seconds", "capability", c); !ok || v < 0 {
					return fmt.Errorf("duration of %s: %v (present %v)", c, v, ok)
				}
			}
			// Reads export nothing of their own: no verdict for them.
			if _, ok := m.value("etcdpulse_capability_success", "capability", "reads"); ok {
				return fmt.Errorf("a verdict for reads, which has no collector")
			}
			return nil
		})
}
