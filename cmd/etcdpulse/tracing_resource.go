package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/prometheus/common/version"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/etcdpulse/etcdpulse/probes"
)

// Resource attributes naming the member the agent sits beside.
const (
	resMemberName = attribute.Key("etcdpulse.member.name")
	resMemberID   = attribute.Key("etcdpulse.member.id")
)

// tracingResource describes the process: etcdpulse, its version and host,
// and OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
func tracingResource(ctx context.Context) (*resource.Resource, error) {
	// Later detectors win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override the defaults.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("etcdpulse"), semconv.ServiceVersion(version.Version)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if errors.Is(err, resource.ErrPartialResource) && os.Getenv("OTEL_RESOURCE_ATTRIBUTES") != "" {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w (expected key=value pairs separated by commas)", err)
	}
	if res == nil {
		// A detector failing (host name) leaves the others; only a nil
		// resource is fatal.
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	return res, nil
}

// memberExporter adds the local member's name and ID to the resource of
// exported spans once they are known. A resource is fixed when its
// provider is created, and that is before the agent has asked its member
// anything; asking at startup instead would fail exactly when etcd is down
// as the agent starts, and leave the resource without them until a restart.
type memberExporter struct {
	sdktrace.SpanExporter
	member func() (string, uint64)

	mu  sync.Mutex
	res *resource.Resource // the merged resource, once name and ID are known
}

// ExportSpans implements sdktrace.SpanExporter.
func (e *memberExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 || e.member == nil {
		return e.SpanExporter.ExportSpans(ctx, spans)
	}
	res := e.resource(spans[0].Resource())
	if res == nil {
		return e.SpanExporter.ExportSpans(ctx, spans)
	}
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = withResource{s, res}
	}
	return e.SpanExporter.ExportSpans(ctx, out)
}

func (e *memberExporter) resource(base *resource.Resource) *resource.Resource {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.res != nil {
		return e.res
	}
	name, id := e.member()
	var attrs []attribute.KeyValue
	if name != "" {
		attrs = append(attrs, resMemberName.String(name))
	}
	if id != 0 {
		attrs = append(attrs, resMemberID.String(probes.MemberIDLabel(id)))
	}
	if len(attrs) == 0 {
		return nil
	}
	res, err := resource.Merge(base, resource.NewSchemaless(attrs...))
	if err != nil {
		return nil
	}
	if name != "" && id != 0 {
		e.res = res // a learner's name comes later: keep asking until then
	}
	return res
}

// withResource is a finished span reported with another resource.
type withResource struct {
	sdktrace.ReadOnlySpan
	res *resource.Resource
}

func (s withResource) Resource() *resource.Resource { return s.res }
