package probes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ProbeHash is the hash consistency probe's name.
const ProbeHash = "hash"

// Results of one hash consistency check, the values of the result label.
const (
	// HashMatch: every member's hash at the pinned revision agrees.
	HashMatch = "match"
	// HashMismatch: some member's hash differs from the others'.
	HashMismatch = "mismatch"
	// HashInconclusive: the members hashed different ranges (their
	// compact revisions differ: a compaction in flight, or the pinned
	// revision was compacted meanwhile) in every attempt.
	HashInconclusive = "inconclusive"
	// HashSkippedUnhealthy: a member was unreachable or unhealthy in the
	// last round; a check then would load a cluster in trouble.
	HashSkippedUnhealthy = "skipped_unhealthy"
	// HashSkippedSlow: a member answered a serializable read slower than
	// the threshold (busy, or a defragmentation holds its backend).
	HashSkippedSlow = "skipped_slow"
)

// HashResults lists the results, for documentation and tests.
var HashResults = []string{HashMatch, HashMismatch, HashInconclusive, HashSkippedUnhealthy, HashSkippedSlow}

// HashProbe compares the members' key-value stores: HashKV of every member
// at one common revision, the lowest revision all of them have applied
// (never 0, which means each member's own current revision, and never
// below the compact revision: etcd refuses that). The hashes cover the
// revisions after the compact revision, so they are compared only when
// every member reports the same compact revision; on etcd 3.6+ each also
// says the revision it hashed (hash_revision), which must be the pinned
// one. The members outside the largest group that agrees are in the
// minority; with no majority every member is.
//
// Which revision: etcd 3.6+ computes a hash at each compaction, as it
// scans the store anyway, and keeps the last ten in memory; HashKV at such
// a revision answers from there without reading the store. Where every
// member runs 3.6+ and the store has been compacted (the Kubernetes API
// server compacts every 5 minutes), the check pins the latest compact
// revision every member has reached, and costs nothing. Otherwise (3.4,
// 3.5, a store never compacted, or a member that restarted since and lost
// its hashes) HashKV reads the member's whole store under its read lock,
// which holds back its commits meanwhile (docs/benchmarks.md has the
// figures): the members are hashed one after the other, so that only one
// at a time is held back, the check runs rarely, and not when the cluster
// is in trouble: it is skipped while a member is unhealthy or slower than
// SlowThreshold to answer a serializable read (a defragmentation holds the
// backend and blocks those).
type HashProbe struct {
	Targets *Targets
	// View returns the cluster as the last round saw it.
	View func() View
	// Key is read serializably from each member first: its header gives
	// the member's revision, and its time whether the member is slow.
	Key string
	// SlowThreshold is the slowest answer to that read a check goes on
	// with.
	SlowThreshold time.Duration
	// Checks counts checks by result.
	Checks *prometheus.CounterVec
	Logger *slog.Logger

	mu   sync.Mutex
	last HashCheck
	// result is the last check's result (one of HashResults), "" before
	// one.
	result string
	// failed is the last run's error, to log each new one once.
	failed string
}

// HashCheck is the last conclusive check.
type HashCheck struct {
	At              time.Time
	Revision        int64
	CompactRevision int64
	// AtCompaction: the revision was a compaction's, whose hashes etcd
	// 3.6+ keeps: the check read no store.
	AtCompaction bool
	// Mismatch says, per member label, whether it was in the minority.
	Mismatch map[string]bool
}

// Name implements Probe.
func (p *HashProbe) Name() string { return ProbeHash }

// Last returns the last conclusive check; At is zero before one.
func (p *HashProbe) Last() HashCheck {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// LastResult is the last check's result, one of HashResults; "" before
// one, and while there is nothing to compare (a single member).
func (p *HashProbe) LastResult() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.result
}

// hashAttempts: a check whose members hashed different ranges is retried
// this many times in all, a second apart.
const hashAttempts = 3

// Run implements Probe. The target is not used: the check asks every
// member.
func (p *HashProbe) Run(ctx context.Context, _ *Target) error {
	if p.View != nil && !p.View().HealthKnown {
		// The first rounds: try again at the next tick.
		return ErrNotReady
	}
	if skip := p.unhealthy(); skip != "" {
		p.count(HashSkippedUnhealthy)
		p.log().Info("hash consistency check skipped", "why", skip)
		return nil
	}
	var targets []*Target
	for _, t := range p.Targets.All() {
		if t.Client != nil {
			targets = append(targets, t)
		}
	}
	if len(targets) < 2 {
		return nil // nothing to compare
	}
	for attempt := 1; ; attempt++ {
		result, err := p.check(ctx, targets)
		p.noteError(err)
		if err != nil {
			return err
		}
		if result != HashInconclusive || attempt == hashAttempts {
			p.count(result)
			return nil
		}
		select {
		case <-ctx.Done():
			p.count(HashInconclusive)
			return nil
		case <-time.After(time.Second):
		}
	}
}

// unhealthy says why the cluster is not fit for a check, or "".
func (p *HashProbe) unhealthy() string {
	if p.View == nil {
		return ""
	}
	v := p.View()
	for _, m := range v.Members {
		if m.Endpoint == "" {
			continue
		}
		if !m.Reachable || !m.Healthy {
			return "member " + m.Label + " is not healthy"
		}
	}
	return ""
}

type memberHash struct {
	t    *Target
	resp *clientv3.HashKVResponse
	err  error
}

// check runs one attempt: the members' revisions, then their hashes at
// the lowest one, or at their common compact revision where HashKV answers
// that from memory.
func (p *HashProbe) check(ctx context.Context, targets []*Target) (string, error) {
	revs := make([]int64, len(targets))
	errs := make([]error, len(targets))
	slow := make([]bool, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, p.SlowThreshold)
			defer cancel()
			start := time.Now()
			resp, err := t.Client.KV.Get(rctx, p.Key, clientv3.WithSerializable(), clientv3.WithCountOnly())
			slow[i] = time.Since(start) > p.SlowThreshold || errors.Is(err, context.DeadlineExceeded)
			if err == nil {
				revs[i] = resp.Header.Revision
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, t := range targets {
		if slow[i] {
			p.log().Info("hash consistency check skipped", "why", "member slow to answer a serializable read", "member", t.Label(), "threshold", p.SlowThreshold)
			return HashSkippedSlow, nil
		}
		if errs[i] != nil {
			return "", fmt.Errorf("hash: reading member %s's revision: %w", t.Label(), errs[i])
		}
	}
	rev := slices.Min(revs)
	atCompaction := false
	if p.compactionHashes() {
		c, ok, err := p.compactRevision(ctx, targets)
		if err != nil {
			return "", err
		}
		if ok {
			rev, atCompaction = c, true
		}
	}

	// One member after the other: a HashKV that reads the store holds
	// back that member's commits, and a quorum of the others commits
	// meanwhile.
	hashes := make([]memberHash, len(targets))
	for i, t := range targets {
		resp, err := t.Maintenance.HashKV(ctx, t.Endpoint, rev)
		hashes[i] = memberHash{t, resp, err}
		if err != nil {
			break
		}
	}
	for _, h := range hashes {
		switch {
		case h.t == nil:
			// Not asked: an earlier member failed.
		case errors.Is(h.err, rpctypes.ErrCompacted):
			// Compacted past the pinned revision between the two steps.
			return HashInconclusive, nil
		case errors.Is(h.err, rpctypes.ErrPermissionDenied):
			return "", fmt.Errorf("hash: member %s refuses HashKV: %w (etcd allows it only to the root role when authentication is on; see docs/security.md)", h.t.Label(), h.err)
		case h.err != nil:
			return "", fmt.Errorf("hash: HashKV of member %s at revision %d: %w", h.t.Label(), rev, h.err)
		}
	}
	compact := hashes[0].resp.CompactRevision
	for _, h := range hashes {
		if h.resp.CompactRevision != compact {
			return HashInconclusive, nil
		}
		if h.resp.HashRevision != 0 && h.resp.HashRevision != rev {
			// etcd 3.6+ hashed another revision than the one asked.
			return HashInconclusive, nil
		}
	}

	groups := map[uint32][]string{}
	for _, h := range hashes {
		groups[h.resp.Hash] = append(groups[h.resp.Hash], h.t.Label())
	}
	largest := 0
	var majority uint32
	for hash, members := range groups {
		if len(members) > largest {
			largest, majority = len(members), hash
		}
	}
	hasMajority := 2*largest > len(hashes)
	c := HashCheck{At: time.Now(), Revision: rev, CompactRevision: compact, AtCompaction: atCompaction, Mismatch: map[string]bool{}}
	var minority []string
	for _, h := range hashes {
		off := !hasMajority || h.resp.Hash != majority
		c.Mismatch[h.t.Label()] = off
		if off {
			minority = append(minority, h.t.Label())
		}
	}
	p.mu.Lock()
	p.last = c
	p.mu.Unlock()
	if len(minority) == 0 {
		return HashMatch, nil
	}
	slices.Sort(minority)
	attrs := []any{"revision", rev, "at_compaction", atCompaction, "compact_revision", compact, "minority", minority, "majority", hasMajority}
	for _, h := range hashes {
		attrs = append(attrs, "hash_"+h.t.Label(), h.resp.Hash)
	}
	p.log().Error("members' data differ: HashKV at the same revision disagrees", attrs...)
	return HashMismatch, nil
}

// noteError logs a failure unlike the last one, and a recovery.
func (p *HashProbe) noteError(err error) {
	p.mu.Lock()
	prev := p.failed
	p.failed = ""
	if err != nil {
		p.failed = err.Error()
	}
	p.mu.Unlock()
	switch {
	case err != nil && err.Error() != prev:
		p.log().Warn("hash consistency check failed", "reason", Classify(err), "err", err)
	case err == nil && prev != "":
		p.log().Info("hash consistency check runs again")
	}
}

// compactionHashes: every member said it runs etcd 3.6 or later, which
// keeps a hash of each compaction.
func (p *HashProbe) compactionHashes() bool {
	if p.View == nil {
		return false
	}
	v := p.View()
	if len(v.Members) == 0 {
		return false
	}
	for _, m := range v.Members {
		if m.Status == nil || !versionAtLeast(m.Status.Version, 3, 6) {
			return false
		}
	}
	return true
}

// versionAtLeast reports whether version (such as 3.6.4) is major.minor
// or later.
func versionAtLeast(version string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(version, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// compactRevision is the latest revision every member has compacted to:
// a watch from revision 1 is cancelled with the member's compact revision
// (etcd finds that within its 100 ms sync). ok is false when a member has
// never been compacted: its watch delivers the key's first events
// instead, or nothing.
func (p *HashProbe) compactRevision(ctx context.Context, targets []*Target) (rev int64, ok bool, err error) {
	for _, t := range targets {
		wctx, cancel := context.WithTimeout(ctx, p.SlowThreshold)
		var resp clientv3.WatchResponse
		for r := range t.Client.Watch(wctx, p.Key, clientv3.WithRev(1)) {
			resp = r
			break
		}
		cancel()
		if ctx.Err() != nil {
			return 0, false, ctx.Err()
		}
		if resp.CompactRevision == 0 {
			return 0, false, nil // never compacted, or not answered in time
		}
		if rev == 0 || resp.CompactRevision < rev {
			rev = resp.CompactRevision
		}
	}
	return rev, true, nil
}

func (p *HashProbe) count(result string) {
	p.mu.Lock()
	p.result = result
	p.mu.Unlock()
	if p.Checks != nil {
		p.Checks.WithLabelValues(result).Inc()
	}
}

func (p *HashProbe) log() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}
