package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The "Why the leader changed" row of the overview: each leader change
// by the cause the agents found, above each node's evidence on one time
// axis (the dashboard's crosshair is shared), so that a change lines up
// with the fsync stall, the slow peer, the restart or the iowait beside it.

func leaderCausesTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Leader changes by cause",
		"Leader changes each agent saw, by the cause it found once the evidence was in (up to 10 s after the change): planned_transfer, restart, unreachable, disk_stall, cut_off, unknown. Every agent counts every change it sees; only the agent on the old leader's node can tell disk_stall, so the same change may be disk_stall there and unknown elsewhere. The panels below show each node's evidence on the same time axis; the agents' logs (\"leader change explained\") and traces (leader_change_cause) give the evidence of each change.",
		"none", "EtcdLeaderFlapping").
		Span(24).
		DrawStyle(common.GraphDrawStyleBars).
		FillOpacity(80).
		WithTarget(prometheusQuery(`sum by (cluster, instance, cause) (increase(`+cluster("etcdpulse_leader_changes_total")+`[$__rate_interval]))`, "{{instance}}: {{cause}}"))
}

func leaderEvidenceFsyncTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Evidence: fsync stalls and p99 by node",
		"Per node, how long the fsync probe's current disk operation has been waiting (a climbing saw-tooth is a stalled disk), and the probe's fsync p99. A leader change on a node whose disk stalls is disk_stall.",
		"s", "EtcdFsyncStalled", "EtcdFsyncSlow").
		WithTarget(prometheusQuery(`max by (cluster, instance) (`+cluster("etcdpulse_disk_fsync_stalled_seconds")+`)`, "{{instance}} stalled")).
		WithTarget(prometheusQuery(quantile(0.99, "cluster, instance", cluster("etcdpulse_disk_fsync_duration_seconds_bucket")), "{{instance}} p99"))
}

func leaderEvidencePeerTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Evidence: peer round trip p99 by node",
		"99th percentile of each agent's TCP connect to each other member's peer URL, what raft uses. A leader whose peers' round trips climb, or fail, while its clients are served, is cut off.",
		"s", "EtcdPeerNetworkSlow").
		WithTarget(prometheusQuery(quantile(0.99, "cluster, instance, peer", cluster("etcdpulse_network_peer_rtt_seconds_bucket", `phase="connect_peer"`)), "{{instance}} → {{peer}}"))
}

func leaderEvidenceRestartsTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Evidence: etcd process restarts by node",
		"How often the etcd process beside each agent changed its start time in the rate interval: a restart. A leader change at the same moment on the old leader's node is restart (or unreachable while the process stays down).",
		"none").
		DrawStyle(common.GraphDrawStyleBars).
		FillOpacity(80).
		WithTarget(prometheusQuery(`sum by (cluster, instance) (changes(`+cluster("etcdpulse_etcd_process_start_time_seconds")+`[$__rate_interval]))`, "{{instance}}"))
}

func leaderEvidenceIowaitTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Evidence: CPU iowait by node",
		"CPU time each node spent idle with I/O outstanding, in CPUs. iowait climbing on the old leader's node at a change points at its disk even when the fsync probe did not stall.",
		"short").
		Min(0).
		WithTarget(prometheusQuery(`sum by (cluster, instance) (`+rate(cluster("etcdpulse_host_cpu_iowait_seconds_total"))+`)`, "{{instance}}"))
}
