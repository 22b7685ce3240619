package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The data path panels of the cluster overview: the agents' probe writes,
// each through its own member, and their delivery on every member's watch.
// Per-member figures take the most optimistic agent, as the alerts do:
// delivery and lag the lowest agent's, counting for the lag only the agents
// whose own writes commit (an agent with nothing to follow reports 0).
// Write figures come from one agent per member (the one beside it), so
// they are summed.

// writingAgents keeps the agents that had a write committed in the rate
// interval, as EtcdReplicationLagging keeps those of the last minute.
var writingAgents = `sum by (cluster, instance) (` + rate(cluster("etcdpulse_write_duration_seconds_count")) + `) > 0`

// deliveryQuantile is, per member, the q-quantile of its watch delivery for
// the agent that sees it fastest.
func deliveryQuantile(q float64) string {
	return fmt.Sprintf("min by (cluster, member) (%s)", quantile(q, "cluster, instance, member", cluster("etcdpulse_watch_delivery_seconds_bucket")))
}

func writesTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Probe writes committed and failed",
		"Each agent puts one key through its own member every 5 s: writes committed per second, by member, and failed ones by member and reason (timeout, unreachable, etcd_error; the TLS reasons, authentication and permission_denied are the agent's own). No member committing while quorum holds is EtcdWritesFailing; one member failing alone, EtcdMemberWritesFailing. Empty for read-only agents.",
		"ops", "EtcdWritesFailing", "EtcdMemberWritesFailing").
		Min(0).
		WithTarget(prometheusQuery(`sum by (cluster, member) (`+rate(cluster("etcdpulse_write_duration_seconds_count"))+`)`, "{{member}} committed")).
		WithTarget(prometheusQuery(`sum by (cluster, member, reason) (`+rate(cluster("etcdpulse_probe_failures_total", `probe="write"`))+`)`, "{{member}} failed: {{reason}}"))
}

func writeLatencyTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Write latency by member",
		"Time for the agents' probe writes to commit through each member, at the 50th, 90th and 99th percentile. A small put commits in a few milliseconds; the alert watches the 90th percentile past 250 ms (the dashed line) for 10 minutes. With 12 writes a minute per member the 99th percentile is the slowest write of the interval.",
		"s", "EtcdWriteLatencyHigh"), "green", step{0.25, "red"}).
		Min(0).
		WithTarget(prometheusQuery(quantile(0.5, "cluster, member", cluster("etcdpulse_write_duration_seconds_bucket")), "{{member}} p50")).
		WithTarget(prometheusQuery(quantile(0.9, "cluster, member", cluster("etcdpulse_write_duration_seconds_bucket")), "{{member}} p90")).
		WithTarget(prometheusQuery(quantile(0.99, "cluster, member", cluster("etcdpulse_write_duration_seconds_bucket")), "{{member}} p99"))
}

func watchDeliveryTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Watch delivery by member",
		"Time from an agent's committed write to its event on each member's watch: the member's replication and apply time, and what its watchers (the API server's watch cache) wait. 50th, 90th and 99th percentile, for the agent that sees the member fastest. The alert watches the 90th percentile past 500 ms (the dashed line) for 10 minutes.",
		"s", "EtcdWatchDeliverySlow"), "green", step{0.5, "red"}).
		Min(0).
		WithTarget(prometheusQuery(deliveryQuantile(0.5), "{{member}} p50")).
		WithTarget(prometheusQuery(deliveryQuantile(0.9), "{{member}} p90")).
		WithTarget(prometheusQuery(deliveryQuantile(0.99), "{{member}} p99"))
}

func replicationLagTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Replication lag by member",
		"Age of the oldest agent write each member has not served yet (applied and delivered on its watch), for the most optimistic agent among those whose writes commit. It rises a second per second while a member does not apply; the alert fires past 30 s (the dashed line) for a member that answers.",
		"s", "EtcdReplicationLagging"), "green", step{30, "red"}).
		Min(0).
		WithTarget(prometheusQuery(`min by (cluster, member) (`+cluster("etcdpulse_member_replication_lag_seconds")+` and on (cluster, instance) `+writingAgents+`)`, "{{member}}"))
}

func watchFailuresTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Watch probe failures by member and reason",
		"Checks of a member that had not served a write 2 s after its commit, per second, by member and reason, summed over the agents: behind (it had not applied it), watch_stalled (it had, but its watch did not deliver it), watch_restarted (etcd ended the watch), timeout and unreachable (the member did not answer).",
		"ops", "EtcdWatchStalled", "EtcdReplicationLagging").
		Min(0).
		WithTarget(prometheusQuery(`sum by (cluster, member, reason) (`+rate(cluster("etcdpulse_probe_failures_total", `probe="watch"`))+`)`, "{{member}} {{reason}}"))
}

func watchRestartsTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Watch restarts by member and cause",
		"Watches on a member that etcd ended and the agents re-established, per rate interval, by cause: compacted (the watch had fallen behind the compaction), cancelled, closed. A few around a member's restart are normal.",
		"none", "EtcdWatchStalled").
		Min(0).
		DrawStyle(common.GraphDrawStyleBars).
		FillOpacity(80).
		WithTarget(prometheusQuery(`sum by (cluster, member, cause) (increase(`+cluster("etcdpulse_watch_restarts_total")+`[$__rate_interval]))`, "{{member}} {{cause}}"))
}

func hashMismatchTimeline() *statetimeline.PanelBuilder {
	return defaultStateTimeline("Hash consistency by member",
		"Whether a member was in the minority in any agent's last conclusive hash check: its HashKV at a revision every member had applied differed from the majority's. Each agent checks every 5 minutes; empty before the first conclusive check.",
		valueMappings(mapping{"0", "consistent", "green"}, mapping{"1", "mismatch", "red"}), "EtcdMemberDataMismatch").
		WithTarget(prometheusQuery(`max by (cluster, member) (`+cluster("etcdpulse_member_hash_mismatch")+`)`, "{{member}}"))
}

func hashCheckAgeTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Time since the last conclusive hash check",
		"Per agent, the time since its last conclusive hash check (every 5 minutes by default). It keeps growing while checks are skipped (a member unhealthy or slow) or inconclusive (compactions racing the check): the Agent self-health dashboard shows the checks by result. Meanwhile a mismatch would go unseen.",
		"s", "EtcdMemberDataMismatch").
		Min(0).
		WithTarget(prometheusQuery(`time() - max by (cluster, instance) (`+cluster("etcdpulse_hash_check_timestamp_seconds")+`)`, "{{instance}}"))
}
