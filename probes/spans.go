package probes

import (
	"context"
	"maps"
	"net/url"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Span and event names, and the attribute keys of our own namespace. The
// semantic-convention names (server.address, server.port, db.system.name,
// rpc.system.name, rpc.method) are used where one exists.
const (
	SpanRound          = "etcdpulse.round"
	SpanProbePrefix    = "etcdpulse.probe."
	EventLeaderChanged = "leader_changed"
	EventLeaderLost    = "leader_lost"
	EventQuorumChanged = "quorum_changed"

	AttrRound       = attribute.Key("etcdpulse.round")
	AttrProbe       = attribute.Key("etcdpulse.probe")
	AttrLocalMember = attribute.Key("etcdpulse.local_member")
	AttrMemberName  = attribute.Key("etcdpulse.member.name")
	AttrMemberID    = attribute.Key("etcdpulse.member.id")
	AttrResult      = attribute.Key("etcdpulse.result")
	AttrDuration    = attribute.Key("etcdpulse.duration_seconds")
	// AttrReason classifies a failed run (Reason), or the refusal in a run
	// that counts as a success.
	AttrReason = attribute.Key("etcdpulse.failure.reason")
	// The agent's view when a run started, or after a round.
	AttrLeaderName = attribute.Key("etcdpulse.cluster.leader.name")
	AttrLeaderID   = attribute.Key("etcdpulse.cluster.leader.id")
	AttrTerm       = attribute.Key("etcdpulse.cluster.term")
	AttrHasLeader  = attribute.Key("etcdpulse.cluster.has_leader")
	// What a member said of itself in its status answer.
	AttrMemberLeaderID     = attribute.Key("etcdpulse.member.leader_id")
	AttrMemberTerm         = attribute.Key("etcdpulse.member.term")
	AttrMemberRaftIndex    = attribute.Key("etcdpulse.member.raft_index")
	AttrMemberAppliedIndex = attribute.Key("etcdpulse.member.applied_index")
	AttrMemberIsLearner    = attribute.Key("etcdpulse.member.is_learner")
	AttrMemberDBSize       = attribute.Key("etcdpulse.member.db_size_bytes")
	// Event attributes.
	AttrPreviousLeaderName = attribute.Key("etcdpulse.cluster.previous_leader.name")
	AttrPreviousLeaderID   = attribute.Key("etcdpulse.cluster.previous_leader.id")
	AttrPreviousTerm       = attribute.Key("etcdpulse.cluster.previous_term")
	AttrLeaderChanges      = attribute.Key("etcdpulse.cluster.leader_changes")
	AttrDisagreement       = attribute.Key("etcdpulse.cluster.leader_disagreement")
	AttrFaultTolerance     = attribute.Key("etcdpulse.cluster.fault_tolerance")
	AttrPrevFaultTolerance = attribute.Key("etcdpulse.cluster.previous_fault_tolerance")
	AttrVoters             = attribute.Key("etcdpulse.cluster.voters")
	AttrHealthyVoters      = attribute.Key("etcdpulse.cluster.healthy_voters")
	AttrQuorumSize         = attribute.Key("etcdpulse.cluster.quorum_size")
	// Per-member lists, in the order of etcdpulse.cluster.members.
	AttrMembers      = attribute.Key("etcdpulse.cluster.members")
	AttrApplyLag     = attribute.Key("etcdpulse.cluster.apply_lag")
	AttrRaftIndexLag = attribute.Key("etcdpulse.cluster.raft_index_lag")
	AttrMaxApplyLag  = attribute.Key("etcdpulse.cluster.max_apply_lag")
	AttrUnhealthy    = attribute.Key("etcdpulse.cluster.unhealthy_members")
)

const (
	resultSuccess    = "success"
	resultFailure    = "failure"
	exemplarTraceID  = "trace_id"
	exemplarSpanID   = "span_id"
	rpcMaintenance   = "etcdserverpb.Maintenance/Status"
	rpcRange         = "etcdserverpb.KV/Range"
	rpcMemberList    = "etcdserverpb.Cluster/MemberList"
	rpcPut           = "etcdserverpb.KV/Put"
	rpcHashKV        = "etcdserverpb.Maintenance/HashKV"
	dbSystemNameEtcd = "etcd"
)

// probeRPC is the etcd RPC each core probe sends, for rpc.method.
var probeRPC = map[string]string{
	ProbeStatus:           rpcMaintenance,
	ProbeReadLinearizable: rpcRange,
	ProbeReadSerializable: rpcRange,
	ProbeMemberList:       rpcMemberList,
	ProbeWrite:            rpcPut,
	ProbeHash:             rpcHashKV,
	ProbeKeyspace:         rpcRange,
}

// Observe records v on o with the current span's trace and span IDs as an
// exemplar when the span is sampled, so that a latency bucket links to the
// run that produced it; otherwise it is a plain observation.
func Observe(ctx context.Context, o prometheus.Observer, v float64) {
	sc := trace.SpanContextFromContext(ctx)
	if eo, ok := o.(prometheus.ExemplarObserver); ok && sc.IsSampled() {
		eo.ObserveWithExemplar(v, prometheus.Labels{
			exemplarTraceID: sc.TraceID().String(),
			exemplarSpanID:  sc.SpanID().String(),
		})
		return
	}
	o.Observe(v)
}

// runAttributes describe a probe run before it starts: the member and
// endpoint it targets and the cluster as the agent last saw it.
func runAttributes(s Scheduled, t *Target, v View) []attribute.KeyValue {
	probe := s.Probe.Name()
	attrs := []attribute.KeyValue{
		AttrProbe.String(probe),
		AttrMemberName.String(t.Label()),
	}
	if _, rpc := probeRPC[probe]; rpc || s.Scope != LocalMember {
		// A local probe that sends etcd no request measures the member's
		// host, not etcd.
		attrs = append(attrs, semconv.DBSystemNameKey.String(dbSystemNameEtcd))
	}
	if id := t.ID(); id != 0 {
		attrs = append(attrs, AttrMemberID.String(MemberIDLabel(id)))
	}
	attrs = append(attrs, endpointAttributes(t.Endpoint)...)
	if m, ok := probeRPC[probe]; ok {
		attrs = append(attrs, semconv.RPCSystemNameGRPC, semconv.RPCMethodKey.String(m))
	}
	return append(attrs, leaderAttributes(v)...)
}

// endpointAttributes are server.address and server.port of a client URL.
func endpointAttributes(endpoint string) []attribute.KeyValue {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return []attribute.KeyValue{semconv.ServerAddressKey.String(endpoint)}
	}
	attrs := []attribute.KeyValue{semconv.ServerAddressKey.String(u.Hostname())}
	if p, err := strconv.Atoi(u.Port()); err == nil {
		attrs = append(attrs, semconv.ServerPortKey.Int(p))
	}
	return attrs
}

// leaderAttributes are the agreed leader and term of a view, when any.
func leaderAttributes(v View) []attribute.KeyValue {
	attrs := []attribute.KeyValue{AttrHasLeader.Bool(v.HasLeader)}
	if v.Leader != 0 {
		attrs = append(attrs,
			AttrLeaderID.String(MemberIDLabel(v.Leader)),
			AttrLeaderName.String(v.MemberLabel(v.Leader)),
			AttrTerm.Int64(int64(v.Term)))
	}
	return attrs
}

// statusAttributes are what a member said of itself, for its status span.
func statusAttributes(st *Status) []attribute.KeyValue {
	return []attribute.KeyValue{
		AttrMemberID.String(MemberIDLabel(st.MemberID)),
		AttrMemberLeaderID.String(MemberIDLabel(st.Leader)),
		AttrMemberTerm.Int64(int64(st.Term)),
		AttrMemberRaftIndex.Int64(int64(st.RaftIndex)),
		AttrMemberAppliedIndex.Int64(int64(st.AppliedIndex)),
		AttrMemberIsLearner.Bool(st.IsLearner),
		AttrMemberDBSize.Int64(st.DBSize),
	}
}

// memberLabel is the label of the member with the given ID in the view, or
// its hex ID when the view does not list it.
// MemberLabel is the label of the member with the given ID, or the ID
// itself when the view has no such member.
func (v View) MemberLabel(id uint64) string {
	for _, m := range v.Members {
		if m.ID == id {
			return m.Label
		}
	}
	return MemberIDLabel(id)
}

// roundAttributes describe the cluster after a round's evaluation.
func roundAttributes(v View) []attribute.KeyValue {
	attrs := leaderAttributes(v)
	for _, m := range v.Members {
		if m.Local {
			attrs = append(attrs, AttrLocalMember.String(m.Label))
		}
	}
	if v.MembershipKnown {
		attrs = append(attrs,
			AttrVoters.Int(v.Voters),
			AttrHealthyVoters.Int(v.HealthyVoters),
			AttrFaultTolerance.Int(v.FaultTolerance))
	}
	return attrs
}

// traceChanges adds an event to the round span for each change between two
// views that the logs also report: a new leader, the loss of the agreed
// leader, a change of fault tolerance. Each event carries the cluster's
// state at that moment, so that the trace answers why it happened.
func traceChanges(span trace.Span, prev, v View, figures func() map[string]float64) {
	leaderChanged := v.HasLeader && prev.Leader != 0 && v.LeaderChanges != prev.LeaderChanges
	leaderLost := prev.HasLeader && !v.HasLeader && !v.LeaderUnknown
	quorumChanged := v.HealthKnown && prev.HealthKnown && v.FaultTolerance != prev.FaultTolerance
	if !span.IsRecording() || !(leaderChanged || leaderLost || quorumChanged) {
		return
	}
	state := clusterContext(v)
	if figures != nil {
		fs := figures()
		for _, k := range slices.Sorted(maps.Keys(fs)) {
			state = append(state, attribute.Float64(k, fs[k]))
		}
	}
	if leaderChanged {
		attrs := []attribute.KeyValue{
			AttrPreviousLeaderID.String(MemberIDLabel(prev.Leader)),
			AttrPreviousLeaderName.String(prev.MemberLabel(prev.Leader)),
			AttrPreviousTerm.Int64(int64(prev.Term)),
			AttrLeaderID.String(MemberIDLabel(v.Leader)),
			AttrLeaderName.String(v.MemberLabel(v.Leader)),
			AttrTerm.Int64(int64(v.Term)),
			AttrLeaderChanges.Int64(int64(v.LeaderChanges)),
		}
		span.AddEvent(EventLeaderChanged, trace.WithAttributes(append(attrs, state...)...))
	}
	if leaderLost {
		attrs := []attribute.KeyValue{
			AttrPreviousLeaderID.String(MemberIDLabel(prev.Leader)),
			AttrPreviousLeaderName.String(prev.MemberLabel(prev.Leader)),
			AttrPreviousTerm.Int64(int64(prev.Term)),
			AttrDisagreement.Bool(v.LeaderDisagreement),
		}
		span.AddEvent(EventLeaderLost, trace.WithAttributes(append(attrs, state...)...))
	}
	if quorumChanged {
		attrs := []attribute.KeyValue{
			AttrPrevFaultTolerance.Int(prev.FaultTolerance),
			AttrFaultTolerance.Int(v.FaultTolerance),
			AttrHealthyVoters.Int(v.HealthyVoters),
			AttrVoters.Int(v.Voters),
			AttrQuorumSize.Int(v.QuorumSize),
		}
		span.AddEvent(EventQuorumChanged, trace.WithAttributes(append(attrs, state...)...))
	}
}

// clusterContext is the per-member state that explains a change: which
// members fail, and how far each one is behind in committing and applying.
func clusterContext(v View) []attribute.KeyValue {
	var names, unhealthy []string
	var applyLag, indexLag []int64
	var maxApply int64
	for _, m := range v.Members {
		if !m.Healthy && !m.HealthUnknown && m.ID != 0 && !m.IsLearner {
			unhealthy = append(unhealthy, m.Label)
		}
		if m.Status == nil {
			continue
		}
		lag := int64(m.Status.RaftIndex) - int64(m.Status.AppliedIndex)
		names = append(names, m.Label)
		applyLag = append(applyLag, lag)
		indexLag = append(indexLag, int64(m.RaftIndexLag))
		maxApply = max(maxApply, lag)
	}
	return []attribute.KeyValue{
		AttrUnhealthy.StringSlice(unhealthy),
		AttrMembers.StringSlice(names),
		AttrApplyLag.Int64Slice(applyLag),
		AttrRaftIndexLag.Int64Slice(indexLag),
		AttrMaxApplyLag.Int64(maxApply),
	}
}
