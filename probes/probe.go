// Package probes holds the probes etcdpulse runs against etcd and the runner
// that schedules them. A probe measures; the runner owns the verdict: it
// sets each run's deadline, times it, records success and opens its span.
package probes

import (
	"context"
	"sync"
	"time"
)

// Probe is one measurement. Run gets a context carrying the run's deadline
// and span; it returns nil on success and an error that says what failed.
// Probes store what they learn in the State they were built with.
type Probe interface {
	Name() string
	Run(ctx context.Context, t *Target) error
}

// Scope says which targets a probe runs against in a round.
type Scope int

const (
	// EveryMember probes run against each member.
	EveryMember Scope = iota
	// AnyMember probes ask a cluster-wide question of one reachable
	// member: the local one while it answers, another one otherwise.
	AnyMember
	// LocalMember probes measure the local member's host (its disk), not
	// etcd: they run against the local target only, answering or not.
	LocalMember
	// PeerMembers probes measure the network to the other members: they
	// run against each member except the local one.
	PeerMembers
)

// Schedule is how often a probe runs and how long one run may take.
type Schedule struct {
	Interval time.Duration
	Timeout  time.Duration
}

// Scheduled is a probe with its scope and schedule.
type Scheduled struct {
	Probe    Probe
	Scope    Scope
	Schedule Schedule
}

// State holds the latest results per target. Scrapes read it; only probes
// and the runner write it.
type State struct {
	mu      sync.Mutex
	results map[*Target]*TargetResults
}

// NewState returns an empty state.
func NewState() *State { return &State{results: map[*Target]*TargetResults{}} }

func (s *State) entry(t *Target) *TargetResults {
	r, ok := s.results[t]
	if !ok {
		r = &TargetResults{Outcomes: map[string]Outcome{}}
		s.results[t] = r
	}
	return r
}

// SetStatus stores what a member last said of itself. Whether it is
// reachable is the verdict of its last status run, not this.
func (s *State) SetStatus(t *Target, st *Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entry(t).Status = st
}

// Record stores the outcome of one probe run.
func (s *State) Record(t *Target, probe string, o Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entry(t).Outcomes[probe] = o
}

// outcome returns the latest outcome of probe on t.
func (s *State) outcome(t *Target, probe string) (Outcome, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.results[t]
	if !ok {
		return Outcome{}, false
	}
	o, ok := r.Outcomes[probe]
	return o, ok
}

// Snapshot copies the results of the given targets and forgets the others.
func (s *State) Snapshot(targets []*Target) []TargetResults {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[*Target]bool{}
	out := make([]TargetResults, 0, len(targets))
	for _, t := range targets {
		keep[t] = true
		r := TargetResults{Outcomes: map[string]Outcome{}}
		if cur, ok := s.results[t]; ok {
			r.Status = cur.Status
			for k, v := range cur.Outcomes {
				r.Outcomes[k] = v
			}
		}
		r.Member, r.Endpoint, r.Local = t.Member(), t.Endpoint, t.Local
		out = append(out, r)
	}
	for t := range s.results {
		if !keep[t] {
			delete(s.results, t)
		}
	}
	return out
}
