package probes

import (
	"slices"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// BenchmarkFsyncYield measures, interleaved in fresh files on a real disk,
// the probe's fdatasync latencies with and without its periodic yield to
// the Go scheduler (fsyncYieldEvery), and reports the p50 and p99 of each
// and the ratios without/with. Each iteration is one round of each kind,
// 3000 syncs of 2300 B in a 7 MiB file: far past the 10 ms after which the
// runtime starts taking the P of an unswitched goroutine at each blocking
// syscall. The result is in docs/benchmarks.md.
//
//	go test -run '^$' -bench BenchmarkFsyncYield -benchtime 6x ./probes/
//
// TMPDIR must be on a disk (not tmpfs): the benchmark measures there.
func BenchmarkFsyncYield(b *testing.B) {
	d := newDirs(b, testenv.DiskDir(b))
	const syncs, writeSize = 3000, 2300
	kinds := []struct {
		name  string
		every time.Duration
		ds    []time.Duration
	}{{name: "yield", every: fsyncYieldEvery}, {name: "noyield"}}
	for i := 0; b.Loop(); i++ {
		for j := range kinds {
			k := &kinds[(i+j)%len(kinds)] // alternate which goes first
			p := NewFsyncProbe(d.opts(syncs, writeSize, syncs*writeSize, nil))
			p.yieldEvery = k.every
			ds, err := p.Measure(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			k.ds = append(k.ds, ds...)
		}
	}
	var p50, p99 [2]float64
	for j, k := range kinds {
		slices.Sort(k.ds)
		p50[j], p99[j] = nearestRank(k.ds, 0.50), nearestRank(k.ds, 0.99)
		b.ReportMetric(p50[j], k.name+"-p50-µs")
		b.ReportMetric(p99[j], k.name+"-p99-µs")
	}
	b.ReportMetric(p50[1]/p50[0], "p50-noyield/yield")
	b.ReportMetric(p99[1]/p99[0], "p99-noyield/yield")
}

// nearestRank is the q-quantile of sorted durations, in microseconds.
func nearestRank(sorted []time.Duration, q float64) float64 {
	i := max(int(q*float64(len(sorted))+0.999999)-1, 0)
	return float64(sorted[i]) / float64(time.Microsecond)
}
