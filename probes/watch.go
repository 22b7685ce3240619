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
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ProbeWatch is the watch probe's name.
const ProbeWatch = "watch"

// Why a member's watch was re-established, the values of the cause label.
const (
	// WatchCompacted: etcd cancelled the watch because the revision it
	// was to resume from had been compacted: it had fallen behind by more
	// than the compaction kept.
	WatchCompacted = "compacted"
	// WatchCancelled: etcd cancelled the watch for another reason.
	WatchCancelled = "cancelled"
	// WatchClosed: the watch channel closed without a word from etcd.
	WatchClosed = "closed"
)

// WatchCauses lists the causes, for documentation and tests.
var WatchCauses = []string{WatchCompacted, WatchCancelled, WatchClosed}

// WatchProbe follows the write probe's key on every member with one
// long-lived watch per member, and measures, for each write the agent
// commits, the time until each member's watch delivers it: the member has
// then applied the write (etcd sends an event only once its store has
// it) and its watch stream works. It also keeps, per member, the age of
// the oldest committed write the member has not served yet, by its watch
// or by a serializable read: the member's replication lag in seconds.
//
// A run against a member sends nothing while the member keeps up. Once a
// write is older than Deadline and its event has not come, the run reads
// the member's own revision (serializable, so a member cut off from the
// leader still answers) to tell a member that has not applied the write
// (BehindError) from one whose watch does not deliver what it has applied
// (WatchStalledError); for the latter it asks the watch stream for a
// progress notification, to say whether the stream still answers.
type WatchProbe struct {
	// Deadline is how long a member may take to serve a committed write.
	Deadline time.Duration
	// State gives the members' last status, for how many raft entries a
	// member is behind.
	State *State
	// Delivery observes the time from a write's commit to its event on
	// each member's watch, by member.
	Delivery *prometheus.HistogramVec
	// Restarts counts re-established watches by member and cause.
	Restarts *prometheus.CounterVec
	// Logger, when set, gets a warning when a member starts lagging and
	// a note when it has caught up again.
	Logger *slog.Logger

	mu       sync.Mutex
	key      string
	writes   []committedWrite // ascending revisions, oldest first
	watchers map[*Target]*memberWatch
	ctx      context.Context
	cancel   context.CancelFunc
	closed   bool
}

type committedWrite struct {
	rev int64
	at  time.Time
}

// maxWrites bounds the writes kept for a member that never catches up;
// the oldest is always kept, so the lag in seconds stays true.
const maxWrites = 4096

// watchStaleAfter: a watch on a target no run has visited for this long
// (the member left the cluster) is closed.
const watchStaleAfter = time.Minute

// memberWatch is the watch on one member.
type memberWatch struct {
	target *Target
	client *clientv3.Client
	cancel context.CancelFunc
	// delivered is the highest revision of the key the watch delivered;
	// served adds the member's revision read when a write was overdue.
	delivered, served int64
	// progress is the revision of the last progress notification, and
	// progressAt when it came.
	progress   int64
	progressAt time.Time
	// restarted is why the watch was last re-established, until a run
	// reports it.
	restarted string
	lastRun   time.Time
	// failing: the last run reported the member, with since the time.
	failing      bool
	failingSince time.Time
}

// Name implements Probe.
func (p *WatchProbe) Name() string { return ProbeWatch }

// Committed tells the probe that the write probe's put of key was
// committed at revision rev, answered at at. The write probe calls it.
func (p *WatchProbe) Committed(key string, rev int64, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if p.key != key {
		// The first write, or the local member's name changed: follow
		// the new key from this write on.
		for _, w := range p.watchers {
			w.cancel()
		}
		p.watchers = map[*Target]*memberWatch{}
		p.key, p.writes = key, nil
	}
	p.writes = append(p.writes, committedWrite{rev, at})
	// A watch that delivered the event before the put's answer came
	// back (on the member that took the put) served it at once.
	for _, w := range p.watchers {
		if w.delivered >= rev {
			p.observe(w, 0)
		}
	}
	p.prune()
}

// prune drops the writes every member has served, and bounds the rest.
func (p *WatchProbe) prune() {
	if len(p.writes) == 0 {
		return
	}
	low := p.writes[len(p.writes)-1].rev
	for _, w := range p.watchers {
		low = min(low, w.servedRev())
	}
	i := 0
	for i < len(p.writes)-1 && p.writes[i].rev <= low {
		i++
	}
	p.writes = p.writes[i:]
	if len(p.writes) > maxWrites {
		p.writes = slices.Delete(p.writes, 1, len(p.writes)-maxWrites+1)
	}
}

func (w *memberWatch) servedRev() int64 { return max(w.delivered, w.served) }

func (p *WatchProbe) observe(w *memberWatch, seconds float64) {
	if p.Delivery != nil {
		p.Delivery.WithLabelValues(w.target.Label()).Observe(max(seconds, 0))
	}
}

// byRev orders committed writes by revision, for binary search.
func byRev(c committedWrite, rev int64) int { return cmp.Compare(c.rev, rev) }

// oldestUnserved is the oldest write the member has not served.
func (p *WatchProbe) oldestUnserved(w *memberWatch) (committedWrite, bool) {
	served := w.servedRev()
	i, _ := slices.BinarySearchFunc(p.writes, served+1, byRev)
	if i == len(p.writes) {
		return committedWrite{}, false
	}
	return p.writes[i], true
}

// Lag is one member's replication lag: the age of the oldest committed
// write it has not served, 0 when it has served them all.
type Lag struct {
	Member  string
	Seconds float64
}

// Lags returns the replication lag of every member the probe watches.
func (p *WatchProbe) Lags(now time.Time) []Lag {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Lag
	for _, w := range p.watchers {
		l := Lag{Member: w.target.Label()}
		if c, ok := p.oldestUnserved(w); ok {
			l.Seconds = max(now.Sub(c.at).Seconds(), 0)
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Lag) int { return strings.Compare(a.Member, b.Member) })
	return out
}

// Run implements Probe.
func (p *WatchProbe) Run(ctx context.Context, t *Target) error {
	err := p.run(ctx, t)
	if ctx.Err() != nil && err == nil {
		return nil
	}
	p.mu.Lock()
	w := p.watchers[t]
	if w == nil {
		p.mu.Unlock()
		return err
	}
	was, since := w.failing, w.failingSince
	w.failing = err != nil
	if w.failing && !was {
		w.failingSince = time.Now()
	}
	p.mu.Unlock()
	if p.Logger != nil {
		switch {
		case err != nil && !was:
			p.Logger.Warn("member not serving the agent's writes in time", "member", t.Label(), "reason", Classify(err), "err", err)
		case err == nil && was:
			p.Logger.Info("member serving the agent's writes again", "member", t.Label(), "after", time.Since(since).Round(time.Millisecond))
		}
	}
	return err
}

func (p *WatchProbe) run(ctx context.Context, t *Target) error {
	if t.Client == nil {
		return errors.New("watch: no connection to the member")
	}
	now := time.Now()
	p.mu.Lock()
	if p.closed || p.key == "" {
		// Nothing committed yet: nothing to follow.
		p.mu.Unlock()
		return nil
	}
	p.closeStale(now)
	w := p.watch(t)
	w.lastRun = now
	key := p.key
	if cause := w.restarted; cause != "" {
		w.restarted = ""
		p.mu.Unlock()
		return &WatchRestartedError{Cause: cause}
	}
	c, pending := p.oldestUnserved(w)
	p.mu.Unlock()
	if !pending || now.Sub(c.at) < p.Deadline {
		return nil
	}

	// A write is overdue: has the member applied it?
	resp, err := t.Client.KV.Get(ctx, key, clientv3.WithSerializable(), clientv3.WithCountOnly())
	if err != nil {
		msg := fmt.Sprintf("watch: the member has not delivered the write at revision %d committed %s ago, and its own revision cannot be read", c.rev, now.Sub(c.at).Round(time.Millisecond))
		if e := p.entriesBehind(t); e > 0 {
			msg += fmt.Sprintf(" (its last status had applied %d raft entries fewer than the cluster had committed)", e)
		}
		return fmt.Errorf("%s: %w", msg, err)
	}
	applied := resp.Header.Revision
	p.mu.Lock()
	w.served = max(w.served, applied)
	p.prune()
	p.mu.Unlock()
	if applied < c.rev {
		return &BehindError{
			Revision: c.rev, Age: time.Since(c.at), Applied: applied,
			Entries: p.entriesBehind(t), EntriesKnown: p.State != nil,
		}
	}
	// Applied, not delivered: does the watch stream still answer?
	asked := time.Now()
	_ = w.client.RequestProgress(ctx)
	wait := time.NewTimer(progressWait)
	defer wait.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		p.mu.Lock()
		delivered := w.delivered >= c.rev
		answered, progress := !w.progressAt.Before(asked), w.progress
		p.mu.Unlock()
		switch {
		case delivered:
			// It came while the member was asked: late, not stalled.
			return nil
		case answered:
			return &WatchStalledError{Revision: c.rev, Age: time.Since(c.at), Applied: applied, Answered: true, Progress: progress}
		}
		select {
		case <-ctx.Done():
		case <-wait.C:
		case <-tick.C:
			continue
		}
		return &WatchStalledError{Revision: c.rev, Age: time.Since(c.at), Applied: applied}
	}
}

// progressWait bounds the wait for a progress notification.
const progressWait = 500 * time.Millisecond

// entriesBehind is how many raft entries the member's last status had
// applied fewer than the highest index any member last reported
// committed.
func (p *WatchProbe) entriesBehind(t *Target) uint64 {
	if p.State == nil {
		return 0
	}
	p.State.mu.Lock()
	defer p.State.mu.Unlock()
	var top uint64
	for _, r := range p.State.results {
		if r.Status != nil {
			top = max(top, r.Status.RaftIndex)
		}
	}
	r, ok := p.State.results[t]
	if !ok || r.Status == nil || r.Status.AppliedIndex >= top {
		return 0
	}
	return top - r.Status.AppliedIndex
}

// watch returns the member's watch, starting it if need be; p.mu is held.
func (p *WatchProbe) watch(t *Target) *memberWatch {
	if w, ok := p.watchers[t]; ok && w.client == t.Client {
		return w
	} else if ok {
		w.cancel() // a new connection to the member
	}
	if p.ctx == nil {
		p.ctx, p.cancel = context.WithCancel(context.Background())
	}
	if p.watchers == nil {
		p.watchers = map[*Target]*memberWatch{}
	}
	ctx, cancel := context.WithCancel(p.ctx)
	w := &memberWatch{target: t, client: t.Client, cancel: cancel}
	// Start at the oldest write the agent still follows, so that the
	// first event is that write's, however late the watch starts.
	from := p.writes[0].rev
	w.delivered = from - 1
	p.watchers[t] = w
	go p.follow(ctx, w, p.key, from)
	return w
}

// closeStale closes the watches of members no run has visited lately:
// they left the cluster; p.mu is held.
func (p *WatchProbe) closeStale(now time.Time) {
	for t, w := range p.watchers {
		if !w.lastRun.IsZero() && now.Sub(w.lastRun) > watchStaleAfter {
			w.cancel()
			delete(p.watchers, t)
		}
	}
}

// restartBackoff is the wait before a watch is re-established.
const restartBackoff = time.Second

// follow keeps a watch on key at the member until ctx ends, re-establishing
// it from the next revision it needs whenever etcd ends it.
func (p *WatchProbe) follow(ctx context.Context, w *memberWatch, key string, from int64) {
	for {
		cause, compactRev := p.followOnce(ctx, w, key, from)
		if ctx.Err() != nil || w.client.Ctx().Err() != nil {
			return // stopped, or the connection was closed for good
		}
		p.mu.Lock()
		w.restarted = cause
		from = w.delivered + 1
		if compactRev > from {
			// The events in between are gone: resume where etcd can.
			from = compactRev
		}
		p.mu.Unlock()
		if p.Restarts != nil {
			p.Restarts.WithLabelValues(w.target.Label(), cause).Inc()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(restartBackoff):
		}
	}
}

// followOnce runs one watch until etcd ends it; it returns why, and the
// compact revision when that is why. Event values are never read.
func (p *WatchProbe) followOnce(ctx context.Context, w *memberWatch, key string, from int64) (cause string, compactRev int64) {
	for resp := range w.client.Watch(ctx, key, clientv3.WithRev(from)) {
		now := time.Now()
		if resp.CompactRevision != 0 {
			return WatchCompacted, resp.CompactRevision
		}
		if resp.Canceled || resp.Err() != nil {
			return WatchCancelled, 0
		}
		p.mu.Lock()
		if resp.IsProgressNotify() {
			w.progress, w.progressAt = resp.Header.Revision, now
		}
		for _, ev := range resp.Events {
			if ev.Type != mvccpb.PUT || ev.Kv.ModRevision <= w.delivered {
				continue
			}
			rev := ev.Kv.ModRevision
			w.delivered = rev
			i, found := slices.BinarySearchFunc(p.writes, rev, byRev)
			if found {
				p.observe(w, now.Sub(p.writes[i].at).Seconds())
			}
			// Not found: a write whose answer has not come back yet
			// (Committed observes it as 0), or one pruned already.
		}
		p.prune()
		p.mu.Unlock()
	}
	return WatchClosed, 0
}

// Close stops every watch.
func (p *WatchProbe) Close(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.cancel != nil {
		p.cancel()
	}
	p.watchers = nil
	return nil
}

// BehindError: a member had not applied a committed write within the
// deadline.
type BehindError struct {
	// Revision is the write's revision; Applied the member's own.
	Revision, Applied int64
	// Age is the time since the write was committed.
	Age time.Duration
	// Entries is how many raft entries the member's last status had
	// applied fewer than the highest committed index, when known.
	Entries      uint64
	EntriesKnown bool
}

// Reason implements ReasonedError.
func (e *BehindError) Reason() Reason { return ReasonBehind }

func (e *BehindError) Error() string {
	msg := fmt.Sprintf("watch: the member has not applied the write committed %s ago at revision %d: it is at revision %d, %d behind",
		e.Age.Round(time.Millisecond), e.Revision, e.Applied, e.Revision-e.Applied)
	if e.EntriesKnown {
		msg += fmt.Sprintf(", and its last status had applied %d raft entries fewer than the cluster had committed", e.Entries)
	}
	return msg
}

// WatchStalledError: a member applied a committed write but its watch had
// not delivered it within the deadline.
type WatchStalledError struct {
	Revision, Applied int64
	Age               time.Duration
	// Answered: the watch stream answered a progress request, at
	// Progress.
	Answered bool
	Progress int64
}

// Reason implements ReasonedError.
func (e *WatchStalledError) Reason() Reason { return ReasonWatchStalled }

func (e *WatchStalledError) Error() string {
	msg := fmt.Sprintf("watch: the member applied the write committed %s ago at revision %d (it is at revision %d) but its watch has not delivered it",
		e.Age.Round(time.Millisecond), e.Revision, e.Applied)
	if e.Answered {
		return msg + fmt.Sprintf("; the watch stream answered a progress request at revision %d", e.Progress)
	}
	return msg + "; the watch stream did not answer a progress request either"
}

// WatchRestartedError: etcd ended the member's watch and the probe
// re-established it.
type WatchRestartedError struct{ Cause string }

// Reason implements ReasonedError.
func (e *WatchRestartedError) Reason() Reason { return ReasonWatchRestarted }

func (e *WatchRestartedError) Error() string {
	switch e.Cause {
	case WatchCompacted:
		return "watch: etcd cancelled the member's watch because it had fallen behind the compaction; re-established from the compact revision"
	case WatchCancelled:
		return "watch: etcd cancelled the member's watch; re-established"
	}
	return "watch: the member's watch closed; re-established"
}
