package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// newTracerProvider builds the tracer provider the agent gets, from the
// standard OTEL_* environment variables, read by the OpenTelemetry SDK and
// autoexport:
//
//   - OTEL_SDK_DISABLED=true: a no-op provider; nothing is recorded.
//   - Spans are exported only when OTEL_TRACES_EXPORTER, or an OTLP
//     endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
//     is set; autoexport builds the exporter (otlp, console or none) and
//     the OTLP exporters read their headers, TLS, compression and timeout
//     variables themselves. OTLP goes over gRPC unless
//     OTEL_EXPORTER_OTLP_PROTOCOL says otherwise. Without any of them
//     nothing is dialled, and spans still reach /debug/tracez.
//   - The SDK reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default
//     parentbased_always_on) and OTEL_BSP_* (the bounded export queue);
//     OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the resource.
//
// member returns the local member's name and ID once the agent knows them:
// they join the resource of the spans exported from then on. shutdown
// flushes what is queued, within its context's deadline.
func newTracerProvider(ctx context.Context, logger *slog.Logger, member func() (string, uint64)) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	nop := func(context.Context) error { return nil }
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		logger.Info("tracing disabled", "env", "OTEL_SDK_DISABLED=true")
		return noop.NewTracerProvider(), nop, nil
	}
	// The SDK and the exporters parse the OTEL_* variables themselves and
	// only log what they refuse, going on with defaults: traces sent in
	// plain text, or nowhere, unnoticed. What they report while the
	// provider is built is a configuration error here.
	var refused envProblems
	defer refused.capture(logger)()
	res, err := tracingResource(ctx)
	if err != nil {
		return nil, nil, err
	}
	popts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exporting() {
		// etcdpulse has always sent OTLP over gRPC; the specification's
		// default, which autoexport follows, is http/protobuf.
		if os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") == "" {
			os.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
		}
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("trace exporter (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_*): %w", err)
		}
		// The batch processor's queue is bounded (OTEL_BSP_MAX_QUEUE_SIZE,
		// 2048 spans by default): with no collector listening, spans are
		// dropped, not kept.
		popts = append(popts, sdktrace.WithBatcher(&memberExporter{SpanExporter: exp, member: member}))
		logger.Info("exporting traces", "exporter", os.Getenv("OTEL_TRACES_EXPORTER"), "endpoint", exportEndpoint())
	} else {
		logger.Debug("not exporting traces: neither OTEL_TRACES_EXPORTER nor OTEL_EXPORTER_OTLP_ENDPOINT is set; recent spans are on /debug/tracez")
	}
	sdk := sdktrace.NewTracerProvider(popts...)
	if err := refused.err(); err != nil {
		_ = sdk.Shutdown(ctx)
		return nil, nil, err
	}
	return sdk, sdk.Shutdown, nil
}

// envProblems collects what the OpenTelemetry SDK reports through its
// global logger and error handler.
type envProblems struct {
	mu   sync.Mutex
	msgs []string
}

// capture routes the SDK's reports here until the returned function puts
// the command's logger and error handler back.
func (p *envProblems) capture(logger *slog.Logger) (restore func()) {
	prev := otel.GetErrorHandler()
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { p.add(err.Error()) }))
	otel.SetLogger(logr.New(problemSink{p}))
	return func() {
		otel.SetErrorHandler(prev)
		otel.SetLogger(logr.FromSlogHandler(logger.Handler()))
	}
}

func (p *envProblems) add(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msg)
}

func (p *envProblems) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.msgs) == 0 {
		return nil
	}
	return fmt.Errorf("the OpenTelemetry SDK refused the OTEL_* environment: %s", strings.Join(p.msgs, "; "))
}

// problemSink is a logr sink that keeps the SDK's errors. Their key-value
// pairs are left out but for the error: an input may be a header's secret.
type problemSink struct{ p *envProblems }

func (problemSink) Init(logr.RuntimeInfo)            {}
func (problemSink) Enabled(int) bool                 { return false }
func (problemSink) Info(int, string, ...any)         {}
func (s problemSink) WithValues(...any) logr.LogSink { return s }
func (s problemSink) WithName(string) logr.LogSink   { return s }
func (s problemSink) Error(err error, msg string, _ ...any) {
	s.p.add(fmt.Sprintf("%s: %v", msg, err))
}

// exporting: the environment asks for an exporter.
func exporting() bool {
	exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))
	if exp == "none" {
		return false
	}
	return exp != "" || strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) != "" || strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) != ""
}

// exportEndpoint is the OTLP endpoint spans go to, redacted for logs, or
// "" when none is set.
func exportEndpoint() string {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if v := strings.TrimSpace(os.Getenv(name)); v != "" {
			if u, err := url.Parse(v); err == nil {
				return u.Redacted()
			}
			return v
		}
	}
	return ""
}
