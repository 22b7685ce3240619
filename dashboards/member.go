package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The member detail dashboard is about the members beside the chosen
// agents: node-level series (disk, network) come from those agents, and
// member-level series are each agent's view of its own member
// (localMember).

func member() (dashboard.Dashboard, error) {
	return finish(newDashboard("etcdpulse-member", "etcdpulse / Member detail",
		"One member and its node, through the agent beside it: the disk's fsync against etcd's own WAL fsync, peer round trips by phase, raft lag and reads. Pick the member's agent with the instance variable.").
		WithRow(dashboard.NewRowBuilder("Member")).
		WithPanel(memberHealthStat()).
		WithPanel(memberRoleStat()).
		WithPanel(memberAnsweringStat()).
		WithPanel(fsyncStalledStat()).
		WithRow(dashboard.NewRowBuilder("Disk")).
		WithPanel(fsyncP99Timeseries()).
		WithPanel(fsyncP50Timeseries()).
		WithPanel(backendCommitTimeseries()).
		WithPanel(fsyncStallTimeseries()).
		WithRow(dashboard.NewRowBuilder("Network")).
		WithPanel(peerRTTTimeseries()).
		WithPanel(peerRTTMedianTimeseries()).
		WithPanel(etcdPeerRTTTimeseries()).
		WithPanel(peerUpTimeline()).
		WithRow(dashboard.NewRowBuilder("Raft")).
		WithPanel(raftIndexLagTimeseries()).
		WithPanel(raftApplyLagTimeseries()).
		WithRow(dashboard.NewRowBuilder("Reads")).
		WithPanel(readProbesTimeline()).
		WithPanel(readProbeDurationTimeseries()).
		WithPanel(etcdReadsTimeseries()))
}

const readProbes = `probe=~"read_linearizable|read_serializable"`

func memberHealthStat() *stat.PanelBuilder {
	return defaultStat("Health",
		"Whether the member answered the agent's last linearizable read within the probe deadline: it is part of a working quorum.",
		"none", "EtcdMemberUnhealthy").
		Span(6).
		Mappings(okMappings("Healthy", "Unhealthy")).
		WithTarget(instantQuery(localMember(`max by (cluster, instance, member) (`+node("etcdpulse_member_healthy")+`)`), "{{member}}"))
}

func memberRoleStat() *stat.PanelBuilder {
	return defaultStat("Role",
		"Leader, follower or learner (a non-voting member catching up).",
		"none").
		Span(6).
		Mappings(valueMappings(mapping{"0", "Follower", "green"}, mapping{"1", "Leader", "blue"}, mapping{"2", "Learner", "purple"})).
		WithTarget(instantQuery(localMember(
			`max by (cluster, instance, member) (`+node("etcdpulse_member_is_leader")+`) + 2 * max by (cluster, instance, member) (`+node("etcdpulse_member_is_learner")+`)`),
			"{{member}}"))
}

func memberAnsweringStat() *stat.PanelBuilder {
	return defaultStat("Status probe",
		"Whether the member beside the agent answered the agent's last status request at all (serving or not).",
		"none").
		Span(6).
		Mappings(okMappings("Answering", "Not answering")).
		WithTarget(instantQuery(`max by (cluster, instance) (`+node("etcdpulse_up")+`)`, "{{instance}}"))
}

func fsyncStalledStat() *stat.PanelBuilder {
	return defaultStat("fsync stall",
		"Whether a disk operation of the agent's fsync probe has been outstanding past the stall threshold: the disk under etcd's WAL is not completing writes, and etcd itself is blocked on it.",
		"none", "EtcdFsyncStalled").
		Span(6).
		Mappings(valueMappings(mapping{"0", "No stall", "green"}, mapping{"1", "Stalled", "red"})).
		WithTarget(instantQuery(`max by (cluster, instance) (`+node("etcdpulse_disk_fsync_stalled")+`)`, "{{instance}}"))
}

func fsyncP99Timeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("fsync p99: probe against etcd's WAL",
		"99th percentile of the agent's fsync probe (a small write and fdatasync on the WAL's filesystem, as etcd's WAL does) against etcd's own WAL fsync, read from etcd's metrics. etcd wants it under 10 ms; the alert fires past 50 ms. The probe rising while etcd's does not points at the probe's file; both rising, at the disk.",
		"s", "EtcdFsyncSlow"), "green", step{0.05, "red"}).
		WithTarget(prometheusQuery(quantile(0.99, "cluster, instance", node("etcdpulse_disk_fsync_duration_seconds_bucket")), "{{instance}} probe")).
		WithTarget(prometheusQuery(quantile(0.99, "cluster, instance", node("etcdpulse_etcd_wal_fsync_duration_seconds_bucket")), "{{instance}} etcd WAL"))
}

func fsyncP50Timeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("fsync p50: probe against etcd's WAL",
		"Median of the agent's fsync probe against etcd's own WAL fsync: the typical sync, where the p99 shows the tail.",
		"s", "EtcdFsyncSlow").
		WithTarget(prometheusQuery(quantile(0.5, "cluster, instance", node("etcdpulse_disk_fsync_duration_seconds_bucket")), "{{instance}} probe")).
		WithTarget(prometheusQuery(quantile(0.5, "cluster, instance", node("etcdpulse_etcd_wal_fsync_duration_seconds_bucket")), "{{instance}} etcd WAL"))
}

func backendCommitTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("etcd backend commit p99",
		"99th percentile of etcd's own backend (bbolt) commit duration, read from etcd's metrics. etcd wants it under 25 ms; slow commits with fast WAL syncs point at a large or fragmented database.",
		"s").
		WithTarget(prometheusQuery(quantile(0.99, "cluster, instance", node("etcdpulse_etcd_backend_commit_duration_seconds_bucket")), "{{instance}}"))
}

func fsyncStallTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Outstanding fsync probe operation",
		"How long the fsync probe's current disk operation has been waiting, 0 when none is. A saw-tooth that keeps climbing is a stalled disk.",
		"s", "EtcdFsyncStalled").
		WithTarget(prometheusQuery(`max by (cluster, instance) (`+node("etcdpulse_disk_fsync_stalled_seconds")+`)`, "{{instance}}"))
}

func peerRTTTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Peer round trip p99 by phase",
		"99th percentile of the agent's round trips to each other member, by phase: connect_peer (TCP connect to the peer URL, what raft uses), connect_client (TCP connect to the client URL), tls_handshake, request (a serializable read on a kept-alive connection). The alert watches connect_peer past 100 ms.",
		"s", "EtcdPeerNetworkSlow"), "green", step{0.1, "red"}).
		WithTarget(prometheusQuery(quantile(0.99, "cluster, instance, peer, phase", node("etcdpulse_network_peer_rtt_seconds_bucket")), "{{instance}} → {{peer}} {{phase}}"))
}

func peerRTTMedianTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Peer round trip p50 by phase",
		"Median of the agent's round trips to each other member, by phase: the usual latency, where the p99 shows the tail.",
		"s", "EtcdPeerNetworkSlow").
		WithTarget(prometheusQuery(quantile(0.5, "cluster, instance, peer, phase", node("etcdpulse_network_peer_rtt_seconds_bucket")), "{{instance}} → {{peer}} {{phase}}"))
}

func etcdPeerRTTTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("etcd's peer round trip p99",
		"99th percentile of the round trip etcd itself measures on its raft connections to each peer, read from etcd's metrics: compare with the probe's connect_peer phase.",
		"s", "EtcdPeerNetworkSlow").
		WithTarget(prometheusQuery(quantile(0.99, "cluster, instance, peer", node("etcdpulse_etcd_peer_round_trip_time_seconds_bucket")), "{{instance}} → {{peer}}"))
}

func peerUpTimeline() *statetimeline.PanelBuilder {
	return defaultStateTimeline("Peer reachability by phase",
		"Whether the agent's last attempt of each phase to each other member succeeded. connect_peer down while the peer is healthy for other agents means this node cannot reach it.",
		okMappings("up", "down"), "EtcdPeerUnreachable").
		WithTarget(prometheusQuery(`min by (cluster, instance, peer, phase) (`+node("etcdpulse_network_peer_up")+`)`, "{{instance}} → {{peer}} {{phase}}"))
}

func raftIndexLagTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Raft index lag",
		"Raft entries the member's committed index is behind the highest committed index any reachable member reported, in its agent's view. A follower that keeps falling behind will need a snapshot.",
		"none", "EtcdFollowerLagging"), "green", step{1000, "red"}).
		WithTarget(prometheusQuery(localMember(`max by (cluster, instance, member) (`+node("etcdpulse_member_raft_index_lag")+`)`), "{{member}}"))
}

func raftApplyLagTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Raft apply lag",
		"Raft entries the member has committed but not yet applied to its store: the member is slower to apply than the cluster commits (a slow backend or expensive requests).",
		"none", "EtcdApplyLagging"), "green", step{1000, "red"}).
		WithTarget(prometheusQuery(localMember(`max by (cluster, instance, member) (`+node("etcdpulse_member_raft_apply_lag")+`)`), "{{member}}"))
}

func readProbesTimeline() *statetimeline.PanelBuilder {
	return defaultStateTimeline("Read probes",
		"The agent's reads from its member: linearizable (through the leader and a quorum) and serializable (from the member's own store). Serializable ok while linearizable fails means the member is alive but cut off from quorum.",
		okMappings("ok", "failed"), "EtcdMemberUnhealthy").
		WithTarget(prometheusQuery(localMember(`min by (cluster, instance, member, probe) (`+node("etcdpulse_probe_success", readProbes)+`)`), "{{member}} {{probe}}"))
}

func readProbeDurationTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Read probe duration p99",
		"99th percentile of the agent's read probes, over every member it reads from (failed reads included, at the deadline).",
		"s").
		WithTarget(prometheusQuery(quantile(0.99, "cluster, instance, probe", node("etcdpulse_probe_duration_seconds_bucket", readProbes)), "{{instance}} {{probe}}"))
}

func etcdReadsTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Range requests served by etcd",
		"Reads (range requests) per second each etcd member served, from etcd's own etcd_mvcc_range_total: empty unless Prometheus also scrapes etcd itself. Filtered by cluster only: etcd's scrape targets have instance labels of their own.",
		"reqps").
		WithTarget(prometheusQuery(`sum by (cluster, instance) (`+rate(cluster("etcd_mvcc_range_total"))+`)`, "{{instance}}"))
}
