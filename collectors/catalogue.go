// Package collectors turns the probes' latest results into Prometheus
// metrics at scrape time. A scrape never calls etcd.
package collectors

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Type is a metric's Prometheus type.
type Type string

// The metric types the catalogue uses.
const (
	Gauge     Type = "gauge"
	Counter   Type = "counter"
	Histogram Type = "histogram"
)

// Metric is one row of the catalogue of what etcdpulse exports. Each row
// is declared beside the code that computes it; the agent's capabilities
// list theirs, and the catalogue is their union (agent.Catalogue).
type Metric struct {
	Name   string
	Type   Type
	Help   string
	Labels []string
}

// counterBy returns the metric as a counter of one label with a series for
// each of values from the start, so that rate() sees the first increment.
func (m Metric) counterBy(values []string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: m.Name, Help: m.Help}, m.Labels)
	for _, v := range values {
		c.WithLabelValues(v)
	}
	return c
}

// Desc returns the metric's Prometheus descriptor.
func (m Metric) Desc() *prometheus.Desc {
	return prometheus.NewDesc(m.Name, m.Help, m.Labels, nil)
}

// descSet is a collector's descriptors by metric name.
type descSet map[string]*prometheus.Desc

// newDescSet returns the descriptors of rows.
func newDescSet(rows ...Metric) descSet {
	d := descSet{}
	for _, m := range rows {
		d[m.Name] = m.Desc()
	}
	return d
}

// describe sends every descriptor: a collector's Describe.
func (d descSet) describe(ch chan<- *prometheus.Desc) {
	for _, desc := range d {
		ch <- desc
	}
}

// Find returns the row of rows for a metric name; histogram series
// (_bucket, _sum, _count) resolve to their family.
func Find(rows []Metric, name string) (Metric, bool) {
	for _, m := range rows {
		if m.Name == name {
			return m, true
		}
		if m.Type == Histogram {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if strings.TrimSuffix(name, s) == m.Name && name != m.Name {
					return m, true
				}
			}
		}
	}
	return Metric{}, false
}

// NewHistogramVec returns the histogram of a catalogue row with the given
// classic buckets and, beside them, a native histogram of about 10 %
// resolution: every latency histogram of the agent is built here.
func NewHistogramVec(m Metric, buckets []float64) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                            m.Name,
		Help:                            m.Help,
		Buckets:                         buckets,
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  100,
		NativeHistogramMinResetDuration: time.Hour,
	}, m.Labels)
}
