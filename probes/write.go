package probes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ProbeWrite is the write probe's name.
const ProbeWrite = "write"

// WriteProbe puts one key under the agent's own prefix through the local
// member, <prefix><member>/write, attached to a lease the probe keeps
// alive: if the agent dies, etcd deletes the key when the lease expires;
// on a clean stop, Close revokes the lease and so deletes it at once. The
// value is the time of the write, never anything else.
type WriteProbe struct {
	// Prefix is the agent's key prefix, such as /etcdpulse/.
	Prefix string
	// LeaseTTL is the lease's time to live; the probe renews it after a
	// third of it.
	LeaseTTL time.Duration
	// Duration observes the time of each successful put, by member.
	Duration *prometheus.HistogramVec
	// Committed, when set, learns each committed put: its key, revision
	// and when the answer came (the watch probe follows it).
	Committed func(key string, rev int64, at time.Time)

	mu      sync.Mutex
	lease   clientv3.LeaseID
	renewed time.Time
	client  *clientv3.Client
}

// Name implements Probe.
func (p *WriteProbe) Name() string { return ProbeWrite }

// Key returns the key the probe writes for a member label.
func (p *WriteProbe) Key(member string) string { return p.Prefix + member + "/write" }

// Run implements Probe.
func (p *WriteProbe) Run(ctx context.Context, t *Target) error {
	if t.Client == nil {
		return errors.New("write: no connection to the member")
	}
	member := t.Member()
	if member.Name == "" {
		// Not named yet (the member list has not been read): ask the
		// member, so that the key carries its name from the first write.
		resp, err := t.Client.Cluster.MemberList(ctx, clientv3.WithSerializable())
		if err != nil {
			return fmt.Errorf("write: member list: %w", err)
		}
		for _, m := range resp.Members {
			if m.ID == resp.Header.MemberId {
				member.ID, member.Name = m.ID, m.Name
			}
		}
		if member.Name == "" {
			return errors.New("write: the member does not know its own name yet")
		}
	}
	label := member.Label()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.keepLease(ctx, t); err != nil {
		return p.explain(err)
	}
	key := p.Key(label)
	start := time.Now()
	resp, err := t.Client.KV.Put(ctx, key, start.UTC().Format(time.RFC3339Nano), clientv3.WithLease(p.lease))
	answered := time.Now()
	d := answered.Sub(start)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		p.lease = 0 // expired while the member was away: a new one next run
	}
	if err != nil {
		return p.explain(fmt.Errorf("write: put: %w", err))
	}
	if p.Duration != nil {
		p.Duration.WithLabelValues(label).Observe(d.Seconds())
	}
	if p.Committed != nil {
		p.Committed(key, resp.Header.Revision, answered)
	}
	return nil
}

// keepLease grants the lease, or renews it once a third of its time to
// live has passed.
func (p *WriteProbe) keepLease(ctx context.Context, t *Target) error {
	ttl := max(p.LeaseTTL, 3*time.Second)
	if p.lease != 0 && p.client == t.Client && time.Since(p.renewed) < ttl/3 {
		return nil
	}
	if p.lease != 0 && p.client == t.Client {
		_, err := t.Client.Lease.KeepAliveOnce(ctx, p.lease)
		if err == nil {
			p.renewed = time.Now()
			return nil
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("write: renewing the lease: %w", err)
		}
	}
	resp, err := t.Client.Lease.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return fmt.Errorf("write: granting the lease: %w", err)
	}
	p.lease, p.client, p.renewed = resp.ID, t.Client, time.Now()
	return nil
}

// explain names the prefix and the permission a refused write needs.
func (p *WriteProbe) explain(err error) error {
	if errors.Is(err, rpctypes.ErrPermissionDenied) {
		return fmt.Errorf("%w: the agent's role needs readwrite permission on its key prefix %s (etcdctl role grant-permission <role> --prefix=true readwrite %s; see docs/security.md), or set etcd.read_only", err, p.Prefix, p.Prefix)
	}
	return err
}

// Close revokes the lease, which deletes the probe's key: nothing the
// agent wrote outlives a clean stop.
func (p *WriteProbe) Close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lease == 0 || p.client == nil {
		return nil
	}
	_, err := p.client.Lease.Revoke(ctx, p.lease)
	p.lease = 0
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("revoking the write probe's lease (its key goes when the lease expires): %w", err)
	}
	return nil
}
