package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

func countAtLeast(name string, min float64, labels ...string) expect {
	return func(m metrics) error {
		mf, ok := m[name]
		if !ok {
			return fmt.Errorf("%s absent", name)
		}
		for _, s := range mf.Metric {
			match := true
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range s.Label {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				match = match && found
			}
			if match && s.Histogram != nil && float64(s.Histogram.GetSampleCount()) >= min {
				return nil
			}
		}
		return fmt.Errorf("%s%v: fewer than %v samples", name, labels, min)
	}
}

// The write probe puts <prefix><member>/write through the local member on
// a lease, times each commit, and revokes the lease when the agent stops:
// nothing it wrote is left behind.
func TestWriteProbe(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	a, logs := startLoggedAgent(t, c.ClientURLs()[:1], func(cfg *Config) { cfg.Probes.Write.Interval = Duration(time.Second) })
	member := c.Member(0).Name()
	a.waitFor(t, "three timed writes through the local member",
		gauge("etcdpulse_write_enabled", 1),
		countAtLeast("etcdpulse_write_duration_seconds", 3, "member", member),
		gauge("etcdpulse_probe_success", 1, "probe", "write", "member", member))

	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	key := DefaultKeyPrefix + member + "/write"
	// Not keys-only: etcd 3.7 answers that from its index, without leases.
	resp, err := cli.Get(ctx, DefaultKeyPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != key || resp.Kvs[0].Lease == 0 {
		t.Fatalf("keys under %s: %v, want only %s on a lease", DefaultKeyPrefix, resp.Kvs, key)
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL <= 0 || ttl.TTL > int64(writeLeaseTTL/time.Second) {
		t.Fatalf("lease TTL %d s, want 1..%v", ttl.TTL, writeLeaseTTL)
	}

	a.stop()
	resp, err = cli.Get(ctx, DefaultKeyPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("%d keys left under %s after a clean stop; log:\n%s", resp.Count, DefaultKeyPrefix, logs)
	}
}

// etcd.read_only: the agent writes nothing at all (the cluster's revision
// does not move while it probes) and says the write probe is off.
func TestReadOnly(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess})
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	before, err := cli.Get(ctx, "x", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, c.ClientURLs(), func(cfg *Config) { cfg.Etcd.ReadOnly = true; cfg.Disk.Enabled = false })
	a.waitFor(t, "a healthy member, writes off", append(healthyCluster(1), gauge("etcdpulse_write_enabled", 0))...)
	// Several rounds more.
	time.Sleep(3 * time.Second)
	after, err := cli.Get(ctx, "x", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != before.Header.Revision {
		t.Fatalf("revision %d -> %d: a read-only agent wrote", before.Header.Revision, after.Header.Revision)
	}
	if err := a.check(countAtLeast("etcdpulse_write_duration_seconds", 1)); err == nil {
		t.Error("write latencies observed with writes off")
	}
}

// A role that may read the prefix but not write it: the member stays
// healthy, the refusal names the prefix and the permission to grant.
func TestWritePermissionDenied(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess})
	cli := withAuth(t, c, "pw", false)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := cli.RoleGrantPermission(ctx, "etcdpulse", DefaultKeyPrefix, clientv3.GetPrefixRangeEnd(DefaultKeyPrefix), clientv3.PermissionType(clientv3.PermRead)); err != nil {
		t.Fatal(err)
	}
	a, logs := startLoggedAgent(t, c.ClientURLs(), credentials("pw"))
	member := c.Member(0).Name()
	a.waitFor(t, "healthy, the write refused",
		append(healthyCluster(1),
			gauge("etcdpulse_agent_refused", 1, "member", member, "reason", "permission_denied"),
			counterAtLeast("etcdpulse_probe_failures_total", 1))...)
	testenv.Eventually(t, 30*time.Second, "the refusal logged with the prefix and the permission", func() error {
		if l := logs.Lines("denies the agent a permission", "readwrite permission on its key prefix /etcdpulse/", "docs/security.md"); len(l) != 1 {
			return fmt.Errorf("%d matching lines; log:\n%s", len(l), logs)
		} else if _, msg, _ := strings.Cut(l[0], " reason="); !docsQuote(t, "security.md", "reason="+msg) {
			t.Errorf("docs/security.md does not quote the log line as the agent writes it:\n%s", msg)
		}
		return nil
	})
}

// docsQuote reports whether docs/<file> contains text.
func docsQuote(t *testing.T, file, text string) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), text)
}
