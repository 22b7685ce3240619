package probes

import (
	"math"
	"slices"
	"sync"
	"time"
)

// quantileOf keeps the 99th percentile of the last batch of samples
// recorded, such as one fsync round's.
type quantileOf struct {
	mu  sync.Mutex
	p99 float64
	ok  bool
}

// record replaces the figure with the p99 of ds (the nearest-rank
// percentile: the value at rank ceil(0.99 n)); no samples keep the last.
func (q *quantileOf) record(ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(0.99*float64(len(s)))) - 1
	q.mu.Lock()
	defer q.mu.Unlock()
	q.p99, q.ok = s[rank].Seconds(), true
}

func (q *quantileOf) get() (float64, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.p99, q.ok
}
