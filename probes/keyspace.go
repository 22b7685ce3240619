package probes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ProbeKeyspace is the key space probe's name.
const ProbeKeyspace = "keyspace"

// Results of one key space run, the values of the result label.
const (
	// KeyspaceComplete: the run finished a walk; its counts are exported.
	KeyspaceComplete = "complete"
	// KeyspacePartial: the run spent its request budget (or its
	// deadline) before the walk's end; the next run resumes where it
	// stopped.
	KeyspacePartial = "partial"
	// KeyspaceSkippedUnhealthy: the local member was unreachable or
	// failed its linearizable reads in the last round.
	KeyspaceSkippedUnhealthy = "skipped_unhealthy"
	// KeyspaceSkippedSlow: the local member was slow to answer (its last
	// status or serializable read, or one of the walk's own small
	// requests); the walk resumes at the next run.
	KeyspaceSkippedSlow = "skipped_slow"
)

// KeyspaceResults lists the results, for documentation and tests.
var KeyspaceResults = []string{KeyspaceComplete, KeyspacePartial, KeyspaceSkippedUnhealthy, KeyspaceSkippedSlow}

// Label values of the counts beyond the exported top ones.
const (
	// KeyspaceOther is the resource label of the resources past the top N.
	KeyspaceOther = "other"
	// KeyspaceOtherNamespaces is the namespace label of the namespaces
	// past the top N of a resource (a namespace cannot begin with "_").
	KeyspaceOtherNamespaces = "_other"
)

// KeyspaceProbe counts the keys of each Kubernetes resource in the local
// member's store, as kube-apiserver lays them out under its --etcd-prefix
// (Prefix, /registry by default):
//
//	/registry/<resource>/<namespace>/<name>   core and built-in group resources (pods, events, leases, deployments)
//	/registry/<resource>/<name>               cluster-scoped ones (namespaces, minions, clusterroles)
//	/registry/services/specs/<ns>/<name>      services, and their endpoints under services/endpoints
//	/registry/<group>/<resource>/...          CRDs (apiextensions.k8s.io/customresourcedefinitions),
//	                                          APIServices and custom resources (a group has a dot)
//
// It never reads a value: it finds the next resource with a keys-only
// request for one key, counts that resource's prefix with a count-only
// request, and jumps past the prefix, so a walk costs about two requests
// per resource, not one per key; then, for the NamespaceResources largest
// namespaced resources, the same per namespace. Every request is
// serializable and goes to the local member only.
//
// etcd computes the total count of a range even for a request limited to
// one key (its unary Range, 3.4 to 3.7), walking its in-memory index over
// the whole range: a next-key request over the rest of the prefix would
// visit every key after the cursor, once per resource. So the next key is
// looked for within buckets of one first character ([0-9], [a-z] one by
// one, and one bucket each for the bytes below, between and above): a
// request then visits the keys of one bucket only, and the count it
// returns says when the rest of the bucket is empty (no request for it).
// After an empty bucket the next range is twice as wide, so that a run
// of empty buckets costs a few requests.
//
// A run sends at most MaxRequests requests, Pause apart, and a walk that
// needs more resumes at the next run where the last one stopped; the
// counts exported are the last complete walk's. A run is skipped while the
// local member is unhealthy or slow, and stops when one of its requests
// is slower than SlowThreshold (plus a microsecond per key it counted).
type KeyspaceProbe struct {
	// Prefix is kube-apiserver's --etcd-prefix, such as /registry.
	Prefix string
	// NamespaceResources is how many of the largest namespaced resources
	// are counted per namespace; 0: none.
	NamespaceResources int
	// TopNamespaces is how many namespaces of each are exported by name;
	// the rest are summed under "_other".
	TopNamespaces int
	// MaxRequests bounds the requests of one run.
	MaxRequests int
	// Pause is the time between two requests.
	Pause time.Duration
	// SlowThreshold: a local member whose last status or serializable
	// read took longer, or whose answer to one of the walk's requests
	// does (plus a microsecond per key for a count), is slow.
	SlowThreshold time.Duration
	// RequestTimeout bounds each request; a run stops (as partial) when
	// less than RequestTimeout+Pause is left before its deadline.
	RequestTimeout time.Duration
	// Fresh: a walk completed less than this ago is not started again
	// (the rounds of a check run every probe each time).
	Fresh time.Duration
	// View returns the cluster as the last round saw it; nil: never
	// skipped.
	View func() View
	// Runs counts runs by result; nil: not counted.
	Runs   *prometheus.CounterVec
	Logger *slog.Logger

	mu     sync.Mutex
	walk   *keyspaceWalk
	last   KeyspaceWalk
	result string
	// failed is the last run's error, to log each new one once.
	failed string
}

// KeyspaceWalk is a complete walk of the key space.
type KeyspaceWalk struct {
	// Started and Completed bound the walk, which may span several runs.
	Started, Completed time.Time
	// Requests is how many requests the walk sent, Runs in how many runs.
	Requests, Runs int
	// Keys is the number of keys under the prefix.
	Keys int64
	// Resources holds every resource, the largest first.
	Resources []ResourceKeys
	// Namespaces holds, for the largest namespaced resources, the top
	// namespaces and KeyspaceOtherNamespaces.
	Namespaces map[string][]NamespaceKeys
}

// ResourceKeys is the key count of one resource.
type ResourceKeys struct {
	// Resource is "pods", "services/specs" or "<group>/<resource>".
	Resource string
	Keys     int64
	// ClusterScoped: its keys have no namespace segment.
	ClusterScoped bool
}

// NamespaceKeys is the key count of one resource in one namespace.
type NamespaceKeys struct {
	Namespace string
	Keys      int64
}

// Top returns the first n resources and the rest summed as
// KeyspaceOther (absent when there is no rest).
func (w KeyspaceWalk) Top(n int) []ResourceKeys {
	if len(w.Resources) <= n {
		return w.Resources
	}
	out := slices.Clone(w.Resources[:n])
	other := ResourceKeys{Resource: KeyspaceOther}
	for _, r := range w.Resources[n:] {
		other.Keys += r.Keys
	}
	return append(out, other)
}

// keyspaceWalk is a walk in progress.
type keyspaceWalk struct {
	started  time.Time
	requests int
	runs     int
	// res scans the resources.
	res    scan
	counts map[string]*ResourceKeys
	// prefixes are each resource's key prefixes.
	prefixes map[string]string
	// The namespace phase: the resources still to count, and the counts.
	nsQueue []string
	ns      scan
	// nsSeen: a key of the resource being counted was found.
	nsSeen   bool
	nsCounts map[string]map[string]int64
	nsPhase  bool
}

// Name implements Probe.
func (p *KeyspaceProbe) Name() string { return ProbeKeyspace }

// Last returns the last complete walk; Completed is zero before one.
func (p *KeyspaceProbe) Last() KeyspaceWalk {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// LastResult is the last run's result, one of KeyspaceResults; "" before
// one.
func (p *KeyspaceProbe) LastResult() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.result
}

// InProgress says whether a walk is under way, and how many requests it
// has sent so far.
func (p *KeyspaceProbe) InProgress() (bool, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.walk == nil {
		return false, 0
	}
	return true, p.walk.requests
}

// root is the prefix every resource key starts with: "/registry/".
func (p *KeyspaceProbe) root() string {
	r := "/" + strings.Trim(p.Prefix, "/")
	if r == "/" {
		return r
	}
	return r + "/"
}

// Run implements Probe.
func (p *KeyspaceProbe) Run(ctx context.Context, t *Target) error {
	if t == nil || t.Client == nil {
		return errors.New("keyspace: the local member has no client URL")
	}
	if p.View != nil && !p.View().HealthKnown {
		return ErrNotReady
	}
	p.mu.Lock()
	fresh := p.walk == nil && !p.last.Completed.IsZero() && time.Since(p.last.Completed) < p.Fresh
	p.mu.Unlock()
	if fresh {
		return nil
	}
	if result, why := p.unfit(); result != "" {
		p.count(result)
		p.log().Info("key space walk skipped", "why", why)
		return nil
	}
	p.mu.Lock()
	w := p.walk
	if w == nil {
		w = &keyspaceWalk{started: time.Now(), res: scan{cursor: p.root()}, counts: map[string]*ResourceKeys{}, prefixes: map[string]string{}, nsCounts: map[string]map[string]int64{}}
		p.walk = w
	}
	p.mu.Unlock()
	// Only this run touches w: the runner never runs a probe twice at
	// once against a target.
	w.runs++
	s := &keyspaceStep{p: p, t: t, w: w, budget: p.MaxRequests}
	result, err := s.run(ctx)
	if errors.Is(err, rpctypes.ErrPermissionDenied) {
		err = fmt.Errorf("%w (the agent's role needs read permission on %s, or set keyspace.enabled to false; see docs/security.md)", err, p.root())
	}
	p.noteError(err)
	if err != nil {
		// The walk resumes at the next run.
		return fmt.Errorf("keyspace: %w", err)
	}
	if result == KeyspaceComplete {
		p.finish(w)
	}
	p.count(result)
	return nil
}

// unfit says why the local member is not fit for a run: a result and a
// reason, or "".
func (p *KeyspaceProbe) unfit() (string, string) {
	if p.View == nil {
		return "", ""
	}
	for _, m := range p.View().Members {
		if !m.Local {
			continue
		}
		if !m.Reachable || !m.Healthy {
			return KeyspaceSkippedUnhealthy, "the local member " + m.Label + " is not healthy"
		}
		for _, probe := range []string{ProbeStatus, ProbeReadSerializable} {
			if o := m.Outcomes[probe]; o.Duration > p.SlowThreshold {
				return KeyspaceSkippedSlow, fmt.Sprintf("the local member %s took %s to answer its last %s probe (threshold %s)", m.Label, o.Duration.Round(time.Millisecond), probe, p.SlowThreshold)
			}
		}
		return "", ""
	}
	return "", ""
}

// finish publishes a complete walk.
func (p *KeyspaceProbe) finish(w *keyspaceWalk) {
	done := KeyspaceWalk{Started: w.started, Completed: time.Now(), Requests: w.requests, Runs: w.runs, Namespaces: map[string][]NamespaceKeys{}}
	for _, r := range w.counts {
		done.Resources = append(done.Resources, *r)
		done.Keys += r.Keys
	}
	slices.SortFunc(done.Resources, func(a, b ResourceKeys) int {
		return cmp.Or(cmp.Compare(b.Keys, a.Keys), cmp.Compare(a.Resource, b.Resource))
	})
	for res, nss := range w.nsCounts {
		done.Namespaces[res] = topNamespaces(nss, p.TopNamespaces)
	}
	p.mu.Lock()
	p.last, p.walk = done, nil
	p.mu.Unlock()
	p.log().Info("key space walk complete", "keys", done.Keys, "resources", len(done.Resources), "requests", done.Requests, "runs", done.Runs, "took", done.Completed.Sub(done.Started).Round(time.Millisecond))
}

// topNamespaces keeps the n largest namespaces and sums the rest.
func topNamespaces(counts map[string]int64, n int) []NamespaceKeys {
	all := make([]NamespaceKeys, 0, len(counts))
	for ns, c := range counts {
		all = append(all, NamespaceKeys{ns, c})
	}
	slices.SortFunc(all, func(a, b NamespaceKeys) int {
		return cmp.Or(cmp.Compare(b.Keys, a.Keys), cmp.Compare(a.Namespace, b.Namespace))
	})
	if len(all) <= n {
		return all
	}
	other := NamespaceKeys{Namespace: KeyspaceOtherNamespaces}
	for _, c := range all[n:] {
		other.Keys += c.Keys
	}
	return append(all[:n:n], other)
}

// noteError logs a failure unlike the last one, and a recovery.
func (p *KeyspaceProbe) noteError(err error) {
	p.mu.Lock()
	prev := p.failed
	p.failed = ""
	if err != nil {
		p.failed = err.Error()
	}
	p.mu.Unlock()
	switch {
	case err != nil && err.Error() != prev:
		p.log().Warn("key space walk failed", "reason", Classify(err), "err", err)
	case err == nil && prev != "":
		p.log().Info("key space walk runs again")
	}
}

func (p *KeyspaceProbe) count(result string) {
	p.mu.Lock()
	p.result = result
	p.mu.Unlock()
	if p.Runs != nil {
		p.Runs.WithLabelValues(result).Inc()
	}
}

func (p *KeyspaceProbe) log() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// errBudget ends a run that spent its budget; errSlow one whose member
// answered a one-key request slowly.
var (
	errBudget = errors.New("request budget spent")
	errSlow   = errors.New("member slow")
)

// keyspaceStep is one run of a walk.
type keyspaceStep struct {
	p      *KeyspaceProbe
	t      *Target
	w      *keyspaceWalk
	budget int
	sent   int
}

func (s *keyspaceStep) run(ctx context.Context) (string, error) {
	err := s.resources(ctx)
	if err == nil {
		err = s.namespaces(ctx)
	}
	switch {
	case err == nil:
		return KeyspaceComplete, nil
	case errors.Is(err, errBudget):
		s.p.log().Debug("key space walk paused: request budget spent", "requests", s.sent, "walk_requests", s.w.requests)
		return KeyspacePartial, nil
	case errors.Is(err, errSlow):
		s.p.log().Info("key space walk paused", "why", err.Error())
		return KeyspaceSkippedSlow, nil
	}
	return "", err
}

// resources walks the resources from the cursor.
func (s *keyspaceStep) resources(ctx context.Context) error {
	w := s.w
	root := s.p.root()
	for !w.nsPhase {
		key, inBucket, hi, err := s.next(ctx, root, &w.res)
		if err != nil {
			return err
		}
		if key == "" {
			w.nsPhase = true
			w.nsQueue = s.largest(s.p.NamespaceResources)
			w.ns = scan{}
			break
		}
		res, prefix := resourceOf(root, key)
		n := int64(1)
		if prefix != key {
			if n, err = s.countPrefix(ctx, prefix); err != nil {
				return err
			}
		}
		r := w.counts[res]
		if r == nil {
			r = &ResourceKeys{Resource: res}
			w.counts[res] = r
		}
		r.Keys += n
		if _, ok := w.prefixes[res]; !ok {
			w.prefixes[res] = prefix
		}
		w.res.past(prefix, key, n, inBucket, hi)
	}
	return nil
}

// scan is where a walk of one level (resources, or a resource's
// namespaces) stands.
type scan struct {
	// cursor is the next key to look from.
	cursor string
	// rest is how many keys the last next-key request counted from the
	// cursor to hi, beyond the prefix just counted: keys still to find
	// there. hi is "" when none are known.
	rest int64
	hi   string
}

// past moves the scan past a counted prefix (past the single key when
// the prefix is the key itself), or past the end of the range its
// next-key request looked in when the prefix held every key it counted.
func (sc *scan) past(prefix, key string, n, inRange int64, hi string) {
	if n >= inRange {
		*sc = scan{cursor: hi}
		return
	}
	sc.cursor = clientv3.GetPrefixRangeEnd(prefix)
	if prefix == key {
		sc.cursor = key + "\x00"
	}
	sc.rest, sc.hi = inRange-n, hi
}

// largest picks up to n resources (all for n < 0) to count per
// namespace: the largest ones whose prefix is a directory and that are
// not known to be cluster-scoped.
func (s *keyspaceStep) largest(n int) []string {
	var rs []ResourceKeys
	for _, r := range s.w.counts {
		if strings.HasSuffix(s.w.prefixes[r.Resource], "/") && !r.ClusterScoped {
			rs = append(rs, *r)
		}
	}
	slices.SortFunc(rs, func(a, b ResourceKeys) int {
		return cmp.Or(cmp.Compare(b.Keys, a.Keys), cmp.Compare(a.Resource, b.Resource))
	})
	var out []string
	for _, r := range rs {
		if len(out) == n {
			break
		}
		out = append(out, r.Resource)
	}
	return out
}

// namespaces counts the queued resources per namespace. A resource whose
// first key has no namespace segment is cluster-scoped and left out.
func (s *keyspaceStep) namespaces(ctx context.Context) error {
	w := s.w
	for len(w.nsQueue) > 0 {
		res := w.nsQueue[0]
		prefix := w.prefixes[res]
		if w.ns.cursor == "" {
			w.ns, w.nsSeen = scan{cursor: prefix}, false
		}
		first := !w.nsSeen
		key, inBucket, hi, err := s.next(ctx, prefix, &w.ns)
		if err != nil {
			return err
		}
		ns, nsPrefix, namespaced := namespaceOf(prefix, key)
		switch {
		case key == "":
			w.nsQueue, w.ns = w.nsQueue[1:], scan{}
			continue
		case !namespaced && first:
			w.counts[res].ClusterScoped = true
			delete(w.nsCounts, res)
			// The next largest resource takes its place.
			w.nsQueue, w.ns = s.replace(w.nsQueue[1:]), scan{}
			continue
		}
		w.nsSeen = true
		n := int64(1)
		if namespaced {
			if n, err = s.countPrefix(ctx, nsPrefix); err != nil {
				return err
			}
		}
		if w.nsCounts[res] == nil {
			w.nsCounts[res] = map[string]int64{}
		}
		w.nsCounts[res][ns] += n
		w.ns.past(nsPrefix, key, n, inBucket, hi)
	}
	return nil
}

// replace adds to the queue the next largest resource not yet tried, when
// a cluster-scoped one was dropped from it.
func (s *keyspaceStep) replace(queue []string) []string {
	w := s.w
	tried := func(res string) bool {
		_, counted := w.nsCounts[res]
		return counted || w.counts[res].ClusterScoped || slices.Contains(queue, res)
	}
	for _, res := range s.largest(-1) {
		if !tried(res) {
			return append(queue, res)
		}
	}
	return queue
}

// resourceOf names the resource of a key under root, and its prefix: the
// key itself for a key with no further segment.
func resourceOf(root, key string) (resource, prefix string) {
	rest := key[len(root):]
	first, tail, ok := strings.Cut(rest, "/")
	if !ok {
		return validLabel(first), key
	}
	if strings.Contains(first, ".") || first == "services" {
		// /registry/<group>/<resource>/..., services/specs and
		// services/endpoints.
		second, _, ok := strings.Cut(tail, "/")
		if !ok {
			return validLabel(first + "/" + second), key
		}
		return validLabel(first + "/" + second), root + first + "/" + second + "/"
	}
	return validLabel(first), root + first + "/"
}

// namespaceOf names the namespace of a key under a resource's prefix and
// its prefix; namespaced is false for a key with no further segment.
func namespaceOf(prefix, key string) (ns, nsPrefix string, namespaced bool) {
	if key == "" {
		return "", "", false
	}
	rest := key[len(prefix):]
	first, _, ok := strings.Cut(rest, "/")
	if !ok {
		return validLabel(rest), key, false
	}
	return validLabel(first), prefix + first + "/", true
}

// validLabel makes a key segment a valid label value (UTF-8).
func validLabel(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// deepAfter: with more keys than this left in the range after a counted
// prefix, the next key is first looked for in narrower ranges.
const deepAfter = 10_000

// next finds the first key at or after the scan's cursor under base: ""
// when there is none. It also returns the number of keys in the range it
// was found in, from the cursor, and the range's end.
//
// Where the last request said keys are left before its range's end
// (rest), they are looked for there: when there are many, first in the
// ranges that end where the cursor's own name next differs, deepest first
// (after ns-001/: [ns-0010, ns-002), then [ns-002, ns-01)...), so
// that of many names sharing a beginning each is found visiting its
// neighbours' keys, not all the rest. Then in buckets of one first
// character from the cursor's, each empty one doubling the next range, so
// that a run of empty buckets costs a few requests. An empty range moves
// the cursor past it, so that a run that spends its budget there resumes
// after it.
func (s *keyspaceStep) next(ctx context.Context, base string, sc *scan) (key string, inRange int64, hi string, err error) {
	end := clientv3.GetPrefixRangeEnd(base)
	if sc.hi != "" && sc.rest > 0 {
		// The cursor's last character is already one past a counted
		// name (name/ -> name0), or past an empty range: the first level
		// is the one before it.
		for sc.rest > deepAfter && len(sc.cursor) > len(base)+1 {
			rel := sc.cursor[len(base):]
			d := len(rel) - 2
			if rel[d] == 0xff {
				break
			}
			ub := base + rel[:d] + string([]byte{rel[d] + 1})
			if ub >= sc.hi {
				break
			}
			key, n, err := s.first(ctx, sc.cursor, ub)
			if err != nil || key != "" {
				return key, n, ub, err
			}
			sc.cursor = ub
		}
		key, n, err := s.first(ctx, sc.cursor, sc.hi)
		if err != nil || key != "" {
			return key, n, sc.hi, err
		}
		*sc = scan{cursor: sc.hi}
	}
	for width := 1; sc.cursor < end; width *= 2 {
		hi = bucketEnd(base, sc.cursor, end, width)
		key, n, err := s.first(ctx, sc.cursor, hi)
		if err != nil || key != "" {
			return key, n, hi, err
		}
		*sc = scan{cursor: hi}
	}
	return "", 0, "", nil
}

// first is the first key of [from, to), and the number of keys there.
func (s *keyspaceStep) first(ctx context.Context, from, to string) (string, int64, error) {
	resp, err := s.get(ctx, true, from, clientv3.WithRange(to), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
	if err != nil || len(resp.Kvs) == 0 {
		return "", 0, err
	}
	return string(resp.Kvs[0].Key), resp.Count, nil
}

// bucketBounds are the first characters that begin a bucket: below '0',
// each of '0'-'9', between '9' and 'a', each of 'a'-'z', and above 'z'.
// Resource, group and namespace names are lowercase letters, digits, '-'
// and '.', and begin with a letter or a digit.
var bucketBounds = func() []string {
	var b []string
	for c := byte('0'); c <= ':'; c++ {
		b = append(b, string(c))
	}
	for c := byte('a'); c <= '{'; c++ {
		b = append(b, string(c))
	}
	return b
}()

// bucketEnd is the end of the range of width buckets from the cursor's,
// under base; end past the last.
func bucketEnd(base, cursor, end string, width int) string {
	i := 0 // the bucket below '0' ends at bucketBounds[0]
	if len(cursor) > len(base) {
		c := cursor[len(base) : len(base)+1]
		i, _ = slices.BinarySearch(bucketBounds, c)
		if i < len(bucketBounds) && bucketBounds[i] == c {
			i++ // the cursor begins a bucket: it ends at the next bound
		}
	}
	i += width - 1
	if i >= len(bucketBounds) {
		return end
	}
	return base + bucketBounds[i]
}

// countPrefix counts the keys under prefix.
func (s *keyspaceStep) countPrefix(ctx context.Context, prefix string) (int64, error) {
	resp, err := s.get(ctx, false, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}

// get sends one serializable request within the budget, after the pause.
// A request slower than slowAfter stops the run.
func (s *keyspaceStep) get(ctx context.Context, small bool, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if s.sent >= s.budget {
		return nil, errBudget
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < s.p.RequestTimeout+s.p.Pause {
		return nil, errBudget
	}
	if s.sent > 0 && s.p.Pause > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(s.p.Pause):
		}
	}
	s.sent++
	s.p.mu.Lock()
	s.w.requests++
	s.p.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, s.p.RequestTimeout)
	defer cancel()
	start := time.Now()
	resp, err := s.t.Client.KV.Get(rctx, key, append(opts, clientv3.WithSerializable())...)
	took := time.Since(start)
	var counted int64
	if !small && err == nil {
		counted = resp.Count
	}
	if limit := slowAfter(s.p.SlowThreshold, counted); took > limit || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, fmt.Errorf("%w: a request took %s (threshold %s)", errSlow, took.Round(time.Millisecond), limit)
	}
	if err != nil {
		return nil, fmt.Errorf("range from %q: %w", key, err)
	}
	return resp, nil
}

// slowAfter is how long a request may take before its member counts as
// slow: the threshold, plus for a count-only request a microsecond per
// key counted (etcd walks its in-memory index, tens of nanoseconds a key,
// so a member past that is busy or held).
func slowAfter(threshold time.Duration, counted int64) time.Duration {
	return threshold + time.Duration(counted)*time.Microsecond
}
