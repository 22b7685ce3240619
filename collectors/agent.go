package collectors

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// The agent's own rows: its build, the load it puts on etcd, how its probe
// runs go and how each capability fares.
var (
	BuildInfo = Metric{"etcdpulse_build_info", Gauge,
		"A metric with a constant '1' value labeled by version, revision, branch, goversion from which etcdpulse was built, and the goos and goarch for the build.",
		[]string{"branch", "goarch", "goos", "goversion", "revision", "tags", "version"}}
	Requests = Metric{"etcdpulse_etcd_requests_total", Counter,
		"gRPC requests the agent sent to etcd, by member and method: the agent's own load on etcd.",
		[]string{"member", "method"}}
	ProbeDuration = Metric{"etcdpulse_probe_duration_seconds", Histogram,
		"Duration of probe runs, failed ones included.", []string{"probe"}}
	ProbeFailures = Metric{"etcdpulse_probe_failures_total", Counter,
		"Failed probe runs, by probe, member and reason: unreachable (refused, reset, DNS), timeout, tls_certificate_expired, tls_unknown_authority, tls_name_mismatch, tls_bad_certificate, tls, authentication, permission_denied, wrong_member (another member answers at the member's advertised client URL), etcd_error (no leader, NOSPACE, ...), other.",
		[]string{"probe", "member", "reason"}}
	CapabilitySuccess = Metric{"etcdpulse_capability_success", Gauge,
		"1 when the capability's collectors read everything they export at the last scrape, 0 when something could not be read (a directory not mounted, the etcd process not found, etcd's metrics URL not answering, the fsync probe refusing); the agent's log says what. Not about etcd's health: a member that is down is measured, and that is a success.",
		[]string{"capability"}}
	CapabilityDuration = Metric{"etcdpulse_capability_duration_seconds", Gauge,
		"Time the capability's collectors took at the last scrape.", []string{"capability"}}
)

// AgentMetrics lists these rows in documentation order.
var AgentMetrics = []Metric{BuildInfo, Requests, ProbeDuration, ProbeFailures, CapabilitySuccess, CapabilityDuration}

// NewProbeDuration returns the histogram of probe run durations, which the
// runner observes: 100 µs … 3.3 s.
func NewProbeDuration() *prometheus.HistogramVec {
	return NewHistogramVec(ProbeDuration, prometheus.ExponentialBuckets(0.0001, 2, 16))
}

// NewProbeFailures returns the counter of failed runs, which the runner
// increments.
func NewProbeFailures() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: ProbeFailures.Name, Help: ProbeFailures.Help}, ProbeFailures.Labels)
}

// TargetSource lists the members the agent sends requests to;
// *probes.Targets is one.
type TargetSource interface {
	All() []*probes.Target
}

// RequestsCollector exports the requests the agent sent each member, by
// gRPC method. The counts are kept per connection and labelled at scrape
// time: the member's name is not known yet when the first requests go out.
type RequestsCollector struct {
	src  TargetSource
	desc *prometheus.Desc
}

// NewRequestsCollector returns a collector over src's connections.
func NewRequestsCollector(src TargetSource) *RequestsCollector {
	return &RequestsCollector{src: src, desc: Requests.Desc()}
}

// Describe implements prometheus.Collector.
func (c *RequestsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *RequestsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.src.All() {
		if t.Client == nil {
			continue // listed, but with no client URL to send to yet
		}
		for method, n := range t.Requests() {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), t.Label(), method)
		}
	}
}

// Failing is a collector that says whether its last Collect could read
// everything it exports.
type Failing interface {
	// Err is the problem of the last Collect, nil when there was none.
	Err() error
}

// CapabilityCollectors are the collectors of one capability of the agent.
type CapabilityCollectors struct {
	Name       string
	Collectors []prometheus.Collector
}

// CapabilitiesCollector collects each capability's collectors and reports
// on each (etcdpulse_capability_success and _duration), as node_exporter
// does for its collectors: a capability that cannot read what it exports
// shows in the metrics, not only in the log.
type CapabilitiesCollector struct {
	caps             []CapabilityCollectors
	success, elapsed *prometheus.Desc
}

// NewCapabilitiesCollector returns the collector of caps; capabilities
// without collectors are left out.
func NewCapabilitiesCollector(caps []CapabilityCollectors) *CapabilitiesCollector {
	c := &CapabilitiesCollector{success: CapabilitySuccess.Desc(), elapsed: CapabilityDuration.Desc()}
	for _, cp := range caps {
		if len(cp.Collectors) > 0 {
			c.caps = append(c.caps, cp)
		}
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *CapabilitiesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.success
	ch <- c.elapsed
	for _, cp := range c.caps {
		for _, col := range cp.Collectors {
			col.Describe(ch)
		}
	}
}

// Collect implements prometheus.Collector.
func (c *CapabilitiesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, cp := range c.caps {
		start := time.Now()
		var errs []error
		for _, col := range cp.Collectors {
			col.Collect(ch)
			if f, ok := col.(Failing); ok {
				errs = append(errs, f.Err())
			}
		}
		ch <- prometheus.MustNewConstMetric(c.elapsed, prometheus.GaugeValue, time.Since(start).Seconds(), cp.Name)
		ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, b2f(errors.Join(errs...) == nil), cp.Name)
	}
}
