package probes

import (
	"context"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestTraceChanges(t *testing.T) {
	m := func(id uint64, name string, healthy bool, index, applied uint64) MemberView {
		mv := MemberView{Member: Member{ID: id, Name: name}, Label: name, Healthy: healthy, Reachable: healthy}
		if healthy {
			mv.Status = &Status{MemberID: id, RaftIndex: index, AppliedIndex: applied}
		}
		return mv
	}
	healthy := View{MembershipKnown: true, HealthKnown: true, HasLeader: true, Leader: 1, Term: 2, LeaderChanges: 0, Voters: 3, HealthyVoters: 3, QuorumSize: 2, FaultTolerance: 1,
		Members: []MemberView{m(1, "a", true, 10, 10), m(2, "b", true, 10, 9), m(3, "c", true, 10, 10)}}
	newLeader := View{MembershipKnown: true, HealthKnown: true, HasLeader: true, Leader: 2, Term: 3, LeaderChanges: 1, Voters: 3, HealthyVoters: 2, QuorumSize: 2, FaultTolerance: 0,
		Members: []MemberView{m(1, "a", false, 0, 0), m(2, "b", true, 12, 7), m(3, "c", true, 12, 12)}}
	leaderless := View{MembershipKnown: true, HealthKnown: true, Leader: 1, Term: 2, LeaderDisagreement: true, Voters: 3, HealthyVoters: 3, QuorumSize: 2, FaultTolerance: 1,
		Members: healthy.Members}
	for _, tc := range []struct {
		name    string
		prev, v View
		figures map[string]float64
		want    []string
		check   map[attribute.Key]attribute.Value
	}{
		{name: "no change", prev: healthy, v: healthy},
		{name: "first view", prev: View{}, v: healthy},
		{name: "failover", prev: healthy, v: newLeader, figures: map[string]float64{"etcdpulse.disk.fsync_p99_seconds": 0.25},
			want: []string{EventLeaderChanged, EventQuorumChanged},
			check: map[attribute.Key]attribute.Value{
				AttrPreviousLeaderName:             attribute.StringValue("a"),
				AttrPreviousLeaderID:               attribute.StringValue("1"),
				AttrPreviousTerm:                   attribute.Int64Value(2),
				AttrLeaderName:                     attribute.StringValue("b"),
				AttrTerm:                           attribute.Int64Value(3),
				AttrUnhealthy:                      attribute.StringSliceValue([]string{"a"}),
				AttrMembers:                        attribute.StringSliceValue([]string{"b", "c"}),
				AttrApplyLag:                       attribute.Int64SliceValue([]int64{5, 0}),
				AttrMaxApplyLag:                    attribute.Int64Value(5),
				"etcdpulse.disk.fsync_p99_seconds": attribute.Float64Value(0.25),
			}},
		{name: "leader lost", prev: healthy, v: leaderless, want: []string{EventLeaderLost},
			check: map[attribute.Key]attribute.Value{AttrDisagreement: attribute.BoolValue(true), AttrPreviousLeaderName: attribute.StringValue("a")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			_, span := tp.Tracer("test").Start(context.Background(), SpanRound)
			var figures func() map[string]float64
			if tc.figures != nil {
				figures = func() map[string]float64 { return tc.figures }
			}
			traceChanges(span, tc.prev, tc.v, figures)
			span.End()
			events := rec.Ended()[0].Events()
			var names []string
			for _, e := range events {
				names = append(names, e.Name)
			}
			if !slices.Equal(names, tc.want) {
				t.Fatalf("events %v, want %v", names, tc.want)
			}
			if len(events) == 0 {
				return
			}
			got := map[attribute.Key]attribute.Value{}
			for _, kv := range events[0].Attributes {
				got[kv.Key] = kv.Value
			}
			for k, v := range tc.check {
				if got[k].Emit() != v.Emit() {
					t.Errorf("%s = %s, want %s", k, got[k].Emit(), v.Emit())
				}
			}
		})
	}
}

func TestEndpointAttributes(t *testing.T) {
	for _, tc := range []struct {
		endpoint, host string
		port           int
	}{
		{"https://10.0.0.1:2379", "10.0.0.1", 2379},
		{"http://[::1]:2379", "::1", 2379},
		{"http://etcd-0.etcd", "etcd-0.etcd", 0},
		{"unix:///run/etcd.sock", "unix:///run/etcd.sock", 0},
	} {
		got := map[attribute.Key]attribute.Value{}
		for _, kv := range endpointAttributes(tc.endpoint) {
			got[kv.Key] = kv.Value
		}
		if got["server.address"].AsString() != tc.host || got["server.port"].AsInt64() != int64(tc.port) {
			t.Errorf("%s: %v", tc.endpoint, got)
		}
	}
}

func TestObserveExemplar(t *testing.T) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Help: "h", Buckets: []float64{1}})
	Observe(context.Background(), h, 0.5) // no span: no exemplar
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "run")
	Observe(ctx, h, 0.5)
	span.End()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	ex := m.GetHistogram().GetBucket()[0].GetExemplar()
	labels := map[string]string{}
	for _, l := range ex.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["trace_id"] != span.SpanContext().TraceID().String() || labels["span_id"] != span.SpanContext().SpanID().String() {
		t.Errorf("exemplar labels %v, want the span's IDs", labels)
	}
}
