package agent

import (
	"crypto/tls"
	"net/url"
	"time"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// etcdMetrics reads the local member's own /metrics in the background and
// re-exports etcd's WAL fsync, backend commit and peer round-trip
// histograms beside the agent's own measurements. kubeadm binds etcd's
// metrics to 127.0.0.1, out of Prometheus' reach; an agent beside the
// member reaches them.
var etcdMetrics = capability{
	name:  "etcd_metrics",
	title: "etcd's own view",
	settings: []Setting{
		setting("etcd.metrics_url", "The local member's own metrics URL (kubeadm: http://127.0.0.1:2381/metrics), read every 15 s; empty: not read.",
			func(c *Config) any { return &c.Etcd.MetricsURL }),
	},
	metrics: collectors.EtcdViewMetrics,
	validate: func(c *Config, bad badFunc) {
		if raw := c.Etcd.MetricsURL; raw != "" && !httpURL(raw) {
			bad("etcd.metrics_url", "%q is not an http(s) URL, such as %q", raw, "http://127.0.0.1:2381/metrics")
		}
	},
	wire: wireEtcdMetrics,
}

// etcd's own metrics are read in the background, never at scrape time.
// They are cumulative histograms, so the interval only sets how fresh they
// are, not what they hold; a Prometheus scrape interval suffices, and the
// response (a few hundred KiB) is read four times a minute.
const (
	etcdMetricsInterval = 15 * time.Second
	etcdMetricsTimeout  = 5 * time.Second
)

func wireEtcdMetrics(w *wiring) error {
	raw := w.cfg.Etcd.MetricsURL
	if raw == "" {
		return nil
	}
	var tlsCfg *tls.Config
	if u, _ := url.Parse(raw); u.Scheme == "https" {
		tlsCfg = w.tls
	}
	e := collectors.NewEtcdMetrics(collectors.EtcdMetricsOptions{
		URL:     raw,
		TLS:     tlsCfg,
		Members: w.targets,
		Logger:  w.logger,
	})
	w.etcdMetrics.EtcdMetrics = e
	w.collect(e)
	w.probe(e, probes.LocalMember, etcdMetricsInterval, etcdMetricsTimeout)
	return nil
}

func httpURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
