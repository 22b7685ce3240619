package agent

import (
	"context"
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// capability is one thing the agent watches, declared in one file: its
// configuration section (defaults, settings rows, validation with exact
// messages), the probes it runs with their scope and schedule, the metrics
// it exports and its collectors. docs/architecture.md says how to add one.
type capability struct {
	// name labels etcdpulse_capability_success; title heads its section
	// of the metrics reference.
	name, title string
	// settings are its rows of the configuration table.
	settings []Setting
	// metrics are the catalogue rows of what it exports.
	metrics []collectors.Metric
	// defaults sets its defaults in a new configuration; nil: none.
	defaults func(*Config)
	// validate reports its settings' problems; nil: nothing to check.
	validate func(*Config, badFunc)
	// wire adds its probes and collectors to a new agent.
	wire func(*wiring) error
}

// capabilities is the agent's one list of capabilities, in the order of
// the documentation. The catalogue, the configuration table (and so the
// command's flags) and the metrics reference are made from it.
var capabilities = []capability{
	membership,
	leadership,
	capacity,
	reads,
	writes,
	replication,
	consistency,
	disk,
	network,
	host,
	etcdMetrics,
	drift,
	certificates,
	backups,
	keyspace,
}

// wiring is what a capability needs to add its probes and collectors to a
// new agent.
type wiring struct {
	cfg Config
	// tls is the client TLS for etcd, nil for plain connections.
	tls     *tls.Config
	logger  *slog.Logger
	state   *probes.State
	targets *probes.Targets
	// view is the agent's runner, from the end of New on: collectors read
	// it at scrape time.
	view *runnerRef
	// etcdMetrics is the reader of the local member's own metrics once
	// the etcd metrics capability is wired, when etcd.metrics_url is set.
	etcdMetrics *etcdMetricsRef
	// capacity tells each member's quota, once the capacity capability
	// is wired.
	capacity *collectors.CapacityCollector
	// etcdProcess finds the local etcd process, once the host capability
	// is wired, when it looks for one.
	etcdProcess *collectors.EtcdProcessCollector
	// peerConnect is the slowest last TCP connect to a peer's port (a
	// round trip), once the network capability is wired, when it runs.
	peerConnect func() (seconds float64, ok bool)
	// local, when the agent is attached to an embedded member, answers
	// for it in process; nil beside an etcd process.
	local probes.LocalStatus

	// What the capability being wired adds.
	probes     []probes.Scheduled
	collectors []prometheus.Collector
	figures    map[string]func() (float64, bool)
	// stops run when the agent stops, after the last probe run: what a
	// capability must undo in etcd (the write probe's lease).
	stops []func(context.Context) error
	// committed learn each write the write probe commits (key, revision,
	// time of the answer); capabilities wired after writes add theirs.
	committed []func(key string, rev int64, at time.Time)
	// checks are the capabilities' lines of a check report.
	checks []checkFunc
	// views learn each new cluster view, after each probe round.
	views []func(probes.View)
	// fsync is the disk capability's fsync probe once it is wired (nil
	// when off): evidence for the leadership capability, read after
	// wiring, as etcdProcess is.
	fsync *probes.FsyncProbe
	// tracer starts spans of the capabilities' own (the leader change
	// they explain), beside the runner's.
	tracer trace.Tracer
}

// onView registers f to learn each new cluster view, outside any lock. f
// must return quickly: the next round's evaluation does not wait for it,
// but the round's own span does.
func (w *wiring) onView(f func(probes.View)) {
	w.views = append(w.views, f)
}

// afterWrite registers f to learn each committed probe write.
func (w *wiring) afterWrite(f func(key string, rev int64, at time.Time)) {
	w.committed = append(w.committed, f)
}

// wroteAt tells every registered capability of a committed probe write.
func (w *wiring) wroteAt(key string, rev int64, at time.Time) {
	for _, f := range w.committed {
		f(key, rev, at)
	}
}

// onStop registers what to undo when the agent stops.
func (w *wiring) onStop(f func(context.Context) error) {
	w.stops = append(w.stops, f)
}

// probe schedules a probe.
func (w *wiring) probe(p probes.Probe, scope probes.Scope, interval, timeout time.Duration) {
	w.probes = append(w.probes, probes.Scheduled{Probe: p, Scope: scope, Schedule: probes.Schedule{Interval: interval, Timeout: timeout}})
}

// collect registers the capability's collectors.
func (w *wiring) collect(cs ...prometheus.Collector) {
	w.collectors = append(w.collectors, cs...)
}

// figure names a measurement that explains leader and quorum changes: it is
// attached to those events in the trace, as measured in the capability's
// last run (ok false leaves it out).
func (w *wiring) figure(name string, f func() (float64, bool)) {
	w.figures[name] = f
}

// runnerRef is the runner, set once New has built it.
type runnerRef struct{ *probes.Runner }
