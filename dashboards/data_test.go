package dashboards_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/etcdpulse/etcdpulse/agent"
	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/internal/promtool"
)

// Every panel query returns data from a synthetic three-member cluster,
// through the real PromQL engine (promtool test rules): vector matching,
// aggregation labels and variables hold up against series shaped like the
// agents' own, and a firing alert shows in the ALERTS panels.
func TestQueriesReturnData(t *testing.T) {
	exprs := map[string]string{}
	used := map[string]bool{}
	for _, b := range boards(t) {
		for _, p := range panels(b) {
			for _, q := range p.Targets {
				// $__rate_interval is at least four scrape intervals.
				e := strings.ReplaceAll(q.Expr, "$__rate_interval", "4m")
				exprs[fmt.Sprintf("%s %s", p.name(b), q.RefID)] = promQL(e)
				for _, n := range promtool.MetricNames(q.Expr, "etcdpulse_", "etcd_") {
					used[n] = true
				}
			}
		}
	}
	series, err := syntheticSeries(used, promtool.EtcdMetrics(t))
	if err != nil {
		t.Fatal(err)
	}

	rules, err := filepath.Abs(filepath.Join("..", "alerts", "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rule_files:\n  - %s\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n", rules)
	for _, s := range series {
		fmt.Fprintf(&b, "      - series: %q\n        values: %q\n", s.series, s.values)
	}
	b.WriteString("    promql_expr_test:\n")
	for _, k := range sortedKeys(exprs) {
		// absent() of a query that returns data is empty.
		fmt.Fprintf(&b, "      # %s\n      - expr: %q\n        eval_time: %s\n        exp_samples: []\n", k, "absent("+exprs[k]+")", evalTime)
	}
	path := filepath.Join(t.TempDir(), "queries.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promtool.Run(t, "test", "rules", path)
}

// The series run for 7 hours, so that predict_linear's 6-hour window is
// full at evalTime.
const (
	samples  = 420
	evalTime = "6h30m"
)

type inputSeries struct{ series, values string }

// Test values of each label: three members, every phase and probe.
var testLabelValues = map[string][]string{
	"member":    {"etcd-a", "etcd-b", "etcd-c"},
	"peer":      {"etcd-a", "etcd-b", "etcd-c"},
	"member_id": {"8e9e05c52164694d"},
	"version":   {"3.7.3"},
	"phase":     {"connect_peer", "connect_client", "tls_handshake", "request"},
	"probe":     {"status", "read_linearizable", "read_serializable", "member_list", "network", "fsync", "write", "watch", "hash"},
	"method":    {"Range", "Status", "MemberList", "Put", "Watch", "HashKV"},
	"alarm":     {"NOSPACE"},
	"reason":    {"tmpfs", "timeout", "behind", "watch_stalled"},
	"cause":     {"compacted", "closed"},
	"result":    {"match", "mismatch", "skipped_slow"},
	"source":    {"metrics_url", "default", "member", "agent", "file"},
	"port":      {"client", "peer"},
	"file":      {"ca.crt"},
	"resource":  {"events", "pods", "leases"},
	"namespace": {"kube-system", "default"},
	"status":    {"ok", "client_cert_required"},
	"check":     {"initial", "periodic", "compact_hash"},
	"dir":       {"data", "wal"},
	"device":    {"nvme0n1"},
	// build_info
	"branch": {"main"}, "goarch": {"amd64"}, "goos": {"linux"}, "goversion": {"go1.26"},
	"revision": {"abc"}, "tags": {"netgo"},
}

// Gauge values that make every panel non-empty: an active alarm, a refused
// fsync probe, half-full filesystems.
var gaugeValues = map[string]string{
	"etcdpulse_member_db_size_bytes":        "1000000+1000x" + fmt.Sprint(samples),
	"etcdpulse_member_db_size_in_use_bytes": "500000+1000x" + fmt.Sprint(samples),
	"etcdpulse_member_db_quota_bytes":       "8000000000x" + fmt.Sprint(samples),
	"etcdpulse_host_filesystem_size_bytes":  "100000000000x" + fmt.Sprint(samples),
	"etcdpulse_host_filesystem_free_bytes":  "50000000000-1000000x" + fmt.Sprint(samples),
	"etcdpulse_host_filesystem_files":       "1000000x" + fmt.Sprint(samples),
	"etcdpulse_host_filesystem_files_free":  "900000x" + fmt.Sprint(samples),
	"etcdpulse_etcd_process_max_fds":        "65536x" + fmt.Sprint(samples),
	"etcdpulse_etcd_process_open_fds":       "200x" + fmt.Sprint(samples),
	"etcdpulse_cluster_fault_tolerance":     "1x" + fmt.Sprint(samples),
}

// syntheticSeries returns series of the metrics used, from three agents
// (instances a, b, c beside etcd-a, etcd-b, etcd-c) of cluster prod, and
// of etcd's own metrics from the three members.
func syntheticSeries(used map[string]bool, etcd map[string]bool) ([]inputSeries, error) {
	var out []inputSeries
	counter := fmt.Sprintf("0+60x%d", samples)
	for _, name := range sortedKeys(used) {
		if strings.HasPrefix(name, "etcd_") && etcd[name] {
			for _, m := range testLabelValues["member"] {
				out = append(out, inputSeries{fmt.Sprintf(`%s{cluster="prod",job="etcd",instance="%s:2379"}`, name, m), counter})
			}
			continue
		}
		m, ok := collectors.Find(agent.Catalogue(), name)
		if !ok {
			return nil, fmt.Errorf("%s is not in the catalogue", name)
		}
		for i, instance := range []string{"a", "b", "c"} {
			target := map[string]string{"cluster": "prod", "job": "etcdpulse", "instance": instance}
			sets, err := labelSets(m, testLabelValues["member"][i])
			if err != nil {
				return nil, err
			}
			for _, set := range sets {
				for k, v := range target {
					set[k] = v
				}
				out = append(out, seriesOf(m, name, set)...)
			}
		}
	}
	return out, nil
}

// labelSets is the product of the test values of a metric's labels; the
// local member info names only the agent's own member.
func labelSets(m collectors.Metric, own string) ([]map[string]string, error) {
	sets := []map[string]string{{}}
	for _, l := range m.Labels {
		values, ok := testLabelValues[l]
		if !ok {
			return nil, fmt.Errorf("%s: no test values for label %s", m.Name, l)
		}
		if m.Name == collectors.LocalMemberInfo.Name && l == "member" {
			values = []string{own}
		}
		var next []map[string]string
		for _, s := range sets {
			for _, v := range values {
				c := map[string]string{l: v}
				for k, w := range s {
					c[k] = w
				}
				next = append(next, c)
			}
		}
		sets = next
	}
	return sets, nil
}

// seriesOf renders the series of one metric name (a histogram's _bucket,
// _sum or _count, or a plain metric) with a label set.
func seriesOf(m collectors.Metric, name string, labels map[string]string) []inputSeries {
	render := func(extra string) string {
		var parts []string
		for _, k := range sortedKeys(labels) {
			parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
		}
		if extra != "" {
			parts = append(parts, extra)
		}
		return name + "{" + strings.Join(parts, ",") + "}"
	}
	n := fmt.Sprint(samples)
	switch {
	case m.Type == collectors.Histogram && strings.HasSuffix(name, "_bucket"):
		return []inputSeries{
			{render(`le="0.005"`), "0+30x" + n},
			{render(`le="0.05"`), "0+55x" + n},
			{render(`le="+Inf"`), "0+60x" + n},
		}
	case m.Type == collectors.Histogram && strings.HasSuffix(name, "_sum"):
		return []inputSeries{{render(""), "0+0.6x" + n}}
	case m.Type == collectors.Counter || m.Type == collectors.Histogram:
		return []inputSeries{{render(""), "0+60x" + n}}
	case strings.HasSuffix(name, "_timestamp_seconds") || strings.HasSuffix(name, "_start_time_seconds"):
		return []inputSeries{{render(""), "0+60x" + n}}
	}
	if v, ok := gaugeValues[name]; ok {
		return []inputSeries{{render(""), v}}
	}
	if slices.Contains(m.Labels, "alarm") || slices.Contains(m.Labels, "reason") || m.Type == collectors.Gauge {
		return []inputSeries{{render(""), "1x" + n}}
	}
	return nil
}
