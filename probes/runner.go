package probes

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// RunnerOptions configures a Runner.
type RunnerOptions struct {
	Targets *Targets
	State   *State
	Probes  []Scheduled
	// Tick is the round cadence; a probe runs in a round once its interval
	// has passed since its last start.
	Tick   time.Duration
	Logger *slog.Logger
	// Tracer starts a span per round and per probe run; nil means no-op.
	Tracer trace.Tracer
	// Duration observes each run's duration, labelled by probe.
	Duration prometheus.ObserverVec
	// Failures counts failed runs by probe, member and reason.
	Failures *prometheus.CounterVec
	// OnView is called with each new view, outside any lock.
	OnView func(View)
	// Figures returns measurements to attach to leader and quorum change
	// events (fsync and peer latency at that moment), keyed by attribute
	// name; nil, or a figure left out, omits it.
	Figures func() map[string]float64
}

// Runner runs the probes in rounds. A run that outlives its round does not
// hold the next one up: rounds overlap, and each (probe, target) pair is
// single-flight, so a member that hangs costs at most one outstanding call.
type Runner struct {
	opts RunnerOptions

	mu        sync.Mutex
	inflight  map[runKey]bool
	lastStart map[string]time.Time
	round     uint64

	evalMu sync.Mutex
	view   atomic.Pointer[View]
	ready  atomic.Bool
	wg     sync.WaitGroup
}

type runKey struct {
	probe  string
	target *Target
}

// NewRunner returns a runner; call Run to start it.
func NewRunner(opts RunnerOptions) *Runner {
	if opts.Tracer == nil {
		opts.Tracer = noop.NewTracerProvider().Tracer("")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{opts: opts, inflight: map[runKey]bool{}, lastStart: map[string]time.Time{}}
	r.view.Store(&View{})
	return r
}

// EveryMemberProbes names the probes that run against every member.
func (r *Runner) EveryMemberProbes() []string {
	var out []string
	for _, s := range r.opts.Probes {
		if s.Scope == EveryMember {
			out = append(out, s.Probe.Name())
		}
	}
	return out
}

// View returns the latest evaluated view.
func (r *Runner) View() View { return *r.view.Load() }

// Ready reports whether the first round has finished and been evaluated.
func (r *Runner) Ready() bool { return r.ready.Load() }

// ErrNotReady is what a probe returns when it cannot run yet (the cluster
// view it needs is not there): the run is not recorded, and the probe is
// due again at the next tick rather than a whole interval later.
var ErrNotReady = errors.New("not ready to run")

// Run runs rounds until ctx is done, then waits for runs in flight.
func (r *Runner) Run(ctx context.Context) {
	tick := time.NewTicker(r.opts.Tick)
	defer tick.Stop()
	for {
		// A tick and the stop can be ready together, and select picks
		// either: a stopped runner starts no round.
		if ctx.Err() == nil {
			r.startRound(ctx, time.Now())
		}
		select {
		case <-ctx.Done():
			r.wg.Wait()
			return
		case <-tick.C:
		}
	}
}

// RunOnce runs one round with every probe and waits for it to finish.
func (r *Runner) RunOnce(ctx context.Context) View {
	done := r.startRound(ctx, time.Time{})
	<-done
	return r.View()
}

func (r *Runner) startRound(ctx context.Context, now time.Time) <-chan struct{} {
	r.mu.Lock()
	r.round++
	round := r.round
	r.mu.Unlock()
	// A round is the root of its own trace, whatever ctx carries.
	ctx, span := r.opts.Tracer.Start(ctx, SpanRound, trace.WithNewRoot(), trace.WithAttributes(AttrRound.Int64(int64(round))))

	var runs sync.WaitGroup
	targets := r.opts.Targets.All()
	for _, s := range r.opts.Probes {
		if !now.IsZero() && !r.due(s, now) {
			continue
		}
		switch s.Scope {
		case AnyMember:
			if t := r.clusterTarget(round); t != nil {
				r.launch(ctx, &runs, s, t)
			}
		case LocalMember:
			r.launch(ctx, &runs, s, r.opts.Targets.Local())
		default:
			for _, t := range targets {
				if t.Client != nil && (s.Scope != PeerMembers || !t.Local) {
					r.launch(ctx, &runs, s, t)
				}
			}
		}
	}
	done := make(chan struct{})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(done)
		runs.Wait()
		r.evaluate(round, span)
		span.End()
	}()
	return done
}

func (r *Runner) due(s Scheduled, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	last, ok := r.lastStart[s.Probe.Name()]
	// Half a tick of slack keeps a 1 s probe on a 1 s ticker from
	// skipping rounds through timer jitter.
	if ok && now.Sub(last) < s.Schedule.Interval-r.opts.Tick/2 {
		return false
	}
	r.lastStart[s.Probe.Name()] = now
	return true
}

// clusterTarget picks the member to ask cluster-wide questions: the local
// one unless its last status failed, else the first other member whose last
// status succeeded, else each candidate in turn.
func (r *Runner) clusterTarget(round uint64) *Target {
	local := r.opts.Targets.Local()
	candidates := append([]*Target{local}, r.opts.Targets.Fallbacks()...)
	var usable []*Target
	for _, t := range candidates {
		if t.Client == nil {
			continue
		}
		usable = append(usable, t)
		o, tried := r.opts.State.outcome(t, ProbeStatus)
		if !tried || o.OK {
			return t
		}
	}
	if len(usable) == 0 {
		return nil
	}
	return usable[int(round)%len(usable)]
}

func (r *Runner) launch(ctx context.Context, runs *sync.WaitGroup, s Scheduled, t *Target) {
	key := runKey{s.Probe.Name(), t}
	r.mu.Lock()
	// A stopped runner starts nothing, even in a round it had begun: a
	// hung run that returns once the stop released it must not be
	// followed by a fresh one.
	if r.inflight[key] || ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	r.inflight[key] = true
	r.mu.Unlock()
	runs.Add(1)
	go func() {
		defer runs.Done()
		defer func() {
			r.mu.Lock()
			delete(r.inflight, key)
			r.mu.Unlock()
		}()
		r.runOne(ctx, s, t)
	}()
}

func (r *Runner) runOne(ctx context.Context, s Scheduled, t *Target) {
	name := s.Probe.Name()
	label := t.Label()
	ctx, span := r.opts.Tracer.Start(ctx, SpanProbePrefix+name, trace.WithAttributes(runAttributes(s, t, r.View())...))
	defer span.End()
	stopping := ctx
	ctx, cancel := context.WithTimeout(ctx, s.Schedule.Timeout)
	defer cancel()

	start := time.Now()
	err := s.Probe.Run(ctx, t)
	d := time.Since(start)
	if stopping.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The runner stopped before the run's deadline: a run cut short
		// says nothing of etcd, and recording it would log members
		// failing (context canceled) as the agent shuts down.
		span.SetStatus(codes.Error, "agent stopping")
		return
	}
	if errors.Is(err, ErrNotReady) {
		// Not run: due again at the next tick, and nothing recorded.
		span.SetAttributes(AttrResult.String("not_ready"))
		r.mu.Lock()
		delete(r.lastStart, name)
		r.mu.Unlock()
		return
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		te := &TimeoutError{Probe: name, Timeout: s.Schedule.Timeout, Err: err}
		if t.Client != nil {
			// READY: connected, but the member did not answer (hung or
			// frozen); otherwise it could not be reached at all, and the
			// last connection attempt's error says why.
			te.Connection = t.Client.ActiveConnection().GetState().String()
			if te.Connection != "READY" {
				te.Cause = t.ConnectionError()
			}
		}
		err = te
	}
	o := Outcome{OK: err == nil, At: start, Duration: d}
	// A refusal the probe tolerates (it proves what it measures) still
	// says what the agent is not allowed.
	var ref *Refusal
	if errors.As(err, &ref) {
		o.OK, o.Reason, o.Err = true, Classify(ref.Err), ref.Error()
		span.SetAttributes(AttrReason.String(string(o.Reason)))
		err = nil
	}
	if err != nil {
		o.Reason = Classify(err)
		o.Err = err.Error()
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(AttrReason.String(string(o.Reason)))
		r.opts.Logger.Debug("probe failed", "probe", name, "member", label, "reason", o.Reason, "err", err)
		if r.opts.Failures != nil {
			r.opts.Failures.WithLabelValues(name, label, string(o.Reason)).Inc()
		}
	}
	result := resultSuccess
	if err != nil {
		result = resultFailure
	}
	span.SetAttributes(AttrResult.String(result), AttrDuration.Float64(d.Seconds()))
	r.opts.State.Record(t, name, o)
	if r.opts.Duration != nil {
		Observe(ctx, r.opts.Duration.WithLabelValues(name), d.Seconds())
	}
}

func (r *Runner) evaluate(round uint64, span trace.Span) {
	r.evalMu.Lock()
	prev := r.View()
	targets := r.opts.Targets.All()
	results := r.opts.State.Snapshot(targets)
	members, known := r.opts.Targets.Known()
	v := Evaluate(prev, time.Now(), known, members, results)
	r.view.Store(&v)
	logChanges(r.opts.Logger, prev, v)
	r.evalMu.Unlock()
	span.SetAttributes(roundAttributes(v)...)
	traceChanges(span, prev, v, r.opts.Figures)
	if round == 1 {
		r.ready.Store(true)
	}
	if r.opts.OnView != nil {
		r.opts.OnView(v)
	}
}

// TimeoutError is a probe run that hit its deadline.
type TimeoutError struct {
	Probe   string
	Timeout time.Duration
	// Connection is the gRPC connection state at the deadline.
	Connection string
	// Cause is the last error of the connection's attempts to connect,
	// when it was not open at the deadline (refused, TLS).
	Cause error
	Err   error
}

func (e *TimeoutError) Error() string {
	msg := e.Probe + ": no answer within " + e.Timeout.String()
	switch e.Connection {
	case "":
	case "READY":
		msg += " on an open connection"
	default:
		msg += "; connection " + e.Connection
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Refusal is a refusal that a probe counts as a success: etcd
// answered, which is what the probe measures, but refused the agent's
// request (a read without permission on the agent's prefix proves the
// linearizable read path as well as a permitted one). The refusal's reason
// is kept beside the success.
type Refusal struct {
	Err error
}

func (e *Refusal) Error() string { return e.Err.Error() }

func (e *Refusal) Unwrap() error { return e.Err }

func (e *TimeoutError) Unwrap() error { return e.Err }

// refusedMessage says who refused whom: a member that refuses the agent's
// credentials, or the agent that refuses a member's certificate.
func refusedMessage(m MemberView) string {
	switch m.Refused {
	case ReasonAuthentication:
		return "etcd refuses the agent's credentials; the member's health is unknown until it accepts them"
	case ReasonPermissionDenied:
		return "etcd denies the agent a permission it needs"
	case ReasonWrongMember:
		return "another member answers at this member's advertised client URL; its health is unknown from this agent"
	}
	return "TLS between the agent and the etcd member fails; the member's health is unknown until it succeeds"
}

// refusedErr is the error of the probe that was refused.
func refusedErr(m MemberView) string {
	for _, p := range refusalProbes {
		if o := m.Outcomes[p]; o.Reason == m.Refused {
			return o.Err
		}
	}
	return ""
}

// logChanges logs what changed between two views, once per change: a
// failing member is logged when it starts failing, not at every round.
func logChanges(log *slog.Logger, prev, v View) {
	if v.HasLeader && prev.Leader != 0 && v.LeaderChanges != prev.LeaderChanges {
		log.Info("leader changed", "from", MemberIDLabel(prev.Leader), "to", v.LeaderLabel(), "term", v.Term)
	}
	if prev.HasLeader && !v.HasLeader && !v.LeaderUnknown {
		// leader_voters >= quorum: one member disagrees, the cluster commits.
		log.Warn("cluster has no agreed leader", "disagreement", v.LeaderDisagreement, "leader_voters", v.LeaderVoters, "quorum", v.QuorumSize)
	}
	was := map[string]MemberView{}
	for _, m := range prev.Members {
		if m.Endpoint == "" || m.Outcomes[ProbeStatus].At.IsZero() {
			// Not logged then (not probed yet): whatever another probe
			// saw first is logged once the status run has been.
			continue
		}
		was[m.Label] = m
	}
	for _, m := range v.Members {
		p, seen := was[m.Label]
		if m.Endpoint == "" || m.Outcomes[ProbeStatus].At.IsZero() {
			continue // not probed yet
		}
		if m.Refused != "" && (!seen || p.Refused != m.Refused) {
			log.Warn(refusedMessage(m), "member", m.Label, "endpoint", m.Endpoint, "reason", m.Refused, "err", refusedErr(m))
			continue
		}
		if seen && p.Refused != "" && m.Refused == "" {
			log.Info("etcd accepts the agent again", "member", m.Label, "endpoint", m.Endpoint, "was", p.Refused)
		}
		if m.StatusRefused() {
			continue
		}
		switch {
		case (!seen || p.Reachable || p.Outcomes[ProbeStatus].At.IsZero() || p.StatusRefused()) && !m.Reachable:
			msg := "etcd member not answering"
			if m.Local {
				msg = "local etcd member not answering (check --etcd.endpoints and the TLS flags)"
			}
			log.Warn(msg, "member", m.Label, "endpoint", m.Endpoint, "reason", m.Outcomes[ProbeStatus].Reason, "err", m.Outcomes[ProbeStatus].Err)
		case seen && !p.Reachable && !p.StatusRefused() && m.Reachable:
			log.Info("etcd member answering again", "member", m.Label, "endpoint", m.Endpoint)
		case m.Reachable && !m.HealthUnknown && (!seen || p.Healthy || p.HealthUnknown) && !m.Healthy:
			if m.learner() {
				log.Warn("etcd learner is not caught up", "member", m.Label, "serializable_read", m.Serializable, "err", m.Outcomes[ProbeReadSerializable].Err)
				continue
			}
			log.Warn("etcd member fails linearizable reads", "member", m.Label, "reason", m.Outcomes[ProbeReadLinearizable].Reason, "err", m.Outcomes[ProbeReadLinearizable].Err)
		}
	}
	// Only once every voter has been probed: a member just discovered has
	// no read yet and is not a failure. A bad state is logged when first
	// known, a change when it happens.
	changed := v.HealthKnown && prev.HealthKnown && v.FaultTolerance != prev.FaultTolerance
	firstBad := v.HealthKnown && !prev.HealthKnown && v.FaultTolerance <= 0
	if changed || firstBad {
		switch {
		case v.FaultTolerance < 0:
			log.Error("quorum lost", "healthy_voters", v.HealthyVoters, "voters", v.Voters, "quorum", v.QuorumSize)
		case v.FaultTolerance == 0 && v.Voters < 3:
			// One or two voters never tolerate a failure: that is the
			// cluster's design, not a risk (the alert rules skip it too).
			log.Info("fault tolerance 0: a cluster of fewer than 3 voting members survives no member failure", "healthy_voters", v.HealthyVoters, "voters", v.Voters)
		case v.FaultTolerance == 0:
			log.Warn("quorum at risk: one more failure loses it", "healthy_voters", v.HealthyVoters, "voters", v.Voters)
		default:
			log.Info("fault tolerance changed", "fault_tolerance", v.FaultTolerance, "healthy_voters", v.HealthyVoters, "voters", v.Voters)
		}
	}
}
