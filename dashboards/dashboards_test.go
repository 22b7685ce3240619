package dashboards_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/etcdpulse/etcdpulse/agent"
	"github.com/etcdpulse/etcdpulse/alerts"
	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/dashboards"
	"github.com/etcdpulse/etcdpulse/internal/golden"
	"github.com/etcdpulse/etcdpulse/internal/promtool"
)

var update = flag.Bool("update", false, "rewrite the committed dashboard files")

// The JSON model, as far as the checks need it.
type board struct {
	UID        string
	Title      string
	Tags       []string
	Templating struct{ List []variable }
	Panels     []panel
}

type variable struct {
	Name, Type, Label, AllValue string
	Query                       any
	Datasource                  *dsRef
	Refresh                     int
	IncludeAll                  bool
}

type dsRef struct{ Type, UID string }

type panel struct {
	ID          int
	Type, Title string
	Description string
	Datasource  *dsRef
	FieldConfig struct{ Defaults struct{ Unit string } }
	Links       []struct{ Title, URL string }
	Targets     []target
	Panels      []panel // a row's
	GridPos     struct{ X, Y, W, H int }
}

type target struct {
	Expr, RefID string
	Datasource  *dsRef
}

func (p panel) name(b board) string { return fmt.Sprintf("%s panel %d %q", b.UID, p.ID, p.Title) }

// boards decodes the rendered dashboards.
func boards(t *testing.T) []board {
	t.Helper()
	files, err := dashboards.Files()
	if err != nil {
		t.Fatal(err)
	}
	var out []board
	for _, f := range files {
		var b board
		if err := json.Unmarshal(f.JSON, &b); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		out = append(out, b)
	}
	return out
}

// panels returns every panel, those inside rows included.
func panels(b board) []panel {
	var out []panel
	for _, p := range b.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// expressions returns every PromQL expression of a dashboard, keyed by
// where it is: panel targets and the label_values queries of variables.
func expressions(t *testing.T, b board) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range panels(b) {
		for _, q := range p.Targets {
			out[fmt.Sprintf("%s %s", p.name(b), q.RefID)] = q.Expr
		}
	}
	for _, v := range b.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("%s: variable %s: query %q is not label_values(selector, label)", b.UID, v.Name, q)
			continue
		}
		out[fmt.Sprintf("%s variable %s", b.UID, v.Name)] = m[1]
	}
	return out
}

var labelValues = regexp.MustCompile(`^label_values\((.+), *\w+\)$`)

// The committed files are what the code renders.
func TestCommittedFilesAreCurrent(t *testing.T) {
	files, err := dashboards.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		path := filepath.Join(dashboards.Dir, f.Name)
		if !golden.Matches(t, path, f.JSON, *update) {
			t.Errorf("dashboards/%s is stale: regenerate with go test ./dashboards -update, or make dashboards", path)
		}
	}
}

// The JSON directory holds the rendered dashboards and nothing else, so
// that `kubectl create configmap --from-file=dashboards/json/` (in
// docs/dashboards.md) gives Grafana's sidecar only dashboards.
func TestJSONDirHoldsOnlyDashboards(t *testing.T) {
	files, err := dashboards.Files()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, f := range files {
		want[f.Name] = true
	}
	entries, err := os.ReadDir(dashboards.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatalf("dashboards/%s is empty", dashboards.Dir)
	}
	for _, e := range entries {
		path := filepath.Join(dashboards.Dir, e.Name())
		switch {
		case !e.Type().IsRegular():
			t.Errorf("dashboards/%s is not a regular file: only dashboards belong there", path)
		case filepath.Ext(e.Name()) != ".json":
			t.Errorf("dashboards/%s is not a .json dashboard: move it out of %s/", path, dashboards.Dir)
		case !want[e.Name()]:
			t.Errorf("dashboards/%s is not rendered by the code: remove it", path)
		default:
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var b board
			if err := json.Unmarshal(raw, &b); err != nil || b.UID+".json" != e.Name() || b.Title == "" {
				t.Errorf("dashboards/%s is not a Grafana dashboard with UID %s and a title (decode error: %v)", path, strings.TrimSuffix(e.Name(), ".json"), err)
			}
		}
	}
}

// The stdout form is a JSON array of the same dashboards.
func TestRenderIsAnArrayOfTheFiles(t *testing.T) {
	raw, err := dashboards.Render()
	if err != nil {
		t.Fatal(err)
	}
	var all []map[string]any
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatal(err)
	}
	files, err := dashboards.Files()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(files) {
		t.Fatalf("Render has %d dashboards, Files %d", len(all), len(files))
	}
	for i, f := range files {
		var want map[string]any
		if err := json.Unmarshal(f.JSON, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(all[i], want) {
			t.Errorf("Render()[%d] is not %s", i, f.Name)
		}
	}
}

// Every expression parses, with Grafana's variables replaced by values of
// the right kind.
func TestExpressionsParse(t *testing.T) {
	all := map[string]string{}
	for _, b := range boards(t) {
		for k, e := range expressions(t, b) {
			all[k] = promQL(e)
		}
	}
	promtool.CheckExpressions(t, all)
}

var (
	grafanaRanges = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h")
	grafanaVar    = regexp.MustCompile(`\$\{?\w+\}?`)
)

func promQL(expr string) string {
	return grafanaVar.ReplaceAllString(grafanaRanges.Replace(expr), ".*")
}

// Every metric an expression names is exported by the agent (the
// catalogue) or by etcd itself, or is Prometheus' ALERTS.
func TestMetricsExist(t *testing.T) {
	etcd := promtool.EtcdMetrics(t)
	missing := map[string][]string{}
	for _, b := range boards(t) {
		for where, e := range expressions(t, b) {
			for _, name := range promtool.MetricNames(e, "etcdpulse_", "etcd_", "ALERTS") {
				if _, ok := collectors.Find(agent.Catalogue(), name); ok || etcd[name] || name == "ALERTS" {
					continue
				}
				missing[name] = append(missing[name], where)
			}
		}
	}
	for _, name := range sortedKeys(missing) {
		sort.Strings(missing[name])
		t.Errorf("%s is neither in the catalogue nor one of etcd's metrics; used by:\n  %s", name, strings.Join(missing[name], "\n  "))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Dashboard-level rules (mixtool, dashboard-linter): title, UID, tags, a
// Prometheus datasource variable and cluster and instance variables that
// use it and reload on time range changes.
func TestLintDashboards(t *testing.T) {
	uids := map[string]bool{}
	for _, b := range boards(t) {
		if b.Title == "" || !strings.HasPrefix(b.Title, "etcdpulse / ") {
			t.Errorf("%s: title %q, want etcdpulse / <what>", b.UID, b.Title)
		}
		if !strings.HasPrefix(b.UID, "etcdpulse-") || len(b.UID) > 40 || uids[b.UID] {
			t.Errorf("%s: UID must be unique, at most 40 characters, and start with etcdpulse-", b.UID)
		}
		uids[b.UID] = true
		if !slices.Equal(b.Tags, dashboards.Tags) {
			t.Errorf("%s: tags %v, want %v", b.UID, b.Tags, dashboards.Tags)
		}
		vars := map[string]variable{}
		for _, v := range b.Templating.List {
			vars[v.Name] = v
		}
		if ds, ok := vars["datasource"]; !ok || ds.Type != "datasource" || ds.Query != "prometheus" || ds.Label != "Data source" {
			t.Errorf("%s: want a datasource variable named datasource, labelled Data source, of type prometheus; have %+v", b.UID, ds)
		}
		for _, name := range []string{"cluster", "instance"} {
			v, ok := vars[name]
			switch {
			case !ok:
				t.Errorf("%s: no %s variable", b.UID, name)
			case v.Type != "query" || v.Datasource == nil || v.Datasource.UID != "${datasource}":
				t.Errorf("%s: variable %s must be a query of ${datasource}", b.UID, name)
			case v.Refresh != 2:
				t.Errorf("%s: variable %s must reload on time range change (refresh 2), has %d", b.UID, name, v.Refresh)
			case !v.IncludeAll || v.AllValue != ".*":
				// .* also matches series without the label: a Prometheus
				// without a cluster target label still fills the panels.
				t.Errorf("%s: variable %s must include All with the value .*", b.UID, name)
			}
		}
	}
}

// No datasource is hard-coded anywhere: every datasource reference in the
// JSON is the ${datasource} variable.
func TestDatasourceIsTheVariable(t *testing.T) {
	files, err := dashboards.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		var doc any
		if err := json.Unmarshal(f.JSON, &doc); err != nil {
			t.Fatal(err)
		}
		walk(doc, "", func(path string, key string, v any) {
			if key != "datasource" {
				return
			}
			ref, ok := v.(map[string]any)
			if !ok || ref["uid"] != "${datasource}" || ref["type"] != "prometheus" {
				t.Errorf("%s: %s is %v, want {type: prometheus, uid: ${datasource}}", f.Name, path, v)
			}
		})
	}
}

func walk(v any, path string, fn func(path, key string, v any)) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(v) {
			fn(path+"."+k, k, v[k])
			walk(v[k], path+"."+k, fn)
		}
	case []any:
		for i, e := range v {
			walk(e, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	}
}

// Panel-level rules: every panel has a title, a description, a unit and
// queries on the ${datasource}; rates use $__rate_interval; counters are
// only read through rate, irate or increase.
func TestLintPanels(t *testing.T) {
	for _, b := range boards(t) {
		ids, titles := map[int]bool{}, map[string]bool{}
		for _, p := range panels(b) {
			if titles[p.Title] {
				t.Errorf("%s: another panel has the same title", p.name(b))
			}
			titles[p.Title] = true
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("%s: panel id %d missing or not unique", p.name(b), p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			if p.Title == "" || p.Description == "" {
				t.Errorf("%s: every panel needs a title and a description", p.name(b))
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel datasource must be ${datasource}", p.name(b))
			}
			if p.Type != "text" && !validUnits[p.FieldConfig.Defaults.Unit] {
				t.Errorf("%s: unit %q is not one of Grafana's", p.name(b), p.FieldConfig.Defaults.Unit)
			}
			if p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: grid position %+v does not fit the 24-column grid", p.name(b), p.GridPos)
			}
			if len(p.Targets) == 0 && p.Type != "text" {
				t.Errorf("%s: no queries", p.name(b))
			}
			refs := map[string]bool{}
			for _, q := range p.Targets {
				if q.RefID == "" || refs[q.RefID] {
					t.Errorf("%s: query refId %q missing or not unique", p.name(b), q.RefID)
				}
				refs[q.RefID] = true
				if q.Datasource == nil || q.Datasource.UID != "${datasource}" {
					t.Errorf("%s %s: query datasource must be ${datasource}", p.name(b), q.RefID)
				}
				if err := checkRanges(q.Expr); err != nil {
					t.Errorf("%s %s: %v in %s", p.name(b), q.RefID, err, q.Expr)
				}
				if err := checkCounters(q.Expr); err != nil {
					t.Errorf("%s %s: %v in %s", p.name(b), q.RefID, err, q.Expr)
				}
			}
		}
	}
}

var (
	quoted    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	rangeFunc = regexp.MustCompile(`\b(rate|irate|increase)\s*\(`)
	// rangeArg is the argument of a range function: a plain range selector.
	rangeArg = regexp.MustCompile(`^\s*[a-zA-Z_:][a-zA-Z0-9_:]*\s*(?:\{[^}]*\})?\s*\[([^\]]+)\]\s*\)`)
)

// checkRanges requires rate and irate over [$__rate_interval]: Grafana
// keeps it at least four scrape intervals at any zoom. increase may also
// use a fixed window or $__range, for counts over a stated period.
func checkRanges(expr string) error {
	e := quoted.ReplaceAllString(expr, `""`)
	for _, loc := range rangeFunc.FindAllStringSubmatchIndex(e, -1) {
		fn := e[loc[2]:loc[3]]
		m := rangeArg.FindStringSubmatch(e[loc[1]:])
		if m == nil {
			return fmt.Errorf("%s() takes something other than a range selector", fn)
		}
		if fn != "increase" && m[1] != "$__rate_interval" {
			return fmt.Errorf("%s() over [%s], want [$__rate_interval]", fn, m[1])
		}
	}
	return nil
}

// checkCounters requires every counter series (the catalogue's counters,
// _total, and histograms' _bucket, _count and _sum) to be read through
// rate, irate or increase: a raw counter's value means nothing.
func checkCounters(expr string) error {
	e := quoted.ReplaceAllString(expr, `""`)
	for _, name := range promtool.MetricNames(e, "etcdpulse_", "etcd_") {
		if !isCounter(name) {
			continue
		}
		for i := 0; ; {
			j := strings.Index(e[i:], name)
			if j < 0 {
				break
			}
			start, end := i+j, i+j+len(name)
			i = end
			if start > 0 && isIdent(e[start-1]) || end < len(e) && isIdent(e[end]) {
				continue // part of a longer name
			}
			before := strings.TrimRight(e[:start], " ")
			if !strings.HasSuffix(before, "rate(") && !strings.HasSuffix(before, "increase(") {
				return fmt.Errorf("counter %s is not read through rate, irate or increase", name)
			}
		}
	}
	return nil
}

func isIdent(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isCounter(name string) bool {
	if m, ok := collectors.Find(agent.Catalogue(), name); ok {
		return m.Type == collectors.Counter || m.Type == collectors.Histogram && m.Name != name
	}
	for _, s := range []string{"_total", "_bucket", "_count", "_sum"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// Panels that show what an alert watches link to its runbook, every
// runbook link names a real alert, and every alert has such a panel.
func TestRunbookLinks(t *testing.T) {
	rules := map[string]bool{}
	for _, r := range alerts.Rules() {
		rules[r.Alert] = true
	}
	linked := map[string]bool{}
	for _, b := range boards(t) {
		for _, p := range panels(b) {
			for _, l := range p.Links {
				alert, ok := strings.CutPrefix(l.URL, dashboards.RunbookBase)
				if !ok {
					continue
				}
				alert, ok = strings.CutSuffix(alert, ".md")
				if !ok || !rules[alert] {
					t.Errorf("%s: link %q is not the runbook of an alert", p.name(b), l.URL)
					continue
				}
				if l.Title != "Runbook: "+alert {
					t.Errorf("%s: link to %s is titled %q", p.name(b), alert, l.Title)
				}
				linked[alert] = true
			}
		}
	}
	for _, a := range sortedKeys(rules) {
		if !linked[a] {
			t.Errorf("no panel links to the runbook of %s: add it to the panel that shows what it watches", a)
		}
	}
	if got, want := dashboards.Runbook("EtcdQuorumLost"), alerts.Runbook("EtcdQuorumLost"); got != want {
		t.Errorf("dashboards.Runbook = %s, alerts.Runbook = %s", got, want)
	}
}

// The rate and counter checks catch what they are meant to.
func TestChecksCatch(t *testing.T) {
	cases := []struct {
		expr   string
		ranges bool // checkRanges passes
		counts bool // checkCounters passes
	}{
		{`rate(etcdpulse_etcd_requests_total{cluster=~"$cluster"}[$__rate_interval])`, true, true},
		{`rate(etcdpulse_etcd_requests_total[5m])`, false, true},
		{`irate(etcdpulse_etcd_requests_total[1m])`, false, true},
		{`increase(etcdpulse_cluster_leader_changes_total[$__range])`, true, true},
		{`sum(etcdpulse_etcd_requests_total)`, true, false},
		{`histogram_quantile(0.99, sum by (le) (rate(etcdpulse_disk_fsync_duration_seconds_bucket[$__rate_interval])))`, true, true},
		{`etcdpulse_disk_fsync_duration_seconds_count`, true, false},
		{`rate(max_over_time(etcdpulse_up[5m])[1m:])`, false, true},
		{`etcdpulse_member_healthy{member="rate(x[5m])"}`, true, true},
	}
	for _, c := range cases {
		if got := checkRanges(c.expr) == nil; got != c.ranges {
			t.Errorf("checkRanges(%s) passes = %v, want %v", c.expr, got, c.ranges)
		}
		if got := checkCounters(c.expr) == nil; got != c.counts {
			t.Errorf("checkCounters(%s) passes = %v, want %v", c.expr, got, c.counts)
		}
	}
}

// validUnits are Grafana's unit IDs that suit etcd's metrics (from
// grafana-data's valueFormats categories, as dashboard-linter lists them).
var validUnits = map[string]bool{
	"none": true, "short": true, "percent": true, "percentunit": true,
	"bytes": true, "decbytes": true, "bits": true, "Bps": true, "binBps": true, "bps": true,
	"ns": true, "µs": true, "ms": true, "s": true, "m": true, "h": true, "d": true,
	"dtdurations": true, "dtdurationms": true, "dateTimeAsIso": true, "dateTimeFromNow": true,
	"ops": true, "reqps": true, "rps": true, "wps": true, "iops": true, "cps": true,
	"bool": true, "bool_yes_no": true, "bool_on_off": true, "string": true,
}
