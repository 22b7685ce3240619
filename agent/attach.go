package agent

import (
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/features"
	"go.etcd.io/etcd/server/v3/storage"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// Attach builds an agent for a member that this program embeds. The
// member's client URL, data and WAL directories and client TLS come from
// its configuration (what opts sets wins), and the member's own status —
// its ID, leader, term and raft indexes — is read from the server in
// process: exact, and without a round trip. The other members are probed
// over the client API, as beside an etcd process. With etcd.metrics_url
// empty, etcd's own histograms are read from the member's first metrics
// URL, else from its client URL. Start the agent once e is ready
// (<-e.Server.ReadyNotify()).
func Attach(e *embed.Etcd, opts Options) (*Agent, error) {
	cfg := e.Config()
	if opts.Endpoints == nil {
		for _, us := range [][]url.URL{cfg.AdvertiseClientUrls, cfg.ListenClientUrls} {
			if len(us) > 0 {
				opts.Endpoints = []string{us[0].String()}
				break
			}
		}
	}
	if opts.DataDir == "" {
		opts.DataDir = cfg.Dir
	}
	if opts.WALDir == "" {
		opts.WALDir = cfg.WalDir
	}
	if opts.TLS == nil && !cfg.ClientTLSInfo.Empty() {
		// The member's own certificate, as a client: with client
		// certificate authentication on, it must carry the client usage.
		t, err := cfg.ClientTLSInfo.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("the embedded member's client TLS: %w", err)
		}
		opts.TLS = t
	}
	if opts.Config == nil || opts.Config.Etcd.MetricsURL == "" {
		c := DefaultConfig()
		if opts.Config != nil {
			c = *opts.Config
		}
		// etcd's own histograms, where the member serves them.
		if len(cfg.ListenMetricsUrls) > 0 {
			c.Etcd.MetricsURL = cfg.ListenMetricsUrls[0].JoinPath("metrics").String()
		} else if len(opts.Endpoints) > 0 {
			c.Etcd.MetricsURL = opts.Endpoints[0] + "/metrics"
		}
		opts.Config = &c
	}
	return build(opts, embedded{e: e, quota: cfg.QuotaBackendBytes})
}

// EtcdFlags implements etcdFlagsReader: the embedded member's raft timing
// and corruption checks, from its configuration.
func (m embedded) EtcdFlags() collectors.EtcdFlags {
	cfg := m.e.Config()
	f := collectors.EtcdFlags{
		Heartbeat:        time.Duration(cfg.TickMs) * time.Millisecond,
		Election:         time.Duration(cfg.ElectionMs) * time.Millisecond,
		CorruptCheckTime: cfg.CorruptCheckTime,
	}
	if g := cfg.ServerFeatureGate; g != nil {
		f.InitialCorruptCheck = g.Enabled(features.InitialCorruptCheck)
		f.CompactHashCheck = g.Enabled(features.CompactHashCheck)
	}
	return f
}

// embeddedServer is what the agent reads of an embedded member's server;
// *etcdserver.EtcdServer is one.
type embeddedServer interface {
	MemberID() types.ID
	Leader() types.ID
	Term() uint64
	CommittedIndex() uint64
	AppliedIndex() uint64
	IsLearner() bool
	Alarms() []*pb.AlarmMember
	StopNotify() <-chan struct{}
}

// embedded answers status for an attached member in process.
type embedded struct {
	e     *embed.Etcd
	quota int64
}

// errStopped: the server the agent was attached to has stopped; a member
// started again on the same URLs is reached over its client API.
var errStopped = fmt.Errorf("the embedded member's server has stopped: %w", probes.ErrNotInProcess)

// Status implements probes.LocalStatus with what etcd's own Status call
// answers (v3rpc's maintenance server), read from the server itself.
func (m embedded) Status() (*probes.Status, error) {
	var srv embeddedServer = m.e.Server
	select {
	case <-srv.StopNotify():
		return nil, errStopped
	default:
	}
	be := m.e.Server.Backend()
	if be == nil {
		return nil, errStopped
	}
	st := &probes.Status{
		MemberID:     uint64(srv.MemberID()),
		Leader:       uint64(srv.Leader()),
		Term:         srv.Term(),
		RaftIndex:    srv.CommittedIndex(),
		AppliedIndex: srv.AppliedIndex(),
		DBSize:       be.Size(),
		DBSizeInUse:  be.SizeInUse(),
		DBQuota:      m.quota,
		Version:      version.Version,
		IsLearner:    srv.IsLearner(),
		ClusterID:    uint64(m.e.Server.Cluster().ID()),
	}
	if d := m.e.Server.DowngradeInfo(); d != nil {
		st.Downgrade = &probes.Downgrade{Enabled: d.Enabled, TargetVersion: d.TargetVersion}
	}
	if st.DBQuota == 0 {
		st.DBQuota = storage.DefaultQuotaBytes
	}
	for _, a := range srv.Alarms() {
		st.Alarms = append(st.Alarms, probes.Alarm{MemberID: a.MemberID, Type: a.Alarm.String()})
	}
	return st, nil
}
