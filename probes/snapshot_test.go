package probes

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

func snapCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// saveSnapshot writes a snapshot taken through the client API, as
// etcdctl snapshot save does (the member's database and etcd's sha256
// trailer), to dir/name, and returns its path.
func saveSnapshot(t *testing.T, cli *clientv3.Client, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	etcdtest.SaveSnapshot(t, cli, path)
	return path
}

// history writes, overwrites and deletes keys: n rounds over a few keys.
func history(t *testing.T, cli *clientv3.Client, prefix string, n int) int64 {
	t.Helper()
	ctx := snapCtx(t)
	var rev int64
	for i := range n {
		key := fmt.Sprintf("%s%d", prefix, i%7)
		resp, err := cli.Put(ctx, key, fmt.Sprintf("value %d", i))
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
		if i%3 == 2 {
			d, err := cli.Delete(ctx, fmt.Sprintf("%s%d", prefix, (i+2)%7))
			if err != nil {
				t.Fatal(err)
			}
			rev = d.Header.Revision
		}
	}
	return rev
}

func compact(t *testing.T, cli *clientv3.Client, rev int64) {
	t.Helper()
	if _, err := cli.Compact(snapCtx(t), rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
}

func lastRevision(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(snapCtx(t), "x")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestHashSnapshotMatchesEtcd: the hash the agent computes from a
// snapshot file equals the HashKV a real member answers at the
// snapshot's revision: with puts, deletes and overwrites; with the
// snapshot's own compaction; with a compaction of the member after the
// snapshot (the member's compact revision, later than the snapshot's);
// with a tombstone at the compact revision; with a txn of several keys.
func TestHashSnapshotMatchesEtcd(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := c.Client(t)
	ctx := snapCtx(t)
	dir := t.TempDir()
	ep := c.ClientURLs()[0]

	check := func(t *testing.T, path string) {
		t.Helper()
		info, err := ReadSnapshot(ctx, path, nil)
		if err != nil {
			t.Fatalf("ReadSnapshot: %v", err)
		}
		if !info.Checksum {
			t.Fatalf("a snapshot through the client API has no sha256 trailer: size %d", info.Size)
		}
		want, err := cli.Maintenance.HashKV(ctx, ep, info.Revision)
		if err != nil {
			t.Fatalf("HashKV at %d: %v", info.Revision, err)
		}
		got, err := HashSnapshot(ctx, path, info.Revision, want.CompactRevision)
		if err != nil {
			t.Fatalf("HashSnapshot: %v", err)
		}
		if got.Hash != want.Hash {
			t.Errorf("%s: hash %d at revision %d (compact %d, the snapshot's %d), etcd's HashKV %d", filepath.Base(path), got.Hash, info.Revision, want.CompactRevision, info.CompactRevision, want.Hash)
		} else {
			t.Logf("%s: hash %d at revision %d, compact %d (snapshot's %d)", filepath.Base(path), got.Hash, info.Revision, want.CompactRevision, info.CompactRevision)
		}
	}

	// Never compacted.
	history(t, cli, "/a/", 40)
	check(t, saveSnapshot(t, cli, dir, "never-compacted.db"))

	// Compacted, then more history; the snapshot's own compaction.
	compact(t, cli, history(t, cli, "/b/", 30)-5)
	history(t, cli, "/c/", 30)
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("/t/1", "x"), clientv3.OpPut("/t/2", "y"), clientv3.OpDelete("/a/1")).Commit(); err != nil {
		t.Fatal(err)
	}
	s2 := saveSnapshot(t, cli, dir, "compacted.db")
	check(t, s2)

	// The member compacts again after the snapshot, below its revision:
	// the member's compact revision is later than the snapshot's.
	info, err := ReadSnapshot(ctx, s2, nil)
	if err != nil {
		t.Fatal(err)
	}
	history(t, cli, "/d/", 20)
	compact(t, cli, info.Revision-3)
	check(t, s2)

	// Without the member's compact revision, the snapshot's own would
	// give another hash: the member's is what makes them agree.
	own, err := HashSnapshot(ctx, s2, info.Revision, info.CompactRevision)
	if err != nil {
		t.Fatal(err)
	}
	live, err := cli.Maintenance.HashKV(ctx, ep, info.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if own.Hash == live.Hash {
		t.Errorf("hash at the snapshot's own compact revision %d equals the member's at %d: the case tests nothing", info.CompactRevision, live.CompactRevision)
	}

	// A tombstone at the member's compact revision, below the snapshot's
	// revision.
	if _, err := cli.Put(ctx, "/e/x", "x"); err != nil {
		t.Fatal(err)
	}
	d, err := cli.Delete(ctx, "/e/x")
	if err != nil || d.Deleted != 1 {
		t.Fatalf("delete: %v, %+v", err, d)
	}
	history(t, cli, "/e/", 10)
	s3 := saveSnapshot(t, cli, dir, "tombstone.db")
	history(t, cli, "/f/", 10)
	compact(t, cli, d.Header.Revision)
	check(t, s3)

	// At a compaction's own revision etcd 3.6+ answers the hash it kept
	// from the compaction, over the compaction before.
	s4 := saveSnapshot(t, cli, dir, "at-compaction.db")
	i4, err := ReadSnapshot(ctx, s4, nil)
	if err != nil {
		t.Fatal(err)
	}
	history(t, cli, "/h/", 5)
	compact(t, cli, i4.Revision)
	check(t, s4)

	// A store where every key is deleted (Keep is empty).
	c2 := etcdtest.Start(t, etcdtest.Options{})
	cli2 := c2.Client(t)
	history(t, cli2, "/g/", 10)
	if _, err := cli2.Delete(ctx, "/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	compact(t, cli2, lastRevision(t, cli2)-2)
	empty := saveSnapshot(t, cli2, dir, "empty.db")
	infoE, err := ReadSnapshot(ctx, empty, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := cli2.Maintenance.HashKV(ctx, c2.ClientURLs()[0], infoE.Revision)
	if err != nil {
		t.Fatal(err)
	}
	got, err := HashSnapshot(ctx, empty, infoE.Revision, want.CompactRevision)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash != want.Hash {
		t.Errorf("every key deleted: hash %d, etcd's %d", got.Hash, want.Hash)
	}
}

// TestReadSnapshotCorrupt: a truncated copy, a copy with one byte
// flipped, a copy cut at a page boundary (no trailer left) and a file
// that is no database are corrupt; the original is not, and its
// revision is the member's.
func TestReadSnapshotCorrupt(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cli := c.Client(t)
	ctx := snapCtx(t)
	dir := t.TempDir()
	rev := history(t, cli, "/k/", 50)
	good := saveSnapshot(t, cli, dir, "good.db")
	info, err := ReadSnapshot(ctx, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != rev || !info.Checksum {
		t.Fatalf("snapshot: revision %d, checksum %v; want %d, true", info.Revision, info.Checksum, rev)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	db := data[:len(data)-sha256.Size]
	flipped := append([]byte(nil), data...)
	flipped[len(db)/2] ^= 0x40
	cases := map[string][]byte{
		"truncated":      data[:len(data)/2+100],
		"flipped":        flipped,
		"page boundary":  db[:len(db)-8192],
		"not a database": make([]byte, 8192),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadSnapshot(ctx, path, nil)
			if !errors.Is(err, ErrSnapshotCorrupt) {
				t.Fatalf("ReadSnapshot = %v, want a corrupt snapshot", err)
			}
			t.Log(err)
		})
	}
	// Without its trailer (a copy of a data directory's db), the same
	// database is read, checked by bolt.
	plain := filepath.Join(dir, "plain.db")
	if err := os.WriteFile(plain, db, 0o600); err != nil {
		t.Fatal(err)
	}
	pi, err := ReadSnapshot(ctx, plain, nil)
	if err != nil || pi.Checksum || pi.Revision != rev {
		t.Fatalf("no trailer: %+v, %v; want revision %d, no checksum", pi, err, rev)
	}
}
