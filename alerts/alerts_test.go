package alerts

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/etcdpulse/etcdpulse/agent"
	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/internal/golden"
	"github.com/etcdpulse/etcdpulse/internal/promtool"
)

var update = flag.Bool("update", false, "rewrite the committed rule files")

// The committed files are exactly what `etcdpulse alerts` prints.
func TestCommittedFiles(t *testing.T) {
	for path, render := range map[string]func() ([]byte, error){
		"rules.yml":           RuleFile,
		"prometheusrule.yaml": PrometheusRule,
	} {
		got, err := render()
		if err != nil {
			t.Fatal(err)
		}
		if !golden.Matches(t, path, got, *update) {
			t.Errorf("alerts/%s is stale: run `go test ./alerts -update` (or make generate)", path)
		}
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	out := promtool.Run(t, "check", "rules", "rules.yml")
	if !strings.Contains(out, "SUCCESS") || strings.Contains(strings.ToLower(out), "warn") {
		t.Errorf("promtool check rules is not clean:\n%s", out)
	}
}

func TestPrometheusRuleManifest(t *testing.T) {
	raw, err := PrometheusRule()
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Spec       struct {
			Groups []yamlGroup `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.APIVersion != "monitoring.coreos.com/v1" || m.Kind != "PrometheusRule" || len(m.Spec.Groups) != len(Groups()) {
		t.Errorf("manifest: apiVersion %q kind %q groups %d", m.APIVersion, m.Kind, len(m.Spec.Groups))
	}
}

// The promtool unit tests: each alert fires when and at the time it
// should, and stays silent in the benign cases.
func TestPromtoolRuleTests(t *testing.T) {
	files, err := filepath.Glob("tests/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule tests found: %v", err)
	}
	out := promtool.Run(t, append([]string{"test", "rules"}, files...)...)
	if strings.Contains(out, "FAILED") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}

type ruleTestFile struct {
	Tests []struct {
		Name  string `yaml:"name"`
		Cases []struct {
			Alert string           `yaml:"alertname"`
			Exp   []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// Every alert has a rule test in which it fires and one in which it is
// checked to be silent.
func TestEveryAlertIsTested(t *testing.T) {
	files, _ := filepath.Glob("tests/*.yml")
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tf ruleTestFile
		if err := yaml.Unmarshal(raw, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range tf.Tests {
			for _, c := range tc.Cases {
				if len(c.Exp) > 0 {
					fires[c.Alert] = true
				} else {
					silent[c.Alert] = true
				}
			}
		}
	}
	for _, r := range Rules() {
		if !fires[r.Alert] {
			t.Errorf("%s: no rule test where it fires", r.Alert)
		}
		if !silent[r.Alert] {
			t.Errorf("%s: no rule test where it stays silent", r.Alert)
		}
	}
}

var (
	camelCase = regexp.MustCompile(`^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)*$`)
	byLabels  = regexp.MustCompile(`^\w+ by \(([^)]*)\)`)
)

// The style the mixins lint for, and ours: names, severities, annotations,
// runbooks.
func TestRuleStyle(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Rules() {
		t.Run(r.Alert, func(t *testing.T) {
			if seen[r.Alert] {
				t.Error("name used twice")
			}
			seen[r.Alert] = true
			if !camelCase.MatchString(r.Alert) || !(strings.HasPrefix(r.Alert, "Etcd") || strings.HasPrefix(r.Alert, "Etcdpulse")) {
				t.Error("name must be CamelCase and start with Etcd or Etcdpulse")
			}
			if !slices.Contains([]string{Critical, Warning, Info}, r.Severity) {
				t.Errorf("severity %q is not critical, warning or info", r.Severity)
			}
			if r.Summary == "" || strings.Contains(r.Summary, "{{") || !strings.HasSuffix(r.Summary, ".") {
				t.Errorf("summary %q must be a plain sentence without templates", r.Summary)
			}
			if !strings.Contains(r.Description, "$value") {
				t.Error("description must give the value ($value)")
			}
			// The description names whatever the alert is about. An alert
			// is about a node when its labels carry the instance: those of
			// its outer aggregation when it has one (a cluster-level rule
			// may still join on instance inside).
			nodeLevel := strings.Contains(r.Expr, "instance")
			if m := byLabels.FindStringSubmatch(r.Expr); m != nil {
				nodeLevel = false
				for _, l := range strings.Split(m[1], ",") {
					l = strings.TrimSpace(l)
					if l != "le" && !strings.Contains(r.Description, "$labels."+l) {
						t.Errorf("description does not name the %s ($labels.%s)", l, l)
					}
					nodeLevel = nodeLevel || l == "instance"
				}
			}
			if nodeLevel && !strings.Contains(r.Description, localMember) {
				t.Error("a node-level alert must name the member beside the node")
			}
			checkRunbook(t, r.Alert)
		})
	}
}

func checkRunbook(t *testing.T, alert string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docs", "runbooks", alert+".md"))
	if err != nil {
		t.Errorf("runbook: %v", err)
		return
	}
	text := string(raw)
	for _, h := range []string{"# " + alert + "\n", "\n## Meaning\n", "\n## Confirm\n", "\n## Act\n"} {
		if !strings.Contains(text, h) {
			t.Errorf("runbook lacks %q", strings.TrimSpace(h))
		}
	}
	if !strings.Contains(text, "```sh") || !strings.Contains(text, "etcdctl") {
		t.Error("runbook lacks an etcdctl command to confirm")
	}
	if !strings.Contains(text, "```promql") {
		t.Error("runbook lacks a PromQL query to confirm")
	}
}

// Every expression parses, and every metric it names exists: in the
// agent's catalogue or in etcd's own list.
func TestExpressionsAndMetrics(t *testing.T) {
	exprs := map[string]string{}
	etcd := promtool.EtcdMetrics(t)
	for _, r := range Rules() {
		exprs[r.Alert] = r.Expr
		for _, name := range promtool.MetricNames(r.Expr+" "+r.Description, "etcdpulse_", "etcd_") {
			if _, ok := collectors.Find(agent.Catalogue(), name); !ok && !etcd[name] {
				t.Errorf("%s names %s, which neither the agent nor etcd exports", r.Alert, name)
			}
		}
	}
	promtool.CheckExpressions(t, exprs)
}
