package collectors

import "github.com/prometheus/client_golang/prometheus"

// The leadership capability's row: each leader change the agent saw,
// counted once its cause is decided.
var LeaderChangesByCause = Metric{"etcdpulse_leader_changes_total", Counter,
	"Leader changes this agent observed, by the cause it found once the evidence was in (at most about 10 s after the change): planned_transfer (the old leader stayed reachable and healthy: MoveLeader, or etcd's own transfer before a graceful stop that did not follow), restart (the old leader's process restarted: connections refused then answered again, or, on its own node, a new PID), unreachable (the old leader timed out, or refused connections and did not come back), disk_stall (on the old leader's own node only: its fsync probe stalled or its member was wedged), cut_off (reachable from the agent but cut off from its peers), unknown. Every cause is exported from the start, at 0.", []string{"cause"}}

// LeadershipMetrics lists these rows in documentation order.
var LeadershipMetrics = []Metric{LeaderChangesByCause}

// NewLeaderChanges returns the counter of explained leader changes with a
// series for every cause, so that rate() sees the first change of each.
func NewLeaderChanges(causes []string) *prometheus.CounterVec {
	return LeaderChangesByCause.counterBy(causes)
}
