package probes

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
)

// BenchmarkKeyspace measures the key space walk on 1M keys laid out as
// kube-apiserver writes them (kubeLayout: 60 % events, 15 % pods, a
// custom resource, secrets, configmaps...; values of 300 B), in an etcd
// process (ETCDPULSE_ETCD_BIN): the requests and wall time of a walk at
// the defaults (2,000 requests a run, 10 ms apart), the same walk without
// pauses (etcd's own time), and the latency of concurrent puts (4 writers)
// while walks run against windows of the same length without, interleaved.
// Beside them, what bytes per resource would cost: one keys-only listing
// and one full listing (values) of the events, in pages of 10,000, and a
// one-key request over the whole prefix (what a next-key request without
// buckets costs: etcd counts the whole range). The results are in
// docs/benchmarks.md.
//
//	ETCDPULSE_ETCD_BIN=bin/etcd go test -run '^$' -bench BenchmarkKeyspace -benchtime 5x -timeout 30m ./probes/
func BenchmarkKeyspace(b *testing.B) {
	c := etcdtest.Start(b, etcdtest.Options{Mode: etcdtest.Process, QuotaBackendBytes: 8 << 30})
	cli := c.Client(b)
	layout := kubeLayout(1_025_000) // 1,000,597 keys
	keys := kubeKeys("/registry", layout)
	value := "k8s\x00" + string(make([]byte, 296))
	start := time.Now()
	if len(keys) < 1_000_000 {
		b.Fatalf("layout of %d keys, want at least 1M", len(keys))
	}
	putAll(b, cli, keys, value, 16)
	b.Logf("loaded %d keys in %s", len(keys), time.Since(start).Round(time.Second))
	target := localTarget(b, c)
	ctx := context.Background()

	// etcd's own time: a walk without pauses.
	var bare []time.Duration
	var requests int
	for range 3 {
		p := newKeyspaceProbe(2000, 0)
		t0 := time.Now()
		if err := p.Run(ctx, target); err != nil || p.LastResult() != KeyspaceComplete {
			b.Fatalf("walk: %v %s", err, p.LastResult())
		}
		bare = append(bare, time.Since(t0))
		requests = p.Last().Requests
		if p.Last().Keys != int64(len(keys)) {
			b.Fatalf("walk counted %d keys, want %d", p.Last().Keys, len(keys))
		}
	}

	// Puts beside walks at the defaults, and beside nothing, in windows of
	// the same length, interleaved.
	var with, without []time.Duration
	var walks []time.Duration
	for i := 0; b.Loop(); i++ {
		p := newKeyspaceProbe(2000, 10*time.Millisecond)
		var walked time.Duration
		ds := putsWhile(b, cli, func() {
			t0 := time.Now()
			if err := p.Run(ctx, target); err != nil || p.LastResult() != KeyspaceComplete {
				b.Errorf("walk: %v %s", err, p.LastResult())
			}
			walked = time.Since(t0)
		})
		walks = append(walks, walked)
		with = append(with, ds...)
		without = append(without, putsWhile(b, cli, func() { time.Sleep(walked) })...)
	}

	// Bytes per resource would need listings.
	events := "/registry/events/"
	keysOnly, keysBytes := listAll(b, cli, events, clientv3.WithKeysOnly())
	full, fullBytes := listAll(b, cli, events)
	t0 := time.Now()
	if _, err := cli.Get(ctx, "/registry/", clientv3.WithRange(clientv3.GetPrefixRangeEnd("/registry/")), clientv3.WithKeysOnly(), clientv3.WithLimit(1), clientv3.WithSerializable()); err != nil {
		b.Fatal(err)
	}
	wide := time.Since(t0)
	t0 = time.Now()
	if _, err := cli.Get(ctx, events, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable()); err != nil {
		b.Fatal(err)
	}
	count := time.Since(t0)

	slices.Sort(with)
	slices.Sort(without)
	slices.Sort(walks)
	slices.Sort(bare)
	b.ReportMetric(float64(requests), "requests/walk")
	b.ReportMetric(walks[len(walks)/2].Seconds(), "walk-s")
	b.ReportMetric(bare[len(bare)/2].Seconds(), "walk-nopause-s")
	b.ReportMetric(nearestRank(with, 0.50)/1000, "put-p50-walk-ms")
	b.ReportMetric(nearestRank(without, 0.50)/1000, "put-p50-idle-ms")
	b.ReportMetric(nearestRank(with, 0.99)/1000, "put-p99-walk-ms")
	b.ReportMetric(nearestRank(without, 0.99)/1000, "put-p99-idle-ms")
	b.ReportMetric(float64(with[len(with)-1])/1e6, "put-max-walk-ms")
	b.ReportMetric(float64(without[len(without)-1])/1e6, "put-max-idle-ms")
	b.ReportMetric(count.Seconds()*1000, "count-events-ms")
	b.ReportMetric(wide.Seconds()*1000, "onekey-whole-prefix-ms")
	b.ReportMetric(keysOnly.Seconds(), "list-events-keys-s")
	b.ReportMetric(float64(keysBytes)/1e6, "list-events-keys-MB")
	b.ReportMetric(full.Seconds(), "list-events-values-s")
	b.ReportMetric(float64(fullBytes)/1e6, "list-events-values-MB")
	b.Logf("%d puts beside walks, %d beside nothing", len(with), len(without))
}

// putsWhile runs 4 writers, each putting a key after the other, while f
// runs, and returns the latencies of their puts.
func putsWhile(b *testing.B, cli *clientv3.Client, f func()) []time.Duration {
	var stop atomic.Bool
	var mu sync.Mutex
	var out []time.Duration
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			var ds []time.Duration
			for i := 0; !stop.Load(); i++ {
				t0 := time.Now()
				if _, err := cli.Put(context.Background(), fmt.Sprintf("/bench/%d/%d", w, i%100), "v"); err != nil {
					b.Error(err)
					return
				}
				ds = append(ds, time.Since(t0))
			}
			mu.Lock()
			out = append(out, ds...)
			mu.Unlock()
		})
	}
	f()
	stop.Store(true)
	wg.Wait()
	return out
}

// listAll lists a prefix in pages of 10,000, as a paginated client would,
// and returns the time and the bytes of keys and values received.
func listAll(b *testing.B, cli *clientv3.Client, prefix string, opts ...clientv3.OpOption) (time.Duration, int64) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	var n int64
	t0 := time.Now()
	for {
		resp, err := cli.Get(context.Background(), from, append(opts, clientv3.WithRange(end), clientv3.WithLimit(10_000), clientv3.WithSerializable())...)
		if err != nil {
			b.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			n += int64(len(kv.Key) + len(kv.Value))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return time.Since(t0), n
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
