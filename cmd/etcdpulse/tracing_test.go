package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/etcdpulse/etcdpulse/agent"
	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
	"github.com/etcdpulse/etcdpulse/probes"
)

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
	var running atomic.Pointer[agent.Agent]
	tp, shutdown, err := newTracerProvider(context.Background(), slog.New(slog.DiscardHandler), localMemberOf(&running))
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
	tp, shutdown, err := newTracerProvider(context.Background(), slog.New(slog.DiscardHandler), nil)
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

	a := startTracedAgent(t, []string{"http://" + testenv.RefusedAddr(t)}, tp)
	// Three rounds evaluated: whatever they would have traced was made.
	var rounds []time.Time
	eventually(t, "three rounds", func() error {
		if at := a.View().At; a.Ready() && (len(rounds) == 0 || at.After(rounds[len(rounds)-1])) {
			rounds = append(rounds, at)
		}
		if len(rounds) < 3 {
			return fmt.Errorf("%d rounds", len(rounds))
		}
		return nil
	})
	// Shutdown flushes: anything queued would be sent now.
	_ = shutdown(context.Background())
	if n := len(r.received()); n != 0 {
		t.Errorf("the receiver got %d batches", n)
	}
	if _, body := status(t, a.url+"/debug/tracez"); !strings.Contains(body, "tracing is disabled") {
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
	addr := testenv.RefusedAddr(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

	var n atomic.Int64
	var mu sync.Mutex
	var lines []string
	logger := slog.New(countingHandler{Handler: slog.DiscardHandler, n: &n, mu: &mu, msg: &lines})
	prev := otel.GetErrorHandler()
	h := newErrorHandler(logger, 5*time.Minute, time.Now)
	var handled atomic.Int64 // export errors reported, logged or not
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { handled.Add(1); h.Handle(err) }))
	t.Cleanup(func() { otel.SetErrorHandler(prev) })

	tp, shutdown, err := newTracerProvider(context.Background(), slog.New(slog.DiscardHandler), nil)
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
	eventually(t, "dozens of failed exports", func() error {
		if n.Load() == 0 || handled.Load() < 24 {
			return fmt.Errorf("%d export errors, %d logged", handled.Load(), n.Load())
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	t.Logf("logged: %q", lines)
	if len(lines) > 2 {
		t.Errorf("%d log lines for one unreachable collector:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}

// TestTracingEnvErrors: what the OpenTelemetry SDK refuses in the OTEL_*
// variables (it only logs that, and goes on with defaults) is a
// configuration error that says what, without a header's value.
func TestTracingEnvErrors(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "invalid OTLP protocol"},
		{"OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.crt", "read tls ca cert file: open /nonexistent/ca.crt: no such file or directory"},
		{"OTEL_EXPORTER_OTLP_HEADERS", "api-key", "parse headers: missing '="},
		{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s", `parse duration: strconv.Atoi: parsing "10s"`},
		{"OTEL_TRACES_SAMPLER", "sometimes", "unsupported sampler: sometimes"},
		{"OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"},
		{"OTEL_RESOURCE_ATTRIBUTES", "cluster", "OTEL_RESOURCE_ATTRIBUTES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
			t.Setenv(tc.name, tc.value)
			_, _, err := newTracerProvider(context.Background(), slog.New(slog.DiscardHandler), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
			if err != nil && tc.name == "OTEL_EXPORTER_OTLP_HEADERS" && strings.Contains(err.Error(), "api-key") {
				t.Errorf("the error shows the header's value: %v", err)
			}
		})
	}
	t.Run("no endpoint", func(t *testing.T) {
		clearOTelEnv(t)
		tp, shutdown, err := newTracerProvider(context.Background(), slog.New(slog.DiscardHandler), nil)
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

// startTracedAgent runs an agent with the default schedule and the given
// tracer provider, served on a real loopback socket.
func startTracedAgent(t testing.TB, endpoints []string, tp trace.TracerProvider) *servedAgent {
	t.Helper()
	cfg := defaultFileConfig()
	cfg.Etcd.Endpoints = endpoints
	cfg.Disk.Enabled, cfg.Host.Enabled = false, false
	return serveAgent(t, cfg, tp)
}

// clearOTelEnv hides the OTEL_* variables of the environment the tests run
// in; t.Setenv restores them.
func clearOTelEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "OTEL_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

// eventually polls f until it returns nil; deadlines are generous because
// the machines are shared.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	testenv.Eventually(t, 45*time.Second, what, f)
}
