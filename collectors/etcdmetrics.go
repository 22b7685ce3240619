package collectors

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/etcdpulse/etcdpulse/probes"
)

// What EtcdMetrics re-exports from the local member's own /metrics.
var (
	EtcdWALFsync = Metric{"etcdpulse_etcd_wal_fsync_duration_seconds", Histogram,
		"etcd's own etcd_disk_wal_fsync_duration_seconds, read from the local member's metrics URL (etcd.metrics_url) with etcd's buckets.", nil}
	EtcdBackendCommit = Metric{"etcdpulse_etcd_backend_commit_duration_seconds", Histogram,
		"etcd's own etcd_disk_backend_commit_duration_seconds, read from the local member's metrics URL.", nil}
	EtcdPeerRTT = Metric{"etcdpulse_etcd_peer_round_trip_time_seconds", Histogram,
		"etcd's own etcd_network_peer_round_trip_time_seconds from the local member to each peer (its To label mapped to the member label), read from the local member's metrics URL.", []string{"peer"}}
	EtcdMetricsUp = Metric{"etcdpulse_etcd_metrics_up", Gauge,
		"1 when the last read of the local member's metrics URL succeeded, else 0; absent when etcd.metrics_url is not set.", nil}
)

// EtcdViewMetrics lists these rows in documentation order.
var EtcdViewMetrics = []Metric{EtcdWALFsync, EtcdBackendCommit, EtcdPeerRTT, EtcdMetricsUp}

// ProbeEtcdMetrics is the name under which the runner reads etcd's own
// metrics.
const ProbeEtcdMetrics = "etcd_metrics"

// The families kept from etcd's /metrics.
const (
	etcdWALFsync      = "etcd_disk_wal_fsync_duration_seconds"
	etcdBackendCommit = "etcd_disk_backend_commit_duration_seconds"
	etcdPeerRTT       = "etcd_network_peer_round_trip_time_seconds"
	// etcdQuota is the backend quota the member enforces, etcd's default
	// when --quota-backend-bytes is 0, negative when the quota is off.
	// etcd 3.4 and later export it (etcd 3.4.23 does, checked against
	// Debian's binary).
	etcdQuota = "etcd_server_quota_backend_bytes"
)

// maxEtcdMetricsBytes bounds what is read of etcd's /metrics (usually a
// few hundred KiB).
const maxEtcdMetricsBytes = 32 << 20

// MemberLister gives the member list, to name peers; probes.Targets is one.
type MemberLister interface {
	Members() []probes.Member
}

// EtcdMetricsOptions configures EtcdMetrics.
type EtcdMetricsOptions struct {
	// URL is the local member's metrics URL, such as kubeadm's
	// http://127.0.0.1:2381/metrics.
	URL string
	// TLS is used for an https URL; nil means Go's defaults.
	TLS *tls.Config
	// Members names peers by their member label; nil keeps hex IDs.
	Members MemberLister
	Logger  *slog.Logger
}

// EtcdMetrics reads the local member's own /metrics in the background (as
// a probe the runner schedules, never at scrape time) and re-exports its
// WAL fsync, backend commit and peer round-trip histograms beside the
// agent's own measurements. kubeadm binds etcd's metrics to 127.0.0.1, out
// of Prometheus' reach; an agent beside the member reaches them.
type EtcdMetrics struct {
	opts   EtcdMetricsOptions
	client *http.Client
	descs  descSet

	mu      sync.Mutex
	tried   bool
	ok      bool
	lastErr error
	last    EtcdView // the last successful read
}

// EtcdView is what the local member's own metrics said at one read.
type EtcdView struct {
	At            time.Time
	WALFsync      *HistogramData // nil when etcd did not export it
	BackendCommit *HistogramData
	// PeerRTT is keyed by etcd's To label: the peer's hex member ID.
	PeerRTT map[string]*HistogramData
	// QuotaBackendBytes is etcd_server_quota_backend_bytes, the backend
	// quota the member enforces (negative: none); nil when not exported.
	QuotaBackendBytes *int64
}

// HistogramData is a cumulative histogram.
type HistogramData struct {
	Count uint64
	Sum   float64
	// Buckets maps upper bounds (without +Inf) to cumulative counts.
	Buckets map[float64]uint64
}

// NewEtcdMetrics returns a reader of opts.URL; nothing is read until Run.
func NewEtcdMetrics(opts EtcdMetricsOptions) *EtcdMetrics {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{MaxIdleConns: 1, IdleConnTimeout: time.Minute}
	if opts.TLS != nil {
		tr.TLSClientConfig = opts.TLS.Clone()
	}
	e := &EtcdMetrics{opts: opts, client: &http.Client{Transport: tr}, descs: newDescSet(EtcdWALFsync, EtcdBackendCommit, EtcdPeerRTT, EtcdMetricsUp)}
	return e
}

// Name implements probes.Probe.
func (e *EtcdMetrics) Name() string { return ProbeEtcdMetrics }

// Run implements probes.Probe: one read of the metrics URL. The target is
// not used: the URL is the local member's.
func (e *EtcdMetrics) Run(ctx context.Context, _ *probes.Target) error {
	v, err := e.read(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		if !e.tried || e.ok {
			e.opts.Logger.Warn("cannot read etcd's own metrics; etcdpulse_etcd_* histograms are absent until it can", "url", e.opts.URL, "err", err)
		}
		e.tried, e.ok, e.lastErr = true, false, fmt.Errorf("etcd metrics: %w", err)
		return e.lastErr
	}
	if e.tried && !e.ok {
		e.opts.Logger.Info("reading etcd's own metrics again", "url", e.opts.URL)
	}
	e.tried, e.ok, e.last = true, true, v
	return nil
}

func (e *EtcdMetrics) read(ctx context.Context) (EtcdView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.opts.URL, nil)
	if err != nil {
		return EtcdView{}, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := e.client.Do(req)
	if err != nil {
		return EtcdView{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return EtcdView{}, fmt.Errorf("GET %s: %s", e.opts.URL, resp.Status)
	}
	v, err := ParseEtcdMetrics(io.LimitReader(resp.Body, maxEtcdMetricsBytes))
	if err != nil {
		return EtcdView{}, fmt.Errorf("GET %s: %w", e.opts.URL, err)
	}
	v.At = time.Now()
	return v, nil
}

// ParseEtcdMetrics reads the families etcdpulse keeps from etcd's
// /metrics in the text format.
func ParseEtcdMetrics(r io.Reader) (EtcdView, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return EtcdView{}, fmt.Errorf("parsing metrics: %w", err)
	}
	v := EtcdView{PeerRTT: map[string]*HistogramData{}}
	one := func(name string) *HistogramData {
		if mf, ok := mfs[name]; ok && mf.GetType() == dto.MetricType_HISTOGRAM && len(mf.Metric) > 0 {
			return histogramData(mf.Metric[0].GetHistogram())
		}
		return nil
	}
	v.WALFsync, v.BackendCommit = one(etcdWALFsync), one(etcdBackendCommit)
	if mf, ok := mfs[etcdQuota]; ok && mf.GetType() == dto.MetricType_GAUGE && len(mf.Metric) > 0 {
		q := int64(mf.Metric[0].GetGauge().GetValue())
		v.QuotaBackendBytes = &q
	}
	if mf, ok := mfs[etcdPeerRTT]; ok && mf.GetType() == dto.MetricType_HISTOGRAM {
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "To" {
					v.PeerRTT[l.GetValue()] = histogramData(m.GetHistogram())
				}
			}
		}
	}
	return v, nil
}

func histogramData(h *dto.Histogram) *HistogramData {
	d := &HistogramData{Count: h.GetSampleCount(), Sum: h.GetSampleSum(), Buckets: map[float64]uint64{}}
	for _, b := range h.Bucket {
		if !math.IsInf(b.GetUpperBound(), +1) {
			d.Buckets[b.GetUpperBound()] = b.GetCumulativeCount()
		}
	}
	return d
}

// Latest returns the last successful read, with its time, and whether the
// last attempt succeeded.
func (e *EtcdMetrics) Latest() (EtcdView, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last, e.ok
}

// QuotaBackendBytes returns the backend quota the local member reported
// in its last successful read (etcd_server_quota_backend_bytes: the quota
// it enforces, etcd's default included; negative when it has none), and
// whether one was read. A later failed read does not hide it: the quota
// changes only with a restart of etcd, and a quota that came and went
// with each read would flip the source of the capacity figures.
func (e *EtcdMetrics) QuotaBackendBytes() (int64, bool) {
	if e == nil {
		return 0, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if q := e.last.QuotaBackendBytes; q != nil {
		return *q, true
	}
	return 0, false
}

// PeerLabel names etcd's To label (a hex member ID) the way the agent
// labels members: by name when the member list has one.
func (e *EtcdMetrics) PeerLabel(to string) string {
	if e.opts.Members == nil {
		return to
	}
	id, err := strconv.ParseUint(to, 16, 64)
	if err != nil {
		return to
	}
	for _, m := range e.opts.Members.Members() {
		if m.ID == id {
			return m.Label()
		}
	}
	return to
}

// Describe implements prometheus.Collector.
func (e *EtcdMetrics) Describe(ch chan<- *prometheus.Desc) {
	e.descs.describe(ch)
}

// Collect implements prometheus.Collector. Before the first read nothing is
// exported; after a failed read only etcdpulse_etcd_metrics_up (0): stale
// histograms would hide that etcd's view is missing.
func (e *EtcdMetrics) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	tried, ok, v := e.tried, e.ok, e.last
	e.mu.Unlock()
	if !tried {
		return
	}
	ch <- prometheus.MustNewConstMetric(e.descs[EtcdMetricsUp.Name], prometheus.GaugeValue, b2f(ok))
	if !ok {
		return
	}
	hist := func(m Metric, h *HistogramData, labels ...string) {
		if h != nil {
			ch <- prometheus.MustNewConstHistogram(e.descs[m.Name], h.Count, h.Sum, h.Buckets, labels...)
		}
	}
	hist(EtcdWALFsync, v.WALFsync)
	hist(EtcdBackendCommit, v.BackendCommit)
	seen := map[string]bool{}
	for to, h := range v.PeerRTT {
		peer := e.PeerLabel(to)
		if seen[peer] { // two IDs with one name cannot be told apart: keep the ID
			peer = to
		}
		seen[peer] = true
		hist(EtcdPeerRTT, h, peer)
	}
}

// Err implements Failing: the last read of etcd's metrics URL failed.
func (e *EtcdMetrics) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tried && !e.ok {
		return e.lastErr
	}
	return nil
}
