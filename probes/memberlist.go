package probes

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// MemberListProbe reads the member list from one member and makes it the
// set of targets. It reads serializably: a member that has lost quorum
// still knows who the voters are, and that is exactly when the count
// matters.
type MemberListProbe struct {
	Targets *Targets
}

// Name implements Probe.
func (p *MemberListProbe) Name() string { return ProbeMemberList }

// Run implements Probe.
func (p *MemberListProbe) Run(ctx context.Context, t *Target) error {
	resp, err := t.Client.Cluster.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return fmt.Errorf("member list: %w", err)
	}
	if resp.Header != nil && resp.Header.MemberId != 0 {
		p.Targets.Identify(t, resp.Header.MemberId)
	}
	members := make([]Member, 0, len(resp.Members))
	for _, m := range resp.Members {
		members = append(members, Member{
			ID:         m.ID,
			Name:       m.Name,
			ClientURLs: m.ClientURLs,
			PeerURLs:   m.PeerURLs,
			IsLearner:  m.IsLearner,
		})
	}
	if len(members) == 0 {
		return fmt.Errorf("member list: empty answer")
	}
	p.Targets.Update(members)
	return nil
}
