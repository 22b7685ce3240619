package probes

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// kubeResource is one resource of a key space laid out as kube-apiserver
// writes it: <prefix>/<dir>/<namespace>/<name>, or <prefix>/<dir>/<name>
// for a cluster-scoped one.
type kubeResource struct {
	// name is the resource as the probe names it; dir its directory
	// under the prefix.
	name, dir string
	// perNamespace holds the keys per namespace, nil for a cluster-scoped
	// resource; keys the count of a cluster-scoped one.
	perNamespace map[string]int
	keys         int
}

func (r kubeResource) total() int {
	n := r.keys
	for _, c := range r.perNamespace {
		n += c
	}
	return n
}

// skewed spreads n keys over namespaces ns-000…: the first holds half,
// the others share the rest.
func skewed(n, namespaces int) map[string]int {
	out := map[string]int{}
	first := n / 2
	out["ns-000"] = first
	rest := n - first
	for i := 1; i < namespaces; i++ {
		c := rest / (namespaces - 1)
		if i == namespaces-1 {
			c = rest - c*(namespaces-2)
		}
		out[fmt.Sprintf("ns-%03d", i)] = c
	}
	return out
}

// kubeLayout is a key space of about total keys as a busy cluster holds
// them: events dominate, then pods, a custom resource, leases, secrets
// and configmaps, services and their endpoints, nodes (minions),
// namespaces, CRDs and APIServices, and the service IP ranges.
func kubeLayout(total int) []kubeResource {
	scale := func(share float64) int { return int(float64(total) * share) }
	return []kubeResource{
		{name: "events", dir: "events", perNamespace: skewed(scale(0.60), 40)},
		{name: "pods", dir: "pods", perNamespace: skewed(scale(0.15), 40)},
		{name: "example.com/widgets", dir: "example.com/widgets", perNamespace: skewed(scale(0.07), 10)},
		{name: "leases", dir: "leases", perNamespace: map[string]int{"kube-node-lease": scale(0.005), "kube-system": 30}},
		{name: "secrets", dir: "secrets", perNamespace: skewed(scale(0.05), 40)},
		{name: "configmaps", dir: "configmaps", perNamespace: skewed(scale(0.045), 40)},
		{name: "services/specs", dir: "services/specs", perNamespace: skewed(scale(0.01), 40)},
		{name: "services/endpoints", dir: "services/endpoints", perNamespace: skewed(scale(0.01), 40)},
		{name: "endpointslices", dir: "endpointslices", perNamespace: skewed(scale(0.011), 40)},
		{name: "minions", dir: "minions", keys: scale(0.005)},
		{name: "namespaces", dir: "namespaces", keys: 40},
		{name: "apiextensions.k8s.io/customresourcedefinitions", dir: "apiextensions.k8s.io/customresourcedefinitions", keys: 25},
		{name: "apiregistration.k8s.io/apiservices", dir: "apiregistration.k8s.io/apiservices", keys: 30},
		{name: "ranges", dir: "ranges", keys: 2},
		{name: "clusterroles", dir: "clusterroles", keys: 70},
		{name: "deployments", dir: "deployments", perNamespace: skewed(scale(0.02), 40)},
	}
}

// kubeKeys lists the keys of a layout under prefix.
func kubeKeys(prefix string, layout []kubeResource) []string {
	var keys []string
	for _, r := range layout {
		base := prefix + "/" + r.dir + "/"
		for i := range r.keys {
			keys = append(keys, fmt.Sprintf("%sobject-%06d", base, i))
		}
		for _, ns := range slices.Sorted(maps.Keys(r.perNamespace)) {
			for i := range r.perNamespace[ns] {
				keys = append(keys, fmt.Sprintf("%s%s/object-%06d", base, ns, i))
			}
		}
	}
	return keys
}

// kubeValue stands for a stored object: kube-apiserver's protobuf
// envelope ("k8s\x00") and some bytes. The probe never reads it.
var kubeValue = "k8s\x00" + string(make([]byte, 120))

// putAll writes keys in transactions of 128 puts (etcd's default
// --max-txn-ops), workers at a time.
func putAll(tb testing.TB, cli *clientv3.Client, keys []string, value string, workers int) {
	tb.Helper()
	const batch = 128
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(workers)
	for start := 0; start < len(keys); start += batch {
		chunk := keys[start:min(start+batch, len(keys))]
		g.Go(func() error {
			ops := make([]clientv3.Op, len(chunk))
			for i, k := range chunk {
				ops[i] = clientv3.OpPut(k, value)
			}
			_, err := cli.Txn(ctx).Then(ops...).Commit()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		tb.Fatalf("loading %d keys: %v", len(keys), err)
	}
}

func newKeyspaceProbe(maxRequests int, pause time.Duration) *KeyspaceProbe {
	return &KeyspaceProbe{
		Prefix: "/registry", NamespaceResources: 3, TopNamespaces: 10,
		MaxRequests: maxRequests, Pause: pause, SlowThreshold: 500 * time.Millisecond, RequestTimeout: 10 * time.Second,
	}
}

// wantWalk checks a walk against the layout: every resource's count, and
// the namespaces of the three largest namespaced ones.
func wantWalk(t *testing.T, w KeyspaceWalk, layout []kubeResource) {
	t.Helper()
	got := map[string]ResourceKeys{}
	for _, r := range w.Resources {
		got[r.Resource] = r
	}
	total := 0
	for _, r := range layout {
		total += r.total()
		g, ok := got[r.name]
		if !ok || g.Keys != int64(r.total()) {
			t.Errorf("resource %s: %+v, want %d keys", r.name, g, r.total())
		}
	}
	if len(got) != len(layout) {
		t.Errorf("%d resources, want %d: %+v", len(got), len(layout), w.Resources)
	}
	if w.Keys != int64(total) {
		t.Errorf("keys = %d, want %d", w.Keys, total)
	}
	// The three largest namespaced resources, counted per namespace.
	for _, r := range layout[:3] {
		nss := w.Namespaces[r.name]
		want := len(r.perNamespace)
		if want > 10 {
			want = 11
		}
		if len(nss) != want {
			t.Errorf("%s: %d namespaces, want the top 10 and _other: %+v", r.name, len(nss), nss)
			continue
		}
		if nss[0].Namespace != "ns-000" || nss[0].Keys != int64(r.perNamespace["ns-000"]) {
			t.Errorf("%s: largest namespace %+v, want ns-000 with %d", r.name, nss[0], r.perNamespace["ns-000"])
		}
		var sum int64
		for _, ns := range nss {
			sum += ns.Keys
			if ns.Namespace != KeyspaceOtherNamespaces && ns.Keys != int64(r.perNamespace[ns.Namespace]) {
				t.Errorf("%s in %s: %d keys, want %d", r.name, ns.Namespace, ns.Keys, r.perNamespace[ns.Namespace])
			}
		}
		if sum != int64(r.total()) {
			t.Errorf("%s: namespaces sum to %d, want %d", r.name, sum, r.total())
		}
	}
	if len(w.Namespaces) != 3 {
		t.Errorf("namespaces counted for %d resources, want 3: %v", len(w.Namespaces), slices.Sorted(maps.Keys(w.Namespaces)))
	}
}

// A key space of 100k keys laid out as kube-apiserver writes it, with
// keys beside the prefix that are not the API server's: one walk counts
// every resource, with a few requests per resource, not per key; a walk
// of 10 requests per run resumes where each run stopped and ends with the
// same counts.
func TestKeyspaceProbe(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Mode: etcdtest.InProcess})
	cli := c.Client(t)
	layout := kubeLayout(110_000)
	keys := kubeKeys("/registry", layout)
	if len(keys) < 100_000 {
		t.Fatalf("layout of %d keys, want at least 100k", len(keys))
	}
	putAll(t, cli, keys, kubeValue, 16)
	// Not the API server's: beside /registry/, and the agent's own.
	putAll(t, cli, []string{"/registry", "/registry-other/x", "/registry0/x", "/registryx", "/etcdpulse/health", "/"}, "v", 1)
	target := localTarget(t, c)
	ctx := context.Background()

	p := newKeyspaceProbe(5000, 0)
	if err := p.Run(ctx, target); err != nil {
		t.Fatal(err)
	}
	if p.LastResult() != KeyspaceComplete {
		t.Fatalf("result %q, want complete", p.LastResult())
	}
	w := p.Last()
	wantWalk(t, w, layout)
	// Two requests per resource and per namespace counted, and at most
	// one per empty bucket (39 buckets at each level).
	namespaces := 0
	for _, r := range layout[:3] {
		namespaces += len(r.perNamespace)
	}
	if limit := 2*(len(layout)+namespaces) + 39*4; w.Requests > limit || w.Runs != 1 {
		t.Errorf("walk of %d requests in %d runs, want at most %d in 1", w.Requests, w.Runs, limit)
	}
	t.Logf("walk of %d keys, %d resources: %d requests", w.Keys, len(w.Resources), w.Requests)
	if top := w.Top(5); len(top) != 6 || top[0].Resource != "events" || top[5].Resource != KeyspaceOther || top[5].Keys != w.Keys-sumKeys(top[:5]) {
		t.Errorf("top 5 = %+v", top)
	}

	// A budget of 10 requests a run: the walk resumes, run after run.
	small := newKeyspaceProbe(10, 0)
	runs := 0
	for small.Last().Completed.IsZero() {
		if runs++; runs > w.Requests {
			t.Fatalf("no complete walk after %d runs", runs)
		}
		if err := small.Run(ctx, target); err != nil {
			t.Fatal(err)
		}
		if !small.Last().Completed.IsZero() {
			break
		}
		if small.LastResult() != KeyspacePartial {
			t.Fatalf("run %d: result %q, want partial", runs, small.LastResult())
		}
		if on, sent := small.InProgress(); !on || sent != 10*runs {
			t.Fatalf("run %d: in progress %v with %d requests, want %d", runs, on, sent, 10*runs)
		}
	}
	sw := small.Last()
	wantWalk(t, sw, layout)
	// A run that stops between finding a key and counting its prefix
	// finds it again: at most one request more per run.
	if sw.Runs != runs || sw.Runs < 2 || sw.Requests > 10*sw.Runs || sw.Requests < w.Requests || sw.Requests > w.Requests+sw.Runs {
		t.Errorf("resumed walk: %d requests in %d runs (the test ran %d), want the one-run walk's %d and at most one more a run, at most 10 a run", sw.Requests, sw.Runs, runs, w.Requests)
	}
	if small.LastResult() != KeyspaceComplete {
		t.Errorf("last result %q, want complete", small.LastResult())
	}

	// A walk just completed is not started again (a check's rounds).
	small.Fresh = time.Hour
	if err := small.Run(ctx, target); err != nil {
		t.Fatal(err)
	}
	if on, _ := small.InProgress(); on || small.Last().Completed != sw.Completed {
		t.Errorf("a fresh walk was started again")
	}
}

func sumKeys(rs []ResourceKeys) int64 {
	var n int64
	for _, r := range rs {
		n += r.Keys
	}
	return n
}

// A member frozen in the middle of a walk (SIGSTOP, as a stalled disk or
// a long pause would hold it) answers late: the run stops as slow, and
// the next run resumes the walk and completes it.
func TestKeyspaceProbeStopsWhileSlow(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Mode: etcdtest.Process})
	layout := kubeLayout(4000)
	putAll(t, c.Client(t), kubeKeys("/registry", layout), kubeValue, 8)
	target := localTarget(t, c)
	m := c.Member(0)

	p := newKeyspaceProbe(5000, 20*time.Millisecond)
	var wg sync.WaitGroup
	wg.Go(func() {
		// The walk has started (its requests go 20 ms apart, and it
		// needs more than 100).
		time.Sleep(300 * time.Millisecond)
		if err := m.Freeze(); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(1500 * time.Millisecond)
		if err := m.Thaw(); err != nil {
			t.Error(err)
		}
	})
	err := p.Run(context.Background(), target)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if p.LastResult() != KeyspaceSkippedSlow || !p.Last().Completed.IsZero() {
		t.Fatalf("result %q (walk completed %v), want skipped_slow and no complete walk", p.LastResult(), p.Last().Completed)
	}
	on, sent := p.InProgress()
	if !on || sent < 2 {
		t.Fatalf("walk in progress %v after %d requests, want one under way", on, sent)
	}
	if err := p.Run(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	if p.LastResult() != KeyspaceComplete {
		t.Fatalf("result %q after the member thawed, want complete", p.LastResult())
	}
	w := p.Last()
	wantWalk(t, w, layout)
	if w.Runs != 2 {
		t.Errorf("walk in %d runs, want 2", w.Runs)
	}
}

// The runner's view decides whether a run starts: not before every
// member's health is known, not while the local member is unreachable or
// failing linearizable reads, and not while its last status or
// serializable read was slower than the threshold.
func TestKeyspaceProbeSkips(t *testing.T) {
	member := func(mut func(*MemberView)) View {
		m := MemberView{Label: "etcd-1", Local: true, Reachable: true, Healthy: true, Serializable: true, Outcomes: map[string]Outcome{
			ProbeStatus:           {OK: true, Duration: 3 * time.Millisecond},
			ProbeReadSerializable: {OK: true, Duration: 2 * time.Millisecond},
		}}
		mut(&m)
		other := MemberView{Label: "etcd-2", Reachable: false}
		return View{MembershipKnown: true, HealthKnown: true, Members: []MemberView{other, m}}
	}
	for _, tc := range []struct {
		name   string
		view   View
		result string
	}{
		{"healthy, another member down", member(func(*MemberView) {}), ""},
		{"unreachable", member(func(m *MemberView) { m.Reachable, m.Healthy = false, false }), KeyspaceSkippedUnhealthy},
		{"no linearizable reads", member(func(m *MemberView) { m.Healthy = false }), KeyspaceSkippedUnhealthy},
		{"slow status", member(func(m *MemberView) { m.Outcomes[ProbeStatus] = Outcome{OK: true, Duration: 700 * time.Millisecond} }), KeyspaceSkippedSlow},
		{"slow serializable read", member(func(m *MemberView) {
			m.Outcomes[ProbeReadSerializable] = Outcome{OK: true, Duration: 600 * time.Millisecond}
		}), KeyspaceSkippedSlow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newKeyspaceProbe(10, 0)
			p.View = func() View { return tc.view }
			if result, _ := p.unfit(); result != tc.result {
				t.Errorf("unfit = %q, want %q", result, tc.result)
			}
		})
	}
	p := newKeyspaceProbe(10, 0)
	p.View = func() View { return View{MembershipKnown: true} }
	if err := p.Run(context.Background(), &Target{Client: &clientv3.Client{}}); err != ErrNotReady {
		t.Errorf("run before health is known: %v, want ErrNotReady", err)
	}
}

// Where a key's resource and namespace begin, for every layout
// kube-apiserver writes.
func TestKeyspaceResourceOf(t *testing.T) {
	for _, tc := range []struct{ key, resource, prefix string }{
		{"/registry/pods/default/web-0", "pods", "/registry/pods/"},
		{"/registry/minions/node-1", "minions", "/registry/minions/"},
		{"/registry/services/specs/default/kubernetes", "services/specs", "/registry/services/specs/"},
		{"/registry/services/endpoints/default/kubernetes", "services/endpoints", "/registry/services/endpoints/"},
		{"/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com", "apiextensions.k8s.io/customresourcedefinitions", "/registry/apiextensions.k8s.io/customresourcedefinitions/"},
		{"/registry/monitoring.coreos.com/servicemonitors/ns/sm", "monitoring.coreos.com/servicemonitors", "/registry/monitoring.coreos.com/servicemonitors/"},
		{"/registry/ranges/serviceips", "ranges", "/registry/ranges/"},
		{"/registry/health", "health", "/registry/health"},
		{"/registry/example.com/lonely", "example.com/lonely", "/registry/example.com/lonely"},
		{"/registry/bad\xffname/x", "bad\uFFFDname", "/registry/bad\xffname/"},
	} {
		res, prefix := resourceOf("/registry/", tc.key)
		if res != tc.resource || prefix != tc.prefix {
			t.Errorf("resourceOf(%q) = %q, %q; want %q, %q", tc.key, res, prefix, tc.resource, tc.prefix)
		}
	}
	for _, tc := range []struct {
		base, key, ns, prefix string
		namespaced            bool
	}{
		{"/registry/pods/", "/registry/pods/default/web-0", "default", "/registry/pods/default/", true},
		{"/registry/namespaces/", "/registry/namespaces/default", "default", "/registry/namespaces/default", false},
	} {
		ns, prefix, namespaced := namespaceOf(tc.base, tc.key)
		if ns != tc.ns || prefix != tc.prefix || namespaced != tc.namespaced {
			t.Errorf("namespaceOf(%q) = %q, %q, %v; want %q, %q, %v", tc.key, ns, prefix, namespaced, tc.ns, tc.prefix, tc.namespaced)
		}
	}
	for _, tc := range []struct {
		cursor string
		width  int
		hi     string
	}{
		{"/r/", 1, "/r/0"},
		{"/r/", 2, "/r/1"},
		{"/r/-x", 1, "/r/0"},
		{"/r/0", 1, "/r/1"},
		{"/r/0", 4, "/r/4"},
		{"/r/9z", 1, "/r/:"},
		{"/r/9z", 2, "/r/a"},
		{"/r/:", 1, "/r/a"},
		{"/r/;", 1, "/r/a"},
		{"/r/events0", 1, "/r/f"},
		{"/r/events0", 8, "/r/m"},
		{"/r/events0", 64, "/r0"},
		{"/r/zz", 1, "/r/{"},
		{"/r/{", 1, "/r0"},
		{"/r/\xff", 1, "/r0"},
	} {
		if hi := bucketEnd("/r/", tc.cursor, "/r0", tc.width); hi != tc.hi {
			t.Errorf("bucketEnd(%q, %d) = %q, want %q", tc.cursor, tc.width, hi, tc.hi)
		}
	}
}
