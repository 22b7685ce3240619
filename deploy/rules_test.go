package deploy_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/etcdpulse/etcdpulse/alerts"
	"github.com/etcdpulse/etcdpulse/internal/promtool"
)

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// renderRules renders the chart's PrometheusRule and returns its groups.
func renderRules(t *testing.T, args ...string) ruleFile {
	t.Helper()
	var pr struct{ Spec ruleFile }
	only(t, decode(t, render(t, args...)), "PrometheusRule", &pr)
	return pr.Spec
}

func byAlert(f ruleFile) map[string]rule {
	out := map[string]rule{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r
		}
	}
	return out
}

// Without knobs the PrometheusRule holds package alerts' rules unchanged:
// Helm never touched their {{ $labels }} templates.
func TestRulesAreThePackages(t *testing.T) {
	raw, err := alerts.RuleFile()
	if err != nil {
		t.Fatal(err)
	}
	var want ruleFile
	if err := yaml.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if got := renderRules(t); !reflect.DeepEqual(got, want) {
		t.Errorf("the PrometheusRule's groups differ from alerts.RuleFile():\n got %+v\nwant %+v", got, want)
	}
}

func TestRuleKnobs(t *testing.T) {
	base := byAlert(renderRules(t))
	got := byAlert(renderRules(t,
		"--set", "prometheusRule.disabled.EtcdNoLeader=true",
		"--set", "prometheusRule.disabled.EtcdQuorumLost=false",
		"--set", "prometheusRule.customRules.EtcdFsyncSlow.for=10m",
		"--set", "prometheusRule.customRules.EtcdFsyncSlow.severity=critical",
		"--set", "prometheusRule.customRules.EtcdMemberUnhealthy.severity=info",
		"--set", "prometheusRule.additionalRuleLabels.team=storage",
		"--set", "prometheusRule.additionalRuleLabels.severity=none",
		"--set", "prometheusRule.additionalRuleAnnotations.dashboard=https://grafana.example/d/etcd",
	))
	if _, ok := got["EtcdNoLeader"]; ok {
		t.Error("EtcdNoLeader is disabled but rendered")
	}
	if _, ok := got["EtcdQuorumLost"]; !ok {
		t.Error("EtcdQuorumLost: disabled=false removed it")
	}
	if len(got) != len(base)-1 {
		t.Errorf("%d rules, want %d", len(got), len(base)-1)
	}
	if r := got["EtcdFsyncSlow"]; r.For != "10m" || r.Labels["severity"] != "critical" {
		t.Errorf("EtcdFsyncSlow: for %q, severity %q; want 10m, critical", r.For, r.Labels["severity"])
	}
	if r := got["EtcdMemberUnhealthy"]; r.For != base["EtcdMemberUnhealthy"].For || r.Labels["severity"] != "info" {
		t.Errorf("EtcdMemberUnhealthy: for %q, severity %q; want the shipped for, info", r.For, r.Labels["severity"])
	}
	for name, r := range got {
		if r.Labels["team"] != "storage" || r.Annotations["dashboard"] == "" {
			t.Errorf("%s lacks the additional label or annotation: %v %v", name, r.Labels, r.Annotations)
		}
		if name != "EtcdFsyncSlow" && name != "EtcdMemberUnhealthy" && r.Labels["severity"] != base[name].Labels["severity"] {
			t.Errorf("%s: severity %q, want the rule's own %q over additionalRuleLabels", name, r.Labels["severity"], base[name].Labels["severity"])
		}
		if r.Annotations["description"] != base[name].Annotations["description"] {
			t.Errorf("%s: description changed", name)
		}
	}
	// A group whose rules are all disabled is left out, not left empty.
	f := renderRules(t, "--set", "prometheusRule.disabled.EtcdQuorumLost=true", "--set", "prometheusRule.disabled.EtcdQuorumAtRisk=true", "--set", "prometheusRule.disabled.EtcdNoLeader=true", "--set", "prometheusRule.disabled.EtcdLeaderFlapping=true", "--set", "prometheusRule.disabled.EtcdLeaderDisagreement=true")
	for _, g := range f.Groups {
		if len(g.Rules) == 0 {
			t.Errorf("group %s rendered without rules", g.Name)
		}
	}
}

// The rendered groups, knobs applied, are a rule file promtool accepts.
func TestRenderedRulesPassPromtool(t *testing.T) {
	f := renderRules(t,
		"--set", "prometheusRule.disabled.EtcdNoLeader=true",
		"--set", "prometheusRule.customRules.EtcdFsyncSlow.for=10m",
		"--set", "prometheusRule.customRules.EtcdFsyncSlow.severity=critical",
		"--set", "prometheusRule.additionalRuleLabels.team=storage",
		"--set", "prometheusRule.additionalRuleAnnotations.dashboard=https://grafana.example/d/etcd",
	)
	raw, err := yaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool.Run(t, "check", "rules", path)
}
