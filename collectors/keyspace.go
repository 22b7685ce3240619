package collectors

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdpulse/etcdpulse/probes"
)

// The key space capability's rows.
var (
	KeyspaceResourceKeys = Metric{"etcdpulse_keyspace_resource_keys", Gauge,
		"Keys of each Kubernetes resource in the local member's store, under keyspace.prefix (/registry/<resource>/, /registry/<group>/<resource>/, services/specs and services/endpoints), in the last complete walk: the keyspace.top_resources largest by name, the others summed under resource=\"other\". Counted with count-only requests: no value is read. Absent before the first complete walk.", []string{"resource"}}
	KeyspaceNamespaceKeys = Metric{"etcdpulse_keyspace_namespace_keys", Gauge,
		"Keys of each of the keyspace.namespace_resources largest namespaced resources per namespace, in the last complete walk: the keyspace.top_namespaces largest namespaces by name, the others summed under namespace=\"_other\".", []string{"resource", "namespace"}}
	KeyspaceWalkTimestamp = Metric{"etcdpulse_keyspace_walk_timestamp_seconds", Gauge,
		"Unix time the last complete walk of the key space ended; the counts are that walk's. Absent before one.", nil}
	KeyspaceWalkRequests = Metric{"etcdpulse_keyspace_walk_requests", Gauge,
		"Requests (serializable, keys-only for one key or count-only, to the local member) the last complete walk sent, over all its runs.", nil}
	KeyspaceWalkRuns = Metric{"etcdpulse_keyspace_walk_runs", Gauge,
		"Runs the last complete walk took: more than 1 when a run spent keyspace.max_requests and the next resumed it.", nil}
	KeyspaceRuns = Metric{"etcdpulse_keyspace_runs_total", Counter,
		"Runs of the key space walk by result: complete (a walk ended), partial (keyspace.max_requests spent; the next run resumes), skipped_unhealthy (the local member unreachable or failing linearizable reads), skipped_slow (the local member slow to answer its status, a serializable read or one of the walk's one-key requests; the walk resumes later).", []string{"result"}}
)

// KeyspaceMetrics lists these rows in documentation order.
var KeyspaceMetrics = []Metric{KeyspaceResourceKeys, KeyspaceNamespaceKeys, KeyspaceWalkTimestamp, KeyspaceWalkRequests, KeyspaceWalkRuns, KeyspaceRuns}

// NewKeyspaceRuns returns the counter of runs by result, every result
// present from the start.
func NewKeyspaceRuns() *prometheus.CounterVec {
	return KeyspaceRuns.counterBy(probes.KeyspaceResults)
}

// KeyspaceSource gives the last complete walk.
type KeyspaceSource interface {
	Last() probes.KeyspaceWalk
}

// KeyspaceCollector exports the last complete walk: top resources and,
// for the largest, their top namespaces.
type KeyspaceCollector struct {
	src KeyspaceSource
	top int
	d   descSet
}

// NewKeyspaceCollector returns a collector of src's last walk, exporting
// the top resources by name.
func NewKeyspaceCollector(src KeyspaceSource, top int) *KeyspaceCollector {
	return &KeyspaceCollector{src: src, top: top, d: newDescSet(KeyspaceResourceKeys, KeyspaceNamespaceKeys, KeyspaceWalkTimestamp, KeyspaceWalkRequests, KeyspaceWalkRuns)}
}

// Describe implements prometheus.Collector.
func (c *KeyspaceCollector) Describe(ch chan<- *prometheus.Desc) { c.d.describe(ch) }

// Collect implements prometheus.Collector.
func (c *KeyspaceCollector) Collect(ch chan<- prometheus.Metric) {
	w := c.src.Last()
	if w.Completed.IsZero() {
		return
	}
	gauge := func(m Metric, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.d[m.Name], prometheus.GaugeValue, v, labels...)
	}
	gauge(KeyspaceWalkTimestamp, float64(w.Completed.UnixNano())/1e9)
	gauge(KeyspaceWalkRequests, float64(w.Requests))
	gauge(KeyspaceWalkRuns, float64(w.Runs))
	for _, r := range w.Top(c.top) {
		gauge(KeyspaceResourceKeys, float64(r.Keys), r.Resource)
	}
	for res, nss := range w.Namespaces {
		for _, ns := range nss {
			gauge(KeyspaceNamespaceKeys, float64(ns.Keys), res, ns.Namespace)
		}
	}
}
