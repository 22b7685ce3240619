package agent

import (
	"net/http"

	"go.opentelemetry.io/contrib/zpages"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// tracez returns the /debug/tracez handler and, when tp is an SDK provider,
// registers the zpages span processor on it, returning the function that
// removes it. Any other provider records nothing to show.
func tracez(tp trace.TracerProvider) (http.Handler, func()) {
	sdk, ok := tp.(*sdktrace.TracerProvider)
	if !ok {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "tracing is disabled: OTEL_SDK_DISABLED=true, or the program embedding the agent gave it no OpenTelemetry SDK tracer provider", http.StatusNotFound)
		}), func() {}
	}
	zp := zpages.NewSpanProcessor()
	sdk.RegisterSpanProcessor(zp)
	return zpages.NewTracezHandler(zp), func() { sdk.UnregisterSpanProcessor(zp) }
}
