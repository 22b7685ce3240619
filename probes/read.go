package probes

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ReadProbe reads one key under the agent's prefix from a member, either
// linearizably (through the leader and a quorum: the member is healthy) or
// serializably (from the member's own store: the member is alive). The key
// need not exist and its value is never looked at.
type ReadProbe struct {
	Key          string
	Serializable bool
}

// Name implements Probe.
func (p *ReadProbe) Name() string {
	if p.Serializable {
		return ProbeReadSerializable
	}
	return ProbeReadLinearizable
}

// Run implements Probe.
func (p *ReadProbe) Run(ctx context.Context, t *Target) error {
	opts := []clientv3.OpOption{clientv3.WithCountOnly()}
	if p.Serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	_, err := t.Client.KV.Get(ctx, p.Key, opts...)
	if err == nil {
		return nil
	}
	// Like etcdctl endpoint health: a member that refuses for lack of
	// permission has answered, and etcd checks permissions only after the
	// read index is agreed, so it is healthy. The refusal is reported
	// beside that.
	if errors.Is(err, rpctypes.ErrPermissionDenied) {
		return &Refusal{Err: fmt.Errorf("reading %s: %w (the agent's role needs read permission on its key prefix)", p.Key, err)}
	}
	return fmt.Errorf("%s read: %w", map[bool]string{true: "serializable", false: "linearizable"}[p.Serializable], err)
}
