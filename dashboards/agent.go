package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The agent self-health dashboard answers "can I trust the other
// dashboards?": are the agents there, do their probes run, and what load do
// they put on etcd and the disk.

func agent() (dashboard.Dashboard, error) {
	return finish(newDashboard("etcdpulse-agent", "etcdpulse / Agent self-health",
		"The etcdpulse agents themselves: which are reporting, whether their probes succeed and how long they take, and the requests and disk writes the agents add to etcd's load.").
		WithRow(dashboard.NewRowBuilder("Agents")).
		WithPanel(agentsStat().Span(8)).
		WithPanel(versionsStat()).
		WithPanel(lastRoundStat()).
		WithPanel(localStatusTimeline()).
		WithPanel(etcdMetricsTimeline()).
		WithRow(dashboard.NewRowBuilder("Probes")).
		WithPanel(probeSuccessTimeseries()).
		WithPanel(probeDurationTimeseries()).
		WithPanel(probeRunsTimeseries()).
		WithPanel(fsyncRefusedTimeline()).
		WithPanel(agentRefusedTimeline()).
		WithPanel(probeFailuresTimeseries()).
		WithPanel(writeProbesTimeline()).
		WithPanel(hashChecksTimeseries()).
		WithRow(dashboard.NewRowBuilder("Load the agents add")).
		WithPanel(requestsByMethodTimeseries()).
		WithPanel(requestsByMemberTimeseries()).
		WithPanel(fsyncWrittenTimeseries()).
		WithPanel(fsyncSyncsTimeseries()))
}

func versionsStat() *stat.PanelBuilder {
	return defaultStat("Versions",
		"Agents by etcdpulse version; more than one version is expected only during a rollout.",
		"none").
		Span(8).
		Decimals(0).
		ColorMode(common.BigValueColorModeNone).
		TextMode(common.BigValueTextModeValueAndName).
		WithTarget(instantQuery(`count by (version) (`+node("etcdpulse_build_info")+`)`, "{{version}}"))
}

func lastRoundStat() *stat.PanelBuilder {
	return defaultStat("Oldest probe round",
		"Time since the agent that is furthest behind last evaluated a probe round. Much more than the probe interval means an agent is stuck.",
		"s").
		Span(8).
		Thresholds(thresholds("green", step{60, "orange"}, step{300, "red"})).
		WithTarget(instantQuery(`max(time() - `+node("etcdpulse_last_round_timestamp_seconds")+`)`, "oldest"))
}

func localStatusTimeline() *statetimeline.PanelBuilder {
	return defaultStateTimeline("Local member answering",
		"Whether each agent's own etcd member answered its last status probe. An agent that reports but whose member does not answer is the member's problem, not the agent's.",
		okMappings("answering", "not answering")).
		WithTarget(prometheusQuery(`max by (cluster, instance) (`+node("etcdpulse_up")+`)`, "{{instance}}"))
}

func etcdMetricsTimeline() *statetimeline.PanelBuilder {
	return defaultStateTimeline("etcd metrics read",
		"Whether each agent's last read of its member's metrics URL (etcd.metrics_url) succeeded; etcd's own fsync, commit and peer round trip panels need it. Absent where the URL is not set.",
		okMappings("read", "failed")).
		WithTarget(prometheusQuery(`max by (cluster, instance) (`+node("etcdpulse_etcd_metrics_up")+`)`, "{{instance}}"))
}

func probeSuccessTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Probe success",
		"Share of members for which each probe's last run succeeded, per agent. A probe failing for every member on one agent only points at that agent or its node.",
		"percentunit").
		Min(0).
		Max(1).
		WithTarget(prometheusQuery(`avg by (cluster, instance, probe) (`+node("etcdpulse_probe_success")+`)`, "{{instance}} {{probe}}"))
}

func probeDurationTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Probe duration p99",
		"99th percentile of each probe's run time, failed runs included (a run that times out lasts its deadline).",
		"s").
		WithTarget(prometheusQuery(quantile(0.99, "cluster, instance, probe", node("etcdpulse_probe_duration_seconds_bucket")), "{{instance}} {{probe}}"))
}

func probeRunsTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Probe runs",
		"Probe runs per second, per agent and probe. Heavy probes run rarely and pause while etcd is slow.",
		"ops").
		Min(0).
		WithTarget(prometheusQuery(`sum by (cluster, instance, probe) (`+rate(node("etcdpulse_probe_duration_seconds_count"))+`)`, "{{instance}} {{probe}}"))
}

func fsyncRefusedTimeline() *statetimeline.PanelBuilder {
	return defaultStateTimeline("fsync probe refused",
		"Why an agent's fsync probe refuses to measure (tmpfs, overlay, other_device, no_wal_dir, no_space, error): its numbers would not describe etcd's WAL disk. Empty while every probe measures.",
		valueMappings(mapping{"1", "refused", "orange"}, mapping{"0", "measuring", "green"}), "EtcdpulseFsyncProbeRefused").
		WithTarget(prometheusQuery(`max by (cluster, instance, reason) (`+node("etcdpulse_disk_fsync_probe_refused")+`)`, "{{instance}} {{reason}}"))
}

func agentRefusedTimeline() *statetimeline.PanelBuilder {
	return defaultStateTimeline("etcd refuses the agent",
		"Members that refuse an agent, or whose certificate an agent refuses, by reason (authentication, permission_denied, wrong_member, the TLS reasons). While refused, that agent reports the member's health and the quorum as unknown (absent), not as bad. Empty while every agent is accepted.",
		valueMappings(mapping{"1", "refused", "orange"}, mapping{"0", "accepted", "green"}), "EtcdpulseAgentRefused").
		WithTarget(prometheusQuery(`max by (cluster, instance, member, reason) (`+node("etcdpulse_agent_refused")+`)`, "{{instance}} → {{member}} {{reason}}"))
}

func probeFailuresTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Probe failures by reason",
		"Failed probe runs per second, by probe and reason: unreachable and timeout are the members' doing, the TLS reasons, authentication, permission_denied and wrong_member the agent's own, etcd_error etcd's answer (no leader, NOSPACE).",
		"ops").
		Min(0).
		WithTarget(prometheusQuery(`sum by (cluster, instance, probe, reason) (`+rate(node("etcdpulse_probe_failures_total"))+`)`, "{{instance}} {{probe}} {{reason}}"))
}

func requestsByMethodTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Requests to etcd by method",
		"gRPC requests per second the agents send to etcd, by method: the agents' own load on etcd.",
		"reqps").
		Min(0).
		WithTarget(prometheusQuery(`sum by (cluster, instance, method) (`+rate(node("etcdpulse_etcd_requests_total"))+`)`, "{{instance}} {{method}}"))
}

func requestsByMemberTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Requests to etcd by member",
		"gRPC requests per second the agents send to each member. Each agent probes its own member deeply and the others lightly.",
		"reqps").
		Min(0).
		WithTarget(prometheusQuery(`sum by (cluster, instance, member) (`+rate(node("etcdpulse_etcd_requests_total"))+`)`, "{{instance}} → {{member}}"))
}

func fsyncWrittenTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("fsync probe writes",
		"Bytes per second the fsync probe writes to the WAL's filesystem; the probe bounds it.",
		"Bps").
		Min(0).
		WithTarget(prometheusQuery(`sum by (cluster, instance) (`+rate(node("etcdpulse_disk_fsync_written_bytes_total"))+`)`, "{{instance}}"))
}

func fsyncSyncsTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("fsync probe syncs",
		"fdatasync calls per second the fsync probe makes, next to the ones etcd's WAL makes.",
		"ops").
		Min(0).
		WithTarget(prometheusQuery(`sum by (cluster, instance) (`+rate(node("etcdpulse_disk_fsync_duration_seconds_count"))+`)`, "{{instance}} probe")).
		WithTarget(prometheusQuery(`sum by (cluster, instance) (`+rate(node("etcdpulse_etcd_wal_fsync_duration_seconds_count"))+`)`, "{{instance}} etcd WAL"))
}

func writeProbesTimeline() *statetimeline.PanelBuilder {
	return defaultStateTimeline("Write and watch probes",
		"Whether each agent writes its probe key through its member and follows its writes on every member's watch (etcdpulse_write_enabled, etcdpulse_watch_enabled); both are off on a read-only agent (etcd.read_only). With no agent writing, the write, watch and replication alerts cannot fire.",
		valueMappings(mapping{"1", "on", "green"}, mapping{"0", "read-only", "orange"}), "EtcdpulseReadOnly").
		WithTarget(prometheusQuery(`max by (cluster, instance) (`+node("etcdpulse_write_enabled")+`)`, "{{instance}} writes")).
		WithTarget(prometheusQuery(`max by (cluster, instance) (`+node("etcdpulse_watch_enabled")+`)`, "{{instance}} watches"))
}

func hashChecksTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Hash checks by result",
		"Each agent's hash consistency checks per rate interval, by result: match, mismatch, inconclusive (the members' compact revisions differed in every attempt), skipped_unhealthy (a member unreachable or unhealthy), skipped_slow (a member slow, as during a defragmentation). Only match and mismatch are conclusive; without them a mismatch goes unseen.",
		"none", "EtcdMemberDataMismatch").
		Min(0).
		DrawStyle(common.GraphDrawStyleBars).
		FillOpacity(80).
		WithTarget(prometheusQuery(`sum by (cluster, instance, result) (increase(`+node("etcdpulse_hash_checks_total")+`[$__rate_interval]))`, "{{instance}} {{result}}"))
}
