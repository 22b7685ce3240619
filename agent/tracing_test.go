package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/probes"
)

// startTracedAgent runs an agent with the default schedule and the given
// tracer provider, served on a real loopback socket.
func startTracedAgent(t testing.TB, endpoints []string, tp trace.TracerProvider) *testAgent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Etcd.Endpoints = endpoints
	return serveAgent(t, Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), TracerProvider: tp})
}

// recorder is an SDK tracer provider that keeps every ended span.
func recorder(t testing.TB) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}

// clearOTelEnv hides the OTEL_* variables of the environment the tests run
// in; t.Setenv restores them.
func clearOTelEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OTEL_") {
			t.Setenv(k, "")
		}
	}
}

// eventually polls f until it returns nil; deadlines are generous because
// the machines are shared.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not seen within 60s: %v", what, err)
}

func attrs(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		out[kv.Key] = kv.Value
	}
	return out
}

func children(spans []sdktrace.ReadOnlySpan, parent sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() && s.SpanContext().TraceID() == parent.SpanContext().TraceID() {
			out = append(out, s)
		}
	}
	return out
}

// TestTraceShape checks one round's trace: the round is the root, each
// probe run is its child with the attributes of its member, and the etcd
// client's RPCs are children of the probe runs that sent them. The
// OpenMetrics output links latency buckets to those traces.
func TestTraceShape(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess})
	tp, rec := recorder(t)
	a := startTracedAgent(t, c.ClientURLs(), tp)
	u, _ := url.Parse(c.ClientURLs()[0])
	port, _ := strconv.Atoi(u.Port())
	member := c.Member(0)

	var round sdktrace.ReadOnlySpan
	var runs []sdktrace.ReadOnlySpan
	eventually(t, "a round with every probe, the member named", func() error {
		spans := rec.Ended()
		for _, s := range spans {
			if s.Name() != probes.SpanRound {
				continue
			}
			kids := children(spans, s)
			named := 0
			for _, k := range kids {
				if attrs(k.Attributes())[probes.AttrMemberName].AsString() == member.Name() {
					named++
				}
			}
			if named >= 4 {
				round, runs = s, kids
				return nil
			}
		}
		return errors.New("no such round yet")
	})
	if round.Parent().IsValid() {
		t.Errorf("round span has parent %v, want a root", round.Parent().SpanID())
	}
	ra := attrs(round.Attributes())
	if ra[probes.AttrLocalMember].AsString() != member.Name() || !ra[probes.AttrHasLeader].AsBool() || ra[probes.AttrVoters].AsInt64() != 1 {
		t.Errorf("round attributes = %v", round.Attributes())
	}

	spans := rec.Ended()
	seen := map[string]bool{}
	for _, s := range runs {
		a := attrs(s.Attributes())
		name := a[probes.AttrProbe].AsString()
		seen[name] = true
		if s.Name() != probes.SpanProbePrefix+name {
			t.Errorf("span %q for probe %q", s.Name(), name)
		}
		want := map[attribute.Key]attribute.Value{
			"server.address":      attribute.StringValue("127.0.0.1"),
			"server.port":         attribute.IntValue(port),
			"db.system.name":      attribute.StringValue("etcd"),
			"rpc.system.name":     attribute.StringValue("grpc"),
			probes.AttrResult:     attribute.StringValue("success"),
			probes.AttrMemberName: attribute.StringValue(member.Name()),
			probes.AttrLeaderName: attribute.StringValue(member.Name()),
			probes.AttrLeaderID:   attribute.StringValue(probes.MemberIDLabel(member.ID())),
			probes.AttrHasLeader:  attribute.BoolValue(true),
			probes.AttrMemberID:   attribute.StringValue(probes.MemberIDLabel(member.ID())),
		}
		for k, v := range want {
			if a[k] != v {
				t.Errorf("%s: %s = %v, want %v", s.Name(), k, a[k].Emit(), v.Emit())
			}
		}
		if d := a[probes.AttrDuration].AsFloat64(); d <= 0 {
			t.Errorf("%s: duration %v", s.Name(), d)
		}
		if s.Status().Code == codes.Error {
			t.Errorf("%s: status %v", s.Name(), s.Status())
		}
		// The client's RPCs are children of the run that sent them.
		rpc := a["rpc.method"].AsString()
		var found bool
		for _, k := range children(spans, s) {
			if k.Name() == rpc && k.SpanKind() == trace.SpanKindClient {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no child client span %q", s.Name(), rpc)
		}
		if name == probes.ProbeStatus {
			if a[probes.AttrMemberTerm].AsInt64() < 1 || a[probes.AttrMemberRaftIndex].AsInt64() < 1 || a[probes.AttrMemberLeaderID] != attribute.StringValue(probes.MemberIDLabel(member.ID())) {
				t.Errorf("status span attributes = %v", s.Attributes())
			}
		}
	}
	for _, p := range []string{probes.ProbeStatus, probes.ProbeMemberList, probes.ProbeReadLinearizable, probes.ProbeReadSerializable} {
		if !seen[p] {
			t.Errorf("no %s span in the round", p)
		}
	}

	t.Run("tracez", func(t *testing.T) {
		body := string(get(t, a.url+"/debug/tracez", ""))
		if !strings.Contains(body, probes.SpanRound) || !strings.Contains(body, "etcdpulse.probe.status") {
			t.Errorf("/debug/tracez does not list the probe spans:\n%.2000s", body)
		}
		if !strings.Contains(string(get(t, a.url+"/", "")), "/debug/tracez") {
			t.Error("landing page does not link /debug/tracez")
		}
	})

	t.Run("exemplars", func(t *testing.T) {
		body := string(get(t, a.url+"/metrics", "application/openmetrics-text; version=1.0.0"))
		ex := regexp.MustCompile(`(?m)^etcdpulse_probe_duration_seconds_bucket\{[^}]*\} \d+ # \{[^}]*trace_id="([0-9a-f]{32})"[^}]*\} [0-9.e+-]+`)
		m := ex.FindAllStringSubmatch(body, -1)
		if len(m) == 0 {
			t.Fatalf("no exemplar on etcdpulse_probe_duration_seconds_bucket:\n%.3000s", body)
		}
		traces := map[string]bool{}
		for _, s := range rec.Ended() {
			traces[s.SpanContext().TraceID().String()] = true
		}
		for _, x := range m {
			if !traces[x[1]] {
				t.Errorf("exemplar trace %s is no recorded trace", x[1])
			}
		}
	})
}

// TestTraceLeaderChange kills the leader of three members: the round that
// sees the new one carries a leader_changed event with the old and new
// leader and the term, a quorum_changed event, and the runs against the
// dead member fail with an error status.
func TestTraceLeaderChange(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	old := leaderOf(t, c)
	var eps []string
	for _, m := range c.Members() {
		if m != old {
			eps = append(eps, m.ClientURL())
		}
	}
	eps = append(eps, old.ClientURL())
	tp, rec := recorder(t)
	a := startTracedAgent(t, eps, tp)
	eventually(t, "a healthy cluster", func() error {
		if v := a.View(); !v.HasLeader || v.HealthyVoters != 3 {
			return errors.New("not yet")
		}
		return nil
	})
	killed := time.Now()
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}

	// Events after the kill; startup has its own quorum_changed while
	// the members are probed for the first time.
	event := func(name string, after time.Time) (sdktrace.Event, error) {
		for _, s := range rec.Ended() {
			for _, e := range s.Events() {
				if s.Name() == probes.SpanRound && e.Name == name && e.Time.After(after) {
					return e, nil
				}
			}
		}
		return sdktrace.Event{}, errors.New("no " + name + " event yet")
	}
	var changed, quorum sdktrace.Event
	eventually(t, "leader_changed and quorum_changed events", func() (err error) {
		if changed, err = event(probes.EventLeaderChanged, killed); err != nil {
			return err
		}
		quorum, err = event(probes.EventQuorumChanged, killed)
		return err
	})
	t.Logf("%s: %v", changed.Name, changed.Attributes)
	t.Logf("%s: %v", quorum.Name, quorum.Attributes)
	ea := attrs(changed.Attributes)
	if got := ea[probes.AttrPreviousLeaderName].AsString(); got != old.Name() {
		t.Errorf("previous leader = %q, want %s", got, old.Name())
	}
	if got := ea[probes.AttrPreviousLeaderID].AsString(); got != probes.MemberIDLabel(old.ID()) {
		t.Errorf("previous leader ID = %q, want %x", got, old.ID())
	}
	if got := ea[probes.AttrLeaderName].AsString(); got == old.Name() || got == "" {
		t.Errorf("new leader = %q", got)
	}
	if prev, term := ea[probes.AttrPreviousTerm].AsInt64(), ea[probes.AttrTerm].AsInt64(); term <= prev || prev < 1 {
		t.Errorf("term %d after %d", term, prev)
	}
	if _, ok := ea[probes.AttrApplyLag]; !ok {
		t.Errorf("no apply lag in %v", changed.Attributes)
	}
	qa := attrs(quorum.Attributes)
	if qa[probes.AttrVoters].AsInt64() != 3 || qa[probes.AttrPrevFaultTolerance].AsInt64() != 1 || qa[probes.AttrFaultTolerance].AsInt64() != 0 ||
		!slices.Equal(qa[probes.AttrUnhealthy].AsStringSlice(), []string{old.Name()}) {
		t.Errorf("quorum_changed attributes = %v", quorum.Attributes)
	}

	eventually(t, "a failed run against the dead member", func() error {
		for _, s := range rec.Ended() {
			a := attrs(s.Attributes())
			if a[probes.AttrMemberName].AsString() != old.Name() || a[probes.AttrResult].AsString() != "failure" {
				continue
			}
			if s.Status().Code != codes.Error || s.Status().Description == "" {
				return errors.New("failed run without an error status")
			}
			for _, e := range s.Events() {
				if e.Name == "exception" {
					return nil
				}
			}
			return errors.New("failed run without a recorded error")
		}
		return errors.New("none yet")
	})
}

// otlpReceiver is an OTLP/gRPC trace receiver on a loopback port.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	addr string

	mu  sync.Mutex
	got []*tracepb.ResourceSpans
}

func startReceiver(t *testing.T) *otlpReceiver {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{addr: l.Addr().String()}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, r)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return r
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, req.GetResourceSpans()...)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) received() []*tracepb.ResourceSpans {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.ResourceSpans(nil), r.got...)
}

func protoAttrs(kvs []*commonpb.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			out[kv.GetKey()] = v.GetStringValue()
		default:
			out[kv.GetKey()] = v.String()
		}
	}
	return out
}

// TestTraceExportOTLP sends an agent's spans over the network to an OTLP
// receiver configured only through the OTEL_* environment, the way the
// command does, and finds them there with the resource of the agent.
func TestTraceExportOTLP(t *testing.T) {
	clearOTelEnv(t)
	r := startReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+r.addr)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")

	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess})
	var running atomic.Pointer[Agent]
	member := LocalMemberOf(&running)
	tp, shutdown, err := NewTracerProvider(context.Background(), TracingOptions{Member: member})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	a := startTracedAgent(t, c.ClientURLs(), tp)
	running.Store(a.Agent)

	host, _ := os.Hostname()
	m := c.Member(0)
	eventually(t, "a round and its probe spans at the receiver, with the member on the resource", func() error {
		for _, rs := range r.received() {
			res := protoAttrs(rs.GetResource().GetAttributes())
			want := map[string]string{
				"service.name":                "etcdpulse",
				"host.name":                   host,
				"deployment.environment.name": "test",
				"etcdpulse.member.name":       m.Name(),
				"etcdpulse.member.id":         probes.MemberIDLabel(m.ID()),
			}
			ok := true
			for k, v := range want {
				ok = ok && res[k] == v
			}
			if !ok {
				continue
			}
			rounds := map[string]bool{}
			var all []*tracepb.Span
			for _, ss := range rs.GetScopeSpans() {
				all = append(all, ss.GetSpans()...)
			}
			for _, s := range all {
				if s.GetName() == probes.SpanRound && len(s.GetParentSpanId()) == 0 {
					rounds[string(s.GetSpanId())] = true
				}
			}
			for _, s := range all {
				if s.GetName() == "etcdpulse.probe.status" && rounds[string(s.GetParentSpanId())] &&
					protoAttrs(s.GetAttributes())["etcdpulse.member.name"] == m.Name() {
					return nil
				}
			}
		}
		return errors.New("not yet")
	})
}

// TestTracingDisabled: with OTEL_SDK_DISABLED=true nothing is recorded or
// sent, even with an endpoint configured, and /debug/tracez says so.
func TestTracingDisabled(t *testing.T) {
	clearOTelEnv(t)
	r := startReceiver(t)
	t.Setenv("OTEL_SDK_DISABLED", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+r.addr)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	tp, shutdown, err := NewTracerProvider(context.Background(), TracingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, sdk := tp.(*sdktrace.TracerProvider); sdk {
		t.Fatal("got an SDK provider")
	}
	_, span := tp.Tracer("test").Start(context.Background(), "x")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Error("the disabled provider records spans")
	}
	span.End()

	a := startTracedAgent(t, []string{"http://127.0.0.1:1"}, tp)
	eventually(t, "first round", func() error {
		if !a.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	time.Sleep(time.Second)
	_ = shutdown(context.Background())
	if n := len(r.received()); n != 0 {
		t.Errorf("the receiver got %d batches", n)
	}
	if body := string(get(t, a.url+"/debug/tracez", "")); !strings.Contains(body, "tracing is disabled") {
		t.Errorf("/debug/tracez = %q", body)
	}
}

// countingHandler counts log records.
type countingHandler struct {
	slog.Handler
	n   *atomic.Int64
	mu  *sync.Mutex
	msg *[]string
}

func (countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.n.Add(1)
	h.mu.Lock()
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	*h.msg = append(*h.msg, b.String())
	h.mu.Unlock()
	return nil
}

// TestTracingNoCollector: an endpoint nobody listens on costs a log line
// or two, not one per export attempt.
func TestTracingNoCollector(t *testing.T) {
	clearOTelEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

	var n atomic.Int64
	var mu sync.Mutex
	var lines []string
	logger := slog.New(countingHandler{Handler: slog.DiscardHandler, n: &n, mu: &mu, msg: &lines})
	prev := otel.GetErrorHandler()
	otel.SetErrorHandler(NewErrorHandler(logger))
	t.Cleanup(func() { otel.SetErrorHandler(prev) })

	tp, shutdown, err := NewTracerProvider(context.Background(), TracingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = shutdown(ctx)
	}()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, s := tp.Tracer("test").Start(context.Background(), "probe")
				s.End()
			}
		}
	}()
	defer func() { close(stop); <-done }()
	eventually(t, "the export error, logged", func() error {
		if n.Load() == 0 {
			return errors.New("nothing logged")
		}
		return nil
	})
	time.Sleep(3 * time.Second) // dozens of failed exports
	mu.Lock()
	defer mu.Unlock()
	t.Logf("logged: %q", lines)
	if len(lines) > 2 {
		t.Errorf("%d log lines for one unreachable collector:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}

// TestTracingEnvErrors: a malformed variable is an error that names it.
func TestTracingEnvErrors(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317"},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector:4317"},
		{"OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.crt"},
		{"OTEL_EXPORTER_OTLP_HEADERS", "api-key"},
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s"},
		{"OTEL_TRACES_SAMPLER", "sometimes"},
		{"OTEL_TRACES_EXPORTER", "zipkin"},
		{"OTEL_RESOURCE_ATTRIBUTES", "cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv(tc.name, tc.value)
			_, _, err := NewTracerProvider(context.Background(), TracingOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.name) {
				t.Errorf("err = %v, want one naming %s", err, tc.name)
			}
		})
	}
	t.Run("sampler ratio", func(t *testing.T) {
		clearOTelEnv(t)
		t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
		t.Setenv("OTEL_TRACES_SAMPLER_ARG", "2")
		if _, _, err := NewTracerProvider(context.Background(), TracingOptions{}); err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER_ARG") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("no endpoint", func(t *testing.T) {
		clearOTelEnv(t)
		tp, shutdown, err := NewTracerProvider(context.Background(), TracingOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer shutdown(context.Background())
		if _, ok := tp.(*sdktrace.TracerProvider); !ok {
			t.Errorf("got %T, want an SDK provider for /debug/tracez", tp)
		}
	})
}

func TestErrorHandlerDedupes(t *testing.T) {
	var n atomic.Int64
	var mu sync.Mutex
	var lines []string
	now := time.Unix(0, 0)
	h := newErrorHandler(slog.New(countingHandler{Handler: slog.DiscardHandler, n: &n, mu: &mu, msg: &lines}), time.Minute, func() time.Time { return now })
	refused := func(port int) error {
		return errors.New("traces export: dial tcp 127.0.0.1:" + strconv.Itoa(port) + ": connect: connection refused")
	}
	for i := range 100 {
		h.Handle(refused(4000 + i))
		now = now.Add(100 * time.Millisecond)
	}
	if n.Load() != 1 {
		t.Fatalf("%d lines for one repeated error, want 1: %v", n.Load(), lines)
	}
	for i := range 10 {
		h.Handle(errors.New("distinct error " + strings.Repeat("x", i)))
	}
	if n.Load() != maxDistinctErrors {
		t.Fatalf("%d lines within an interval, want %d: %v", n.Load(), maxDistinctErrors, lines)
	}
	now = now.Add(time.Minute)
	h.Handle(refused(1))
	if n.Load() != 1+maxDistinctErrors || !strings.Contains(lines[len(lines)-1], "repeats_since_last_logged=99") {
		t.Fatalf("after the interval: %v", lines)
	}
}

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name string
		bs   []bucket
		want float64
	}{
		{"empty", []bucket{{1, 0}, {inf, 0}}, math.NaN()},
		{"all in first", []bucket{{0.1, 10}, {1, 10}, {inf, 10}}, 0.099},
		{"interpolated", []bucket{{0.1, 0}, {0.2, 100}, {inf, 100}}, 0.199},
		{"in +Inf", []bucket{{0.1, 0}, {0.2, 1}, {inf, 100}}, 0.2},
	} {
		got := quantile(0.99, tc.bs)
		if !(math.IsNaN(got) && math.IsNaN(tc.want)) && math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestEventFigures: the fsync histogram shows in change events as its p99
// over the last window, not since the agent started; peer RTT counts the
// connect phase only.
func TestEventFigures(t *testing.T) {
	reg := prometheus.NewRegistry()
	buckets := []float64{0.001, 0.01, 0.1, 1}
	fsync := prometheus.NewHistogram(prometheus.HistogramOpts{Name: collectors.FsyncDuration.Name, Help: "h", Buckets: buckets})
	rtt := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: collectors.NetworkPeerRTT.Name, Help: "h", Buckets: buckets}, []string{"peer", "phase"})
	reg.MustRegister(fsync, rtt)
	f := &figures{gatherer: reg}
	for range 1000 {
		fsync.Observe(0.0005) // a fast disk for a long time
	}
	f.observe(probes.View{At: time.Now().Add(-time.Minute)})
	for range 100 {
		fsync.Observe(0.5) // then a stall
		rtt.WithLabelValues("m1", probes.PhaseConnectPeer).Observe(0.005)
		rtt.WithLabelValues("m2", probes.PhaseConnectPeer).Observe(0.05)
		rtt.WithLabelValues("m2", probes.PhaseRequest).Observe(0.5)
	}
	got := f.values()
	if p99 := got["etcdpulse.disk.fsync_p99_seconds"]; p99 < 0.1 || p99 > 1 {
		t.Errorf("fsync p99 over the window = %v, want within the stall's bucket (figures %v)", p99, got)
	}
	if p99 := got["etcdpulse.network.peer_rtt_p99_seconds"]; p99 < 0.01 || p99 > 0.1 {
		t.Errorf("peer RTT p99 = %v, want the worst peer's connect time (figures %v)", p99, got)
	}
	if w := got["etcdpulse.figures.window_seconds"]; w < 59 {
		t.Errorf("window = %vs", w)
	}
	if _, ok := got["etcdpulse.etcd.wal_fsync_p99_seconds"]; ok {
		t.Errorf("a figure without its histogram: %v", got)
	}
}
