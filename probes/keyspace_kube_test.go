package probes

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/kubetest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// The key space as a real kube-apiserver writes it: namespaces,
// configmaps, events and leases created through its REST API, and what
// the API server creates itself. The walk's count of each resource is
// what the API lists, and the configmaps of each namespace too.
func TestKeyspaceKubeAPIServer(t *testing.T) {
	s := kubetest.Start(t)
	ctx := context.Background()
	created := map[string]int{"ks-a": 30, "ks-b": 12, "ks-c": 4}
	var manifest strings.Builder
	for ns, n := range created {
		s.CreateNamespace(t, ns, nil)
		for i := range n {
			fmt.Fprintf(&manifest, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d, namespace: %s}\ndata: {k: v}\n", i, ns)
		}
		for i := range n / 2 {
			fmt.Fprintf(&manifest, "---\napiVersion: v1\nkind: Event\nmetadata: {name: ev-%d, namespace: %s}\ninvolvedObject: {kind: ConfigMap, name: cm-%d, namespace: %s}\nreason: Test\nmessage: test\ntype: Normal\n", i, ns, i, ns)
		}
		fmt.Fprintf(&manifest, "---\napiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: lease, namespace: %s}\nspec: {holderIdentity: test}\n", ns)
	}
	if err := s.Apply(ctx, []byte(manifest.String()), false); err != nil {
		t.Fatal(err)
	}
	target := localTarget(t, s.Etcd)
	lists := map[string]string{
		"configmaps":                         "/api/v1/configmaps",
		"events":                             "/api/v1/events",
		"leases":                             "/apis/coordination.k8s.io/v1/leases",
		"namespaces":                         "/api/v1/namespaces",
		"serviceaccounts":                    "/api/v1/serviceaccounts",
		"clusterroles":                       "/apis/rbac.authorization.k8s.io/v1/clusterroles",
		"services/specs":                     "/api/v1/services",
		"apiregistration.k8s.io/apiservices": "/apis/apiregistration.k8s.io/v1/apiservices",
	}
	// The API server writes objects of its own as it starts (its lease,
	// RBAC defaults, APIServices): compare once two lists agree with
	// the walk between them.
	testenv.Eventually(t, time.Minute, "the walk's counts equal the API's lists", func() error {
		before, err := listCounts(ctx, s, lists)
		if err != nil {
			return err
		}
		p := newKeyspaceProbe(5000, 0)
		if err := p.Run(ctx, target); err != nil {
			return err
		}
		after, err := listCounts(ctx, s, lists)
		if err != nil {
			return err
		}
		w := p.Last()
		got := map[string]int64{}
		for _, r := range w.Resources {
			got[r.Resource] = r.Keys
		}
		for res, n := range after {
			if before[res] != n {
				return fmt.Errorf("%s changed during the walk (%d, then %d)", res, before[res], n)
			}
			if got[res] != int64(n) {
				return fmt.Errorf("%s: walk counted %d keys, the API lists %d (walk: %+v)", res, got[res], n, w.Resources)
			}
		}
		cms := map[string]int64{}
		for _, ns := range w.Namespaces["configmaps"] {
			cms[ns.Namespace] = ns.Keys
		}
		for ns, n := range created {
			if cms[ns] != int64(n) {
				return fmt.Errorf("configmaps in %s: %d, want %d (walk: %+v)", ns, cms[ns], n, w.Namespaces)
			}
		}
		t.Logf("%d keys in %d resources, %d requests: %+v", w.Keys, len(w.Resources), w.Requests, w.Resources)
		return nil
	})
}

// listCounts lists each resource through the API.
func listCounts(ctx context.Context, s *kubetest.APIServer, lists map[string]string) (map[string]int, error) {
	out := map[string]int{}
	for res, path := range lists {
		body, code, err := s.Do(ctx, http.MethodGet, path)
		if err != nil {
			return nil, err
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %d %s", path, code, body)
		}
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
		out[res] = len(list.Items)
	}
	return out, nil
}
