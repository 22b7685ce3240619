package probes

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
)

// StatusProbe calls Maintenance.Status on a member: leader, term, raft
// indexes, database size and quota, version, learner flag and the alarms
// the member knows of. Status is answered locally, so it works without
// quorum.
type StatusProbe struct {
	State   *State
	Targets *Targets
	// Local, when set, answers for the local member in process (an
	// embedded etcd server): exact and without a round trip.
	Local LocalStatus
}

// LocalStatus answers what a Status call would for a member embedded in
// this process. An error that is ErrNotInProcess sends the probe to the
// member's client API instead.
type LocalStatus interface {
	Status() (*Status, error)
}

// ErrNotInProcess: the member cannot be asked in process (its server has
// stopped); ask it over its client API.
var ErrNotInProcess = errors.New("not answerable in process")

// Name implements Probe.
func (p *StatusProbe) Name() string { return ProbeStatus }

// Run implements Probe.
func (p *StatusProbe) Run(ctx context.Context, t *Target) error {
	st, err := p.status(ctx, t)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	trace.SpanFromContext(ctx).SetAttributes(statusAttributes(st)...)
	if st.MemberID != 0 && p.Targets != nil {
		p.Targets.Identify(t, st.MemberID)
	}
	p.State.SetStatus(t, st)
	return nil
}

func (p *StatusProbe) status(ctx context.Context, t *Target) (*Status, error) {
	if t.Local && p.Local != nil {
		st, err := p.Local.Status()
		if !errors.Is(err, ErrNotInProcess) {
			return st, err
		}
	}
	resp, err := t.Maintenance.Status(ctx, t.Endpoint)
	if err != nil {
		return nil, err
	}
	return statusFromResponse(resp), nil
}

func statusFromResponse(resp *clientv3.StatusResponse) *Status {
	st := &Status{
		Leader:       resp.Leader,
		Term:         resp.RaftTerm,
		RaftIndex:    resp.RaftIndex,
		AppliedIndex: resp.RaftAppliedIndex,
		DBSize:       resp.DbSize,
		DBSizeInUse:  resp.DbSizeInUse,
		DBQuota:      resp.DbSizeQuota,
		Version:      resp.Version,
		IsLearner:    resp.IsLearner,
	}
	if resp.Header != nil {
		st.MemberID = resp.Header.MemberId
		st.ClusterID = resp.Header.ClusterId
	}
	if d := resp.DowngradeInfo; d != nil {
		st.Downgrade = &Downgrade{Enabled: d.Enabled, TargetVersion: d.TargetVersion}
	}
	for _, e := range resp.Errors {
		if a, ok := ParseAlarm(e); ok {
			st.Alarms = append(st.Alarms, a)
		}
	}
	return st
}

// etcd renders an alarm in StatusResponse.Errors as pb.AlarmMember's text:
// "memberID:123 alarm:NOSPACE ".
var alarmText = regexp.MustCompile(`memberID:(\d+)\s+alarm:([A-Z_]+)`)

// ParseAlarm reads one alarm from a StatusResponse error string.
func ParseAlarm(s string) (Alarm, bool) {
	m := alarmText.FindStringSubmatch(s)
	if m == nil {
		return Alarm{}, false
	}
	id, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return Alarm{}, false
	}
	return Alarm{MemberID: id, Type: m[2]}, true
}
