package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/version"
	"go.opentelemetry.io/contrib/zpages"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// TracingOptions configure NewTracerProvider. Everything else comes from
// the standard OTEL_* environment variables.
type TracingOptions struct {
	// Logger receives one line saying where spans go; nil discards it.
	Logger *slog.Logger
	// Member returns the local member's name and ID once the agent knows
	// them (the ID comes with the member's first status answer, so not
	// necessarily at startup). They are added to the resource of every
	// span exported from then on. nil leaves them out.
	Member func() (name string, id uint64)
}

// LocalMemberOf returns a TracingOptions.Member for the agent that p will
// hold: the tracer provider exists before the agent does, so the agent is
// looked up at each call. "" and 0 until p holds an agent that knows its
// local member.
func LocalMemberOf(p *atomic.Pointer[Agent]) func() (name string, id uint64) {
	return func() (string, uint64) {
		if a := p.Load(); a != nil {
			for _, m := range a.View().Members {
				if m.Local {
					return m.Name, m.ID
				}
			}
		}
		return "", 0
	}
}

// Resource attributes naming the member the agent sits beside.
const (
	resMemberName = attribute.Key("etcdpulse.member.name")
	resMemberID   = attribute.Key("etcdpulse.member.id")
)

// NewTracerProvider builds the tracer provider the etcdpulse command gives
// the agent, from the standard OTEL_* environment variables:
//
//   - OTEL_SDK_DISABLED=true: a no-op provider; nothing is recorded.
//   - Spans are exported over OTLP/gRPC only when OTEL_EXPORTER_OTLP_ENDPOINT
//     or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and OTEL_TRACES_EXPORTER
//     is not "none"); the exporter reads the headers, TLS, compression and
//     timeout variables itself. Without an endpoint nothing is dialled, and
//     spans still reach /debug/tracez.
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG choose the sampler
//     (default parentbased_always_on), OTEL_BSP_* size the bounded export
//     queue, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES the resource.
//
// A malformed variable is an error that names it. shutdown flushes what is
// queued, within its context's deadline.
func NewTracerProvider(ctx context.Context, opts TracingOptions) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	nop := func(context.Context) error { return nil }
	if tracingDisabled() {
		logger.Info("tracing disabled", "env", "OTEL_SDK_DISABLED=true")
		return noop.NewTracerProvider(), nop, nil
	}
	if err := checkTracingEnv(); err != nil {
		return nil, nil, err
	}
	res, err := tracingResource(ctx)
	if err != nil {
		return nil, nil, err
	}
	popts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	endpoint := exportEndpoint()
	if endpoint != "" {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("OTLP trace exporter for %s: %w", endpoint, err)
		}
		// The batch processor's queue is bounded (OTEL_BSP_MAX_QUEUE_SIZE,
		// 2048 spans by default): with no collector listening, spans are
		// dropped, not kept.
		popts = append(popts, sdktrace.WithBatcher(&memberExporter{SpanExporter: exp, member: opts.Member}))
		logger.Info("exporting traces over OTLP/gRPC", "endpoint", endpoint)
	} else {
		logger.Debug("not exporting traces: OTEL_EXPORTER_OTLP_ENDPOINT is not set; recent spans are on /debug/tracez")
	}
	sdk := sdktrace.NewTracerProvider(popts...)
	return sdk, sdk.Shutdown, nil
}

func tracingDisabled() bool {
	return strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true")
}

// exportEndpoint is the OTLP endpoint spans go to, redacted for logs, or
// "" when they are not exported.
func exportEndpoint() string {
	if strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")) == "none" {
		return ""
	}
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

// envCheck validates one OTEL_* variable when it is set.
type envCheck struct {
	names []string
	check func(v string) error
}

var tracingEnvChecks = []envCheck{
	{[]string{"OTEL_TRACES_EXPORTER"}, oneOf("otlp", "none")},
	{[]string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"}, func(v string) error {
		if v != "grpc" {
			return fmt.Errorf("etcdpulse exports OTLP over gRPC only: set it to grpc or unset it")
		}
		return nil
	}},
	{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}, func(v string) error {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("expected http://host:port (plain text) or https://host:port (TLS)")
		}
		return nil
	}},
	{[]string{"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"}, func(v string) error {
		pem, err := os.ReadFile(v)
		if err != nil {
			return err
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("%q holds no PEM certificate", v)
		}
		return nil
	}},
	{[]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE"}, clientKeyPair("OTEL_EXPORTER_OTLP_CLIENT_KEY")},
	{[]string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"}, func(v string) error {
		for i, h := range strings.Split(v, ",") {
			// Values are secrets (API keys): never quote them.
			if k, _, ok := strings.Cut(h, "="); !ok || strings.TrimSpace(k) == "" {
				return fmt.Errorf("header %d is not key=value", i+1)
			}
		}
		return nil
	}},
	{[]string{"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT",
		"OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"}, func(v string) error {
		if n, err := strconv.Atoi(v); err != nil || n <= 0 {
			return fmt.Errorf("expected a positive integer (milliseconds or spans)")
		}
		return nil
	}},
	{[]string{"OTEL_TRACES_SAMPLER"}, oneOf("always_on", "always_off", "traceidratio",
		"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio")},
	{[]string{"OTEL_TRACES_SAMPLER_ARG"}, func(v string) error {
		if !strings.HasSuffix(os.Getenv("OTEL_TRACES_SAMPLER"), "traceidratio") {
			return nil
		}
		if f, err := strconv.ParseFloat(v, 64); err != nil || f < 0 || f > 1 {
			return fmt.Errorf("expected a ratio between 0 and 1 for OTEL_TRACES_SAMPLER=%s", os.Getenv("OTEL_TRACES_SAMPLER"))
		}
		return nil
	}},
}

// checkTracingEnv reports the malformed OTEL_* variables, each by name.
// The SDK would only log them and go on with defaults: traces sent in
// plain text, or nowhere, without anyone noticing.
func checkTracingEnv() error {
	var errs []error
	for _, c := range tracingEnvChecks {
		for _, name := range c.names {
			v := strings.TrimSpace(os.Getenv(name))
			if v == "" {
				continue
			}
			if err := c.check(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func oneOf(values ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(values, v) {
			return fmt.Errorf("%q is not one of %s", v, strings.Join(values, ", "))
		}
		return nil
	}
}

// clientKeyPair checks a client certificate against its key variable (the
// TRACES_ one when the certificate's name has TRACES_ in it).
func clientKeyPair(keyVar string) func(string) error {
	return func(cert string) error {
		key := os.Getenv(strings.Replace(keyVar, "OTLP_", "OTLP_TRACES_", 1))
		if key == "" {
			key = os.Getenv(keyVar)
		}
		if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
			return fmt.Errorf("with key %q (%s): %w", key, keyVar, err)
		}
		return nil
	}
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

// NewErrorHandler returns an OpenTelemetry error handler for
// otel.SetErrorHandler that logs through logger, each distinct error at
// most once every five minutes with a count of the repeats left out, so
// that an unreachable collector costs a few log lines, not one per export.
func NewErrorHandler(logger *slog.Logger) otel.ErrorHandler {
	return newErrorHandler(logger, 5*time.Minute, time.Now)
}

type errorHandler struct {
	logger *slog.Logger
	every  time.Duration
	now    func() time.Time

	mu   sync.Mutex
	seen map[string]*seenError
}

type seenError struct {
	logged     time.Time
	suppressed int
}

// digits vary between repeats of one error (ports, delays, counts).
var digits = regexp.MustCompile(`[0-9]+`)

// maxDistinctErrors bounds the lines per interval when errors keep
// changing text.
const maxDistinctErrors = 3

func newErrorHandler(logger *slog.Logger, every time.Duration, now func() time.Time) *errorHandler {
	return &errorHandler{logger: logger, every: every, now: now, seen: map[string]*seenError{}}
}

// Handle implements otel.ErrorHandler.
func (h *errorHandler) Handle(err error) {
	if err == nil {
		return
	}
	key := digits.ReplaceAllString(err.Error(), "N")
	h.mu.Lock()
	now := h.now()
	recent := 0
	for k, s := range h.seen {
		switch age := now.Sub(s.logged); {
		case age < h.every:
			recent++
		case age >= 2*h.every || s.suppressed == 0:
			// Gone quiet: its next occurrence is news again.
			delete(h.seen, k)
		}
	}
	s, ok := h.seen[key]
	if (ok && now.Sub(s.logged) < h.every) || (!ok && recent >= maxDistinctErrors) {
		if ok {
			s.suppressed++
		}
		h.mu.Unlock()
		return
	}
	suppressed := 0
	if ok {
		suppressed = s.suppressed
	}
	h.seen[key] = &seenError{logged: now}
	h.mu.Unlock()
	h.logger.Warn("tracing error (repeats are logged at most every "+h.every.String()+")", "err", err, "repeats_since_last_logged", suppressed)
}

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

// tracing reports whether tp records anything.
func tracing(tp trace.TracerProvider) bool {
	_, isNoop := tp.(noop.TracerProvider)
	return !isNoop
}

// eventFigure is a latency that explains leader changes, read from one of
// the agent's histograms and attached to change events as its p99 over the
// last minute or so. A family with several series (one per peer) reports
// its worst one.
type eventFigure struct {
	attr   string
	metric string
	// label and value, when set, select the series that count.
	label, value string
}

// eventFigures: the agent's own fsync and peer connect times, and etcd's
// own WAL fsync and peer round trip when its metrics URL is read. A figure
// whose histogram is absent (capability off) is left out of the events.
var eventFigures = []eventFigure{
	{attr: "etcdpulse.disk.fsync_p99_seconds", metric: collectors.FsyncDuration.Name},
	{attr: "etcdpulse.network.peer_rtt_p99_seconds", metric: collectors.NetworkPeerRTT.Name, label: "phase", value: probes.PhaseConnectPeer},
	{attr: "etcdpulse.etcd.wal_fsync_p99_seconds", metric: collectors.EtcdWALFsync.Name},
	{attr: "etcdpulse.etcd.peer_rtt_p99_seconds", metric: collectors.EtcdPeerRTT.Name},
}

// matches reports whether a series of family name counts for the figure.
func (f eventFigure) matches(name string, m *dto.Metric) bool {
	if name != f.metric {
		return false
	}
	if f.label == "" {
		return true
	}
	for _, l := range m.GetLabel() {
		if l.GetName() == f.label {
			return l.GetValue() == f.value
		}
	}
	return false
}

// figureWindow is how far back the p99 of an event figure looks, at least.
const figureWindow = 30 * time.Second

// figures computes the event figures from a registry's histograms over a
// recent window: the cumulative buckets now minus those of a snapshot
// taken at least figureWindow earlier (at most three windows earlier).
type figures struct {
	gatherer prometheus.Gatherer
	mu       sync.Mutex
	snaps    []figureSnapshot // oldest first
}

type figureSnapshot struct {
	at     time.Time
	series map[string][]bucket // per figure attribute and series
}

type bucket struct {
	upper float64
	count uint64 // cumulative
}

// observe takes a snapshot every figureWindow; the runner calls it after
// each round.
func (f *figures) observe(v probes.View) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.snaps); n > 0 && v.At.Sub(f.snaps[n-1].at) < figureWindow {
		return
	}
	f.snaps = append(f.snaps, f.snapshot(v.At))
	if len(f.snaps) > 3 {
		f.snaps = f.snaps[1:]
	}
}

// values returns the p99 of each figure over the window, and how long the
// window is; a figure with no observation in it is left out.
func (f *figures) values() map[string]float64 {
	now := f.snapshot(time.Now())
	f.mu.Lock()
	var base *figureSnapshot
	if len(f.snaps) > 0 {
		base = &f.snaps[0]
	}
	f.mu.Unlock()
	out := map[string]float64{}
	for _, fig := range eventFigures {
		worst := math.NaN()
		for key, cur := range now.series {
			attr, _, _ := strings.Cut(key, "\x00")
			if attr != fig.attr {
				continue
			}
			var prev []bucket
			if base != nil {
				prev = base.series[key]
			}
			if q := quantile(0.99, delta(cur, prev)); !math.IsNaN(q) && (math.IsNaN(worst) || q > worst) {
				worst = q
			}
		}
		if !math.IsNaN(worst) {
			out[fig.attr] = worst
		}
	}
	if len(out) > 0 && base != nil {
		out["etcdpulse.figures.window_seconds"] = now.at.Sub(base.at).Seconds()
	}
	return out
}

func (f *figures) snapshot(at time.Time) figureSnapshot {
	s := figureSnapshot{at: at, series: map[string][]bucket{}}
	mfs, _ := f.gatherer.Gather() // a failing collector leaves the others
	for _, mf := range mfs {
		name := mf.GetName()
		if mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, fig := range eventFigures {
			for _, m := range mf.GetMetric() {
				if !fig.matches(name, m) {
					continue
				}
				key := fig.attr + "\x00" + name + "\x00" + m.String()
				var bs []bucket
				for _, b := range m.GetHistogram().GetBucket() {
					bs = append(bs, bucket{b.GetUpperBound(), b.GetCumulativeCount()})
				}
				bs = append(bs, bucket{math.Inf(1), m.GetHistogram().GetSampleCount()})
				s.series[key] = bs
			}
		}
	}
	return s
}

// delta is cur minus prev, bucket by bucket; prev may be absent.
func delta(cur, prev []bucket) []bucket {
	if len(prev) != len(cur) {
		return cur
	}
	out := make([]bucket, len(cur))
	for i := range cur {
		out[i] = bucket{cur[i].upper, cur[i].count - min(prev[i].count, cur[i].count)}
	}
	return out
}

// quantile is Prometheus' histogram_quantile on cumulative buckets sorted
// by upper bound, the last one +Inf: linear interpolation inside the
// bucket, the highest finite bound when the quantile falls in +Inf. NaN
// without observations.
func quantile(q float64, bs []bucket) float64 {
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return math.NaN()
	}
	rank := q * float64(bs[len(bs)-1].count)
	for i, b := range bs {
		if float64(b.count) < rank {
			continue
		}
		if math.IsInf(b.upper, 1) {
			if i == 0 {
				return math.NaN()
			}
			return bs[i-1].upper
		}
		lower, below := 0.0, uint64(0)
		if i > 0 {
			lower, below = bs[i-1].upper, bs[i-1].count
		}
		if b.count == below {
			return b.upper
		}
		return lower + (b.upper-lower)*(rank-float64(below))/float64(b.count-below)
	}
	return bs[len(bs)-1].upper
}

// figureHooks returns the runner's hooks for the figures of change events,
// read from reg; nil ones when tp records nothing, so that an agent
// without tracing never gathers its registry outside scrapes.
func figureHooks(tp trace.TracerProvider, reg prometheus.Gatherer) (values func() map[string]float64, onView func(probes.View)) {
	if !tracing(tp) {
		return nil, nil
	}
	f := &figures{gatherer: reg}
	return f.values, f.observe
}
