package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/probes"
)

// putKube writes n keys of a resource in each namespace, as kube-apiserver
// lays them out; "" for a cluster-scoped resource.
func putKube(t *testing.T, cli *clientv3.Client, dir string, n int, namespaces ...string) {
	t.Helper()
	var ops []clientv3.Op
	for _, ns := range namespaces {
		for i := range n {
			key := fmt.Sprintf("/registry/%s/%s/obj-%d", dir, ns, i)
			if ns == "" {
				key = fmt.Sprintf("/registry/%s/obj-%d", dir, i)
			}
			ops = append(ops, clientv3.OpPut(key, "k8s\x00value"))
		}
	}
	for len(ops) > 0 {
		batch := ops[:min(100, len(ops))]
		ops = ops[len(batch):]
		if _, err := cli.Txn(context.Background()).Then(batch...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// An agent counts the key space of its member: the top resources with the
// rest under other, the namespaces of the largest ones, the walk's
// figures; and its check line names the largest resources.
func TestKeyspaceAgent(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Mode: etcdtest.InProcess})
	cli := c.Client(t)
	putKube(t, cli, "events", 40, "default", "kube-system", "team-a")
	putKube(t, cli, "pods", 20, "default", "team-a")
	putKube(t, cli, "example.com/widgets", 15, "team-a")
	putKube(t, cli, "minions", 5, "")
	putKube(t, cli, "services/specs", 3, "default")
	a := startAgent(t, c.ClientURLs(), func(cfg *Config) {
		cfg.Keyspace.Interval = Duration(2 * time.Second)
		cfg.Keyspace.MaxRequests = 100
		cfg.Keyspace.TopResources = 3
		cfg.Keyspace.NamespaceResources = 2
		cfg.Keyspace.TopNamespaces = 1
	})
	a.waitFor(t, "the key space counted",
		gauge("etcdpulse_keyspace_resource_keys", 120, "resource", "events"),
		gauge("etcdpulse_keyspace_resource_keys", 40, "resource", "pods"),
		gauge("etcdpulse_keyspace_resource_keys", 15, "resource", "example.com/widgets"),
		gauge("etcdpulse_keyspace_resource_keys", 8, "resource", "other"),
		// The largest namespace of the two largest resources, the rest
		// summed (equal counts: the first by name).
		gauge("etcdpulse_keyspace_namespace_keys", 40, "resource", "events", "namespace", "default"),
		gauge("etcdpulse_keyspace_namespace_keys", 80, "resource", "events", "namespace", "_other"),
		gauge("etcdpulse_keyspace_namespace_keys", 20, "resource", "pods", "namespace", "default"),
		gauge("etcdpulse_keyspace_namespace_keys", 20, "resource", "pods", "namespace", "_other"),
		gaugeAtLeast("etcdpulse_keyspace_runs_total", 1, "result", "complete"),
		gauge("etcdpulse_keyspace_walk_runs", 1),
		gauge("etcdpulse_capability_success", 1, "capability", "keyspace"),
	)
	m, err := a.scrape()
	if err != nil {
		t.Fatal(err)
	}
	if ts, ok := m.value("etcdpulse_keyspace_walk_timestamp_seconds"); !ok || time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("walk timestamp %v (present %v), want a recent one", ts, ok)
	}
	if n, ok := m.value("etcdpulse_keyspace_walk_requests"); !ok || n < 10 || n > 200 {
		t.Errorf("walk requests %v, want a few per resource and namespace", n)
	}
	if _, ok := m.value("etcdpulse_keyspace_namespace_keys", "resource", "example.com/widgets"); ok {
		t.Errorf("namespaces exported for the third resource, with keyspace.namespace_resources 2")
	}

	r := checkNow(t, checkAgent(t, c, c.Member(0), nil), CheckOptions{Disk: -1})
	expectLines(t, r, line{check: "keyspace", level: Pass, says: "183 keys under /registry in 5 resources"})
	expectLines(t, r, line{check: "keyspace", level: Pass, says: "the largest: events 120 (66%), pods 40 (22%), example.com/widgets 15 (8%), minions 5 (3%), services/specs 3 (2%)"})
}

// A frozen local member (SIGSTOP) does not answer its status: the walk is
// skipped as unhealthy, and says so, until it answers again.
func TestKeyspaceSkippedWhileFrozen(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.Process})
	putKube(t, c.Client(t), "events", 10, "default")
	a := startAgent(t, c.ClientURLs(), func(cfg *Config) {
		cfg.Keyspace.Interval = Duration(time.Second)
		cfg.Keyspace.Pause = Duration(time.Millisecond)
		cfg.Keyspace.MaxRequests = 100
		cfg.Disk.Enabled = false
	})
	a.waitFor(t, "a first walk", gauge("etcdpulse_keyspace_resource_keys", 10, "resource", "events"))
	m := c.Member(0)
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Thaw() }()
	a.waitFor(t, "the walk skipped while the local member is frozen",
		gaugeAtLeast("etcdpulse_keyspace_runs_total", 1, "result", "skipped_unhealthy"))
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	putKube(t, c.Client(t), "events", 10, "kube-system")
	a.waitFor(t, "walks again once it answers", gauge("etcdpulse_keyspace_resource_keys", 20, "resource", "events"))
}

// The check line: the largest resources of the last walk, or why there
// was none.
func TestCheckKeyspace(t *testing.T) {
	v := probes.View{MembershipKnown: true}
	walk := probes.KeyspaceWalk{Completed: time.Now(), Keys: 1000, Requests: 12, Resources: []probes.ResourceKeys{
		{Resource: "events", Keys: 700}, {Resource: "pods", Keys: 200}, {Resource: "leases", Keys: 100},
	}}
	for _, tc := range []struct {
		name   string
		walk   probes.KeyspaceWalk
		result string
		level  Level
		says   string
	}{
		{"walked", walk, probes.KeyspaceComplete, Pass, "1000 keys under /registry in 3 resources (12 requests); the largest: events 700 (70%), pods 200 (20%), leases 100 (10%)"},
		{"empty", probes.KeyspaceWalk{Completed: time.Now()}, probes.KeyspaceComplete, Pass, "no key under /registry"},
		{"unhealthy", probes.KeyspaceWalk{}, probes.KeyspaceSkippedUnhealthy, Warn, "the local member is not healthy"},
		{"slow", probes.KeyspaceWalk{}, probes.KeyspaceSkippedSlow, Warn, "slow to answer"},
		{"partial", probes.KeyspaceWalk{}, probes.KeyspacePartial, Warn, "more than keyspace.max_requests"},
	} {
		fs := checkKeyspace(v, tc.walk, tc.result, "/registry")
		if len(fs) != 1 || fs[0].Check != "keyspace" || fs[0].Level != tc.level || !strings.Contains(fs[0].Summary, tc.says) {
			t.Errorf("%s: %+v, want %s with %q", tc.name, fs, tc.level, tc.says)
		}
	}
	if fs := checkKeyspace(probes.View{}, walk, "", "/registry"); len(fs) != 0 {
		t.Errorf("no member list: %+v, want no line", fs)
	}
}

// Every validation rule of the section, with its exact message.
func TestKeyspaceConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"keyspace: {interval: 0s}", "keyspace.interval (--keyspace.interval): must be positive, got 0s"},
		{"keyspace: {prefix: registry}", `keyspace.prefix (--keyspace.prefix): must begin with "/" (kube-apiserver's --etcd-prefix, /registry by default), got "registry"`},
		{"keyspace: {top_resources: 0}", "keyspace.top_resources (--keyspace.top-resources): must be between 1 and 100, got 0"},
		{"keyspace: {top_resources: 101}", "keyspace.top_resources (--keyspace.top-resources): must be between 1 and 100, got 101"},
		{"keyspace: {namespace_resources: -1}", "keyspace.namespace_resources (--keyspace.namespace-resources): must be between 0 and 10, got -1"},
		{"keyspace: {namespace_resources: 11}", "keyspace.namespace_resources (--keyspace.namespace-resources): must be between 0 and 10, got 11"},
		{"keyspace: {top_namespaces: 0}", "keyspace.top_namespaces (--keyspace.top-namespaces): must be between 1 and 100, got 0"},
		{"keyspace: {max_requests: 9}", "keyspace.max_requests (--keyspace.max-requests): must be at least 10, got 9"},
		{"keyspace: {pause: -1ms}", "keyspace.pause (--keyspace.pause): must not be negative, got -1ms"},
		{"keyspace: {interval: 10s, pause: 10ms}", "keyspace.pause (--keyspace.pause): times keyspace.max_requests (20s) must be shorter than keyspace.interval (10s), got 10ms"},
		{"keyspace: {prefix: /, namespace_resources: 0}", ""},
		{"keyspace: {enabled: false, interval: 0s}", ""},
	} {
		cfg := parseYAML(t, tc.yaml)
		err := cfg.Validate()
		if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
			t.Errorf("%s: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	d := DefaultConfig().Keyspace
	if !d.Enabled || time.Duration(d.Interval) != DefaultKeyspaceInterval || d.Prefix != "/registry" || d.TopResources != 20 ||
		d.NamespaceResources != 3 || d.TopNamespaces != 10 || d.MaxRequests != 2000 || time.Duration(d.Pause) != 10*time.Millisecond {
		t.Errorf("defaults = %+v", d)
	}
}
