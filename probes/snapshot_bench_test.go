package probes

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// BenchmarkVerifySnapshot measures the check of one large snapshot, taken
// through the client API from a real etcd process holding 100 000 keys of
// 5 KiB (about 500 MB; ETCDPULSE_BENCH_SNAPSHOT_KEYS changes the count),
// written once, a tenth overwritten and a tenth deleted after a
// compaction, so that the snapshot has history after its compaction. Each
// sub-benchmark drops the file from the page cache first (fdatasync, then
// posix_fadvise DONTNEED), so its reads come from the disk:
//
//   - revisions: the cheap step that comes first (bolt opened read-only,
//     meta and the last key);
//   - trailer: the sha256 of the whole file, read sequentially;
//   - hash-cold: the KV hash of its store, as HashKV, from the disk;
//   - hash-after-trailer: the same right after the trailer's read, as the
//     probe runs it (the file in the page cache);
//   - probe: the whole check of a new snapshot by BackupProbe, against the
//     live member (its HashKV included), without a read limit and at
//     backups.read_rate's default.
//
// MB/s is the file's size over the time; peak-heap-MB the Go heap's peak
// growth during one check.
func BenchmarkVerifySnapshot(b *testing.B) {
	keys := 100_000
	if v := os.Getenv("ETCDPULSE_BENCH_SNAPSHOT_KEYS"); v != "" {
		if _, err := fmt.Sscan(v, &keys); err != nil {
			b.Fatalf("ETCDPULSE_BENCH_SNAPSHOT_KEYS: %v", err)
		}
	}
	c := etcdtest.Start(b, etcdtest.Options{Mode: etcdtest.Process, QuotaBackendBytes: 8 << 30})
	cli := c.Client(b)
	ctx := context.Background()
	val := strings.Repeat("x", 5*1024)
	load := func(from, to int, op func(key string) clientv3.Op) int64 {
		var rev int64
		for i := from; i < to; i += 100 {
			var ops []clientv3.Op
			for j := i; j < min(i+100, to); j++ {
				ops = append(ops, op(fmt.Sprintf("/registry/bench/%08d", j)))
			}
			resp, err := cli.Txn(ctx).Then(ops...).Commit()
			if err != nil {
				b.Fatal(err)
			}
			rev = resp.Header.Revision
		}
		return rev
	}
	start := time.Now()
	put := func(k string) clientv3.Op { return clientv3.OpPut(k, val) }
	rev := load(0, keys, put)
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		b.Fatal(err)
	}
	load(0, keys/10, put)
	load(keys/10, keys/5, func(k string) clientv3.Op { return clientv3.OpDelete(k) })

	dir := b.TempDir()
	path := filepath.Join(dir, "etcd-snapshot-bench-1717000000")
	rc, err := cli.Maintenance.Snapshot(ctx)
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		b.Fatal(err)
	}
	rc.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	info, err := SnapshotRevisions(path)
	if err != nil {
		b.Fatal(err)
	}
	size := info.Size
	b.Logf("%d keys loaded and snapshot written in %v: %d MB, revision %d, compacted at %d", keys, time.Since(start).Round(time.Second), size>>20, info.Revision, info.CompactRevision)
	live, err := cli.Maintenance.HashKV(ctx, c.ClientURLs()[0], info.Revision)
	if err != nil {
		b.Fatal(err)
	}
	cold := func() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		dropCache(f)
		f.Close()
	}
	tg := localTarget(b, c)
	run := func(name string, f func() error) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			var peak uint64
			for b.Loop() {
				b.StopTimer()
				cold()
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				stop := heapPeak(&peak, before.HeapAlloc)
				b.StartTimer()
				if err := f(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				stop()
				b.StartTimer()
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		})
	}
	run("revisions", func() error { _, err := SnapshotRevisions(path); return err })
	run("trailer", func() error { return CheckSnapshot(ctx, path, nil) })
	hash := func() error {
		h, err := HashSnapshot(ctx, path, info.Revision, live.CompactRevision)
		if err == nil && h.Hash != live.Hash {
			err = fmt.Errorf("hash %d, etcd's %d", h.Hash, live.Hash)
		}
		return err
	}
	run("hash-cold", hash)
	// As the probe runs it: right after the trailer's read.
	b.Run("hash-after-trailer", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			b.StopTimer()
			cold()
			if err := CheckSnapshot(ctx, path, nil); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := hash(); err != nil {
				b.Fatal(err)
			}
		}
	})
	probe := func(rate int64) func() error {
		return func() error {
			p := &BackupProbe{Dirs: []string{dir}, Limiter: NewReadLimiter(rate), Logger: slog.New(slog.DiscardHandler)}
			if err := p.Run(ctx, tg); err != nil {
				return err
			}
			if d, _ := p.Dir(dir); d.Newest == nil || d.Newest.Status != BackupVerified {
				return fmt.Errorf("not verified: %+v", d.Newest)
			}
			return nil
		}
	}
	run("probe", probe(0))
	run("probe-16MiBps", probe(16<<20))
}

// heapPeak samples the heap every 10 ms until stopped, and raises peak to
// the largest growth over base seen.
func heapPeak(peak *uint64, base uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > base && m.HeapAlloc-base > *peak {
				*peak = m.HeapAlloc - base
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}
