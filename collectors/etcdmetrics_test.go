package collectors

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
	"github.com/etcdpulse/etcdpulse/probes"
)

// etcdMetricsText is an excerpt of etcd's /metrics.
const etcdMetricsText = `# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 10
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.002"} 15
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 16
etcd_disk_wal_fsync_duration_seconds_sum 0.05
etcd_disk_wal_fsync_duration_seconds_count 16
# HELP etcd_network_peer_round_trip_time_seconds Round-Trip-Time histogram between peers
# TYPE etcd_network_peer_round_trip_time_seconds histogram
etcd_network_peer_round_trip_time_seconds_bucket{To="2a",le="0.0001"} 0
etcd_network_peer_round_trip_time_seconds_bucket{To="2a",le="0.0002"} 3
etcd_network_peer_round_trip_time_seconds_bucket{To="2a",le="+Inf"} 4
etcd_network_peer_round_trip_time_seconds_sum{To="2a"} 0.0012
etcd_network_peer_round_trip_time_seconds_count{To="2a"} 4
etcd_network_peer_round_trip_time_seconds_bucket{To="ff",le="0.0001"} 1
etcd_network_peer_round_trip_time_seconds_bucket{To="ff",le="+Inf"} 1
etcd_network_peer_round_trip_time_seconds_sum{To="ff"} 0.00005
etcd_network_peer_round_trip_time_seconds_count{To="ff"} 1
# HELP etcd_server_has_leader Whether or not a leader exists. 1 is existence, 0 is not.
# TYPE etcd_server_has_leader gauge
etcd_server_has_leader 1
# HELP etcd_server_quota_backend_bytes Current backend storage quota size in bytes.
# TYPE etcd_server_quota_backend_bytes gauge
etcd_server_quota_backend_bytes 2.147483648e+09
`

type fixedMembers []probes.Member

func (f fixedMembers) Members() []probes.Member { return f }

func TestParseEtcdMetrics(t *testing.T) {
	v, err := ParseEtcdMetrics(strings.NewReader(etcdMetricsText))
	if err != nil {
		t.Fatal(err)
	}
	if v.WALFsync == nil || v.WALFsync.Count != 16 || v.WALFsync.Sum != 0.05 || len(v.WALFsync.Buckets) != 2 || v.WALFsync.Buckets[0.002] != 15 {
		t.Errorf("WAL fsync = %+v", v.WALFsync)
	}
	if v.BackendCommit != nil {
		t.Errorf("backend commit = %+v, want nil: not in the input", v.BackendCommit)
	}
	if len(v.PeerRTT) != 2 || v.PeerRTT["2a"].Count != 4 {
		t.Errorf("peer RTT = %+v", v.PeerRTT)
	}
	if q := v.QuotaBackendBytes; q == nil || *q != 2<<30 {
		t.Errorf("quota = %v, want 2 GiB", q)
	}
	if v, _ := ParseEtcdMetrics(strings.NewReader("")); v.QuotaBackendBytes != nil {
		t.Errorf("quota %d read from nothing", *v.QuotaBackendBytes)
	}
	if _, err := ParseEtcdMetrics(strings.NewReader("not metrics {")); err == nil {
		t.Error("garbage parsed")
	}
}

// Peers are named like the agent's members: by name when the member list
// has one, else by hex ID.
func TestEtcdMetricsPeerLabel(t *testing.T) {
	e := NewEtcdMetrics(EtcdMetricsOptions{Members: fixedMembers{{ID: 0x2a, Name: "m1"}, {ID: 0x7}}})
	for to, want := range map[string]string{"2a": "m1", "7": "7", "ff": "ff", "zz": "zz"} {
		if got := e.PeerLabel(to); got != want {
			t.Errorf("PeerLabel(%q) = %q, want %q", to, got, want)
		}
	}
}

// Against a real member: its /metrics (served on the client URL, as on
// kubeadm's 127.0.0.1:2381) is read by Run, never by a scrape, and
// re-exported; an unreachable URL leaves only up = 0.
func TestEtcdMetricsRealMember(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts etcdtest.Options
	}{
		{"http", etcdtest.Options{Mode: etcdtest.InProcess}},
		{"https", etcdtest.Options{Mode: etcdtest.InProcess, TLS: etcdtest.NewTLS(t)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := etcdtest.Start(t, tc.opts)
			m := c.Member(0)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.Client(t).Put(ctx, "/etcdpulse/test", "x"); err != nil {
				t.Fatal(err)
			}
			e := NewEtcdMetrics(EtcdMetricsOptions{URL: m.ClientURL() + "/metrics", TLS: c.ClientTLSConfig()})
			if n := testutil.CollectAndCount(e); n != 0 {
				t.Errorf("%d series before the first read, want none", n)
			}
			// The backend commits in batches (every 100 ms): wait for one.
			var mfs map[string]*dto.MetricFamily
			testenv.Eventually(t, 10*time.Second, "a backend commit in etcd's metrics", func() error {
				if err := e.Run(ctx, nil); err != nil {
					t.Fatal(err)
				}
				if mfs = families(t, e); mfs[EtcdBackendCommit.Name] == nil {
					return errors.New(EtcdBackendCommit.Name + " absent")
				}
				return nil
			})
			compareMetrics(t, e, []Metric{EtcdMetricsUp}, EtcdMetricsUp.Name+" 1", EtcdMetricsUp.Name)
			// The quota etcd enforces, its default here, for the capacity
			// figures of a member whose status does not say.
			if q, ok := e.QuotaBackendBytes(); !ok || q != 2<<30 {
				t.Errorf("quota %d (read %v), want etcd's default, 2 GiB", q, ok)
			}
			for _, m := range []Metric{EtcdWALFsync, EtcdBackendCommit} {
				mf := mfs[m.Name]
				if mf == nil || mf.Metric[0].GetHistogram().GetSampleCount() == 0 {
					t.Errorf("%s absent or empty after a write", m.Name)
					continue
				}
				// etcd's own buckets: 0.001 … 8.192 s.
				if b := mf.Metric[0].GetHistogram().Bucket; len(b) < 14 || b[0].GetUpperBound() != 0.001 {
					t.Errorf("%s: buckets %v, want etcd's", m.Name, b)
				}
			}
			problems, err := promlint.New(bytes.NewReader(gather(t, e))).Lint()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("promlint: %s: %s", p.Metric, p.Text)
			}
		})
	}
}

func TestEtcdMetricsUnreachable(t *testing.T) {
	e := NewEtcdMetrics(EtcdMetricsOptions{URL: "http://" + testenv.RefusedAddr(t) + "/metrics"})
	err := e.Run(context.Background(), nil)
	if err == nil || !strings.HasPrefix(err.Error(), "etcd metrics: ") {
		t.Fatalf("Run = %v, want an error naming etcd metrics", err)
	}
	// Only up, at 0.
	compareMetrics(t, e, []Metric{EtcdMetricsUp}, EtcdMetricsUp.Name+" 0")
}
