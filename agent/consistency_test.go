package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	mvcctestutil "go.etcd.io/etcd/server/v3/storage/mvcc/testutil"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// checksAtLeast: etcdpulse_hash_checks_total{result} is at least min.
func checksAtLeast(result string, min float64) expect {
	return func(m metrics) error {
		got, _ := m.value("etcdpulse_hash_checks_total", "result", result)
		if got < min {
			return fmt.Errorf("hash checks with result %s = %v, want >= %v", result, got, min)
		}
		return nil
	}
}

// corruptOffline kills m once it has applied revision rev and written it
// to its database file (a defragmentation commits everything: entries only
// in the WAL would be replayed over the corruption at restart), alters every
// key and value in its bolt database as etcd's own corruption tests do,
// and starts it again.
func corruptOffline(t *testing.T, m *etcdtest.Member, rev int64) {
	t.Helper()
	cli := m.Client(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		resp, err := cli.Get(ctx, "/none", clientv3.WithSerializable())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Revision >= rev {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := cli.Defragment(ctx, m.ClientURL()); err != nil {
		t.Fatal(err)
	}
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := mvcctestutil.CorruptBBolt(filepath.Join(m.DataDir(), "member", "snap", "db")); err != nil {
		t.Fatal(err)
	}
	restart(t, m)
}

// While keys are written and the cluster is compacted every second, every
// conclusive check agrees: a compaction applied by one member and not yet
// by another is inconclusive, never a mismatch.
func TestHashConsistencyUnderCompaction(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	a := startAgent(t, c.ClientURLs()[:1], func(cfg *Config) {
		cfg.Probes.Hash.Interval = Duration(time.Second)
		cfg.Disk.Enabled = false
	})
	cli := c.Client(t)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			resp, err := cli.Put(ctx, fmt.Sprintf("/load/%d", i%500), fmt.Sprint(i))
			if err == nil && i%100 == 99 {
				cli.Compact(ctx, resp.Header.Revision) //nolint:errcheck // a compaction racing another is refused; the load goes on
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	var exps []expect
	for _, m := range c.Members() {
		exps = append(exps, gauge("etcdpulse_member_hash_mismatch", 0, "member", m.Name()))
	}
	a.waitFor(t, "ten matching checks under load and compaction", append(exps, checksAtLeast("match", 10))...)
	m := mustScrape(t, a)
	if got, _ := m.value("etcdpulse_hash_checks_total", "result", "mismatch"); got != 0 {
		t.Fatalf("%v mismatches reported on a consistent cluster", got)
	}
	for _, r := range []string{"inconclusive", "skipped_slow", "skipped_unhealthy"} {
		got, _ := m.value("etcdpulse_hash_checks_total", "result", r)
		t.Logf("checks %s: %v", r, got)
	}
}

// On etcd 3.6+, after compactions, the check compares the hashes etcd
// computed at the latest compaction (reading no store): a member whose
// store was altered offline, then compacted with the others, is named.
func TestHashMismatchAtCompaction(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.Process})
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	put := func(n int) int64 {
		t.Helper()
		var rev int64
		for i := range n {
			resp, err := cli.Put(ctx, fmt.Sprintf("/data/%d", i), fmt.Sprint(i))
			if err != nil {
				t.Fatal(err)
			}
			rev = resp.Header.Revision
		}
		return rev
	}
	corrupt := c.Member(2)
	corruptOffline(t, corrupt, put(20))
	// Two compactions after the restart: every member keeps the hash of
	// the second, over the same range.
	for range 2 {
		if _, err := cli.Compact(ctx, put(5), clientv3.WithCompactPhysical()); err != nil {
			t.Fatal(err)
		}
	}
	a, logs := startLoggedAgent(t, c.ClientURLs()[:1], func(cfg *Config) {
		cfg.Probes.Hash.Interval = Duration(time.Second)
		cfg.Etcd.ReadOnly = true
		cfg.Disk.Enabled = false
	})
	a.waitFor(t, "the corrupt member in the minority",
		gauge("etcdpulse_member_hash_mismatch", 1, "member", corrupt.Name()),
		gauge("etcdpulse_member_hash_mismatch", 0, "member", c.Member(0).Name()),
		checksAtLeast("mismatch", 1))
	if l := logs.Lines("members' data differ", "at_compaction=true", "minority=["+corrupt.Name()+"]"); len(l) == 0 {
		t.Errorf("no mismatch at a compaction's hash naming %s; log:\n%s", corrupt.Name(), logs)
	}
}

// A member whose store was altered offline (etcd's own corruption tests
// do the same: every key and value in its bolt database changed) is named
// in the minority once it serves again; the others agree.
func TestHashMismatchNamesCorruptMember(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.Process})
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var rev int64
	for i := range 20 {
		resp, err := cli.Put(ctx, fmt.Sprintf("/data/%d", i), "v")
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	corrupt := c.Member(2)
	corruptOffline(t, corrupt, rev)
	a, logs := startLoggedAgent(t, c.ClientURLs()[:1], func(cfg *Config) {
		cfg.Probes.Hash.Interval = Duration(time.Second)
		cfg.Etcd.ReadOnly = true // the data changed under etcd: no writes to add to it
		cfg.Disk.Enabled = false
	})
	a.waitFor(t, "the corrupt member in the minority",
		gauge("etcdpulse_member_hash_mismatch", 1, "member", corrupt.Name()),
		gauge("etcdpulse_member_hash_mismatch", 0, "member", c.Member(0).Name()),
		gauge("etcdpulse_member_hash_mismatch", 0, "member", c.Member(1).Name()),
		checksAtLeast("mismatch", 1))
	if l := logs.Lines("members' data differ", "minority=["+corrupt.Name()+"]"); len(l) == 0 {
		t.Errorf("the mismatch not logged naming %s; log:\n%s", corrupt.Name(), logs)
	}
}
