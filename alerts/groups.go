package alerts

import "time"

// Aggregation across agents: every agent reports the whole cluster, so a
// rule about health takes the most optimistic agent (max of health and
// fault tolerance, min of lag): one agent cut off from the others cannot
// page for the whole cluster. Rules about disagreement and leader changes
// take the most pessimistic (max): only an agent that reaches the odd
// member can see it.

// unhealthyMembers lists, in a description, the members no agent can read
// from linearizably.
// Learners never serve linearizable reads and do not vote: they are not
// listed.
const unhealthyMembers = `{{ range $i, $s := printf "max by (member) (etcdpulse_member_healthy{cluster=%q}) == 0 unless on (member) max by (member) (etcdpulse_member_is_learner{cluster=%q}) == 1" $labels.cluster $labels.cluster | query | sortByLabel "member" }}{{ if $i }}, {{ end }}{{ $s.Labels.member }}{{ end }}.`

// localMember names, in a description, the member beside the agent of the
// alert's instance.
const localMember = `{{ range printf "etcdpulse_local_member_info{instance=%q}" $labels.instance | query }}{{ .Labels.member }}{{ end }}`

func quorumGroup() Group {
	return Group{Name: "etcdpulse.quorum", Rules: []Rule{
		{
			Alert: "EtcdQuorumLost",
			Expr:  `max by (cluster) (etcdpulse_cluster_fault_tolerance) < 0`,
			// Two evaluations in a row: with a 15 s scrape this fires 20-50 s
			// after the fault (the goal is one minute, the mixin's 3.5-4.5).
			For:      15 * time.Second,
			Severity: Critical,
			Summary:  "etcd has lost quorum: writes and linearizable reads fail.",
			Description: `etcd cluster {{ $labels.cluster }} has fewer healthy voting members than quorum needs (fault tolerance {{ $value }}); the Kubernetes API cannot write. ` +
				`Members failing linearizable reads: ` + unhealthyMembers,
		},
		{
			Alert: "EtcdQuorumAtRisk",
			// One or two voters always have fault tolerance 0: nothing to
			// warn of that the cluster's size does not already say.
			Expr:     `max by (cluster) (etcdpulse_cluster_fault_tolerance) == 0 and on (cluster) max by (cluster) (etcdpulse_cluster_voting_members) >= 3`,
			For:      time.Minute,
			Severity: Critical,
			Summary:  "etcd is one member failure away from losing quorum.",
			Description: `etcd cluster {{ $labels.cluster }} has exactly the quorum of healthy voting members (fault tolerance {{ $value }}): one more failure stops all writes. ` +
				`Members failing linearizable reads: ` + unhealthyMembers,
		},
		{
			Alert: "EtcdNoLeader",
			// A leader is working when a quorum of voters follows it: one
			// member cut off from its peers reports no leader (has_leader
			// 0) while the others commit, and that is EtcdQuorumAtRisk
			// and EtcdLeaderDisagreement, not this page. Quorum lost
			// implies no leader; that alert already pages.
			Expr:        `max by (cluster) (etcdpulse_cluster_leader_voters) < on (cluster) max by (cluster) (etcdpulse_cluster_quorum_size) unless on (cluster) max by (cluster) (etcdpulse_cluster_fault_tolerance) < 0`,
			For:         30 * time.Second,
			Severity:    Critical,
			Summary:     "etcd has no leader although a quorum of members answers.",
			Description: `No agent of etcd cluster {{ $labels.cluster }} sees a quorum of voting members follow one leader (at most {{ $value }} agree on one), yet enough members are up: elections are failing, so nothing commits. Check disk and peer latency.`,
		},
		{
			Alert: "EtcdLeaderFlapping",
			// More changes in 15 minutes than there are voters: a rolling
			// restart moves the leader at most once per member.
			Expr:        `max by (cluster) (floor(increase(etcdpulse_cluster_leader_changes_total[15m]))) > on (cluster) max by (cluster) (etcdpulse_cluster_voting_members)`,
			Severity:    Warning,
			Summary:     "The etcd leader changes more often than a rolling restart would explain.",
			Description: `etcd cluster {{ $labels.cluster }} changed leader {{ $value }} times in the last 15 minutes, more than its number of voting members. Leader elections stall writes; look for slow fsync, slow peer links or CPU starvation.`,
		},
		{
			Alert:       "EtcdLeaderDisagreement",
			Expr:        `max by (cluster) (etcdpulse_cluster_leader_disagreement) == 1`,
			For:         time.Minute,
			Severity:    Warning,
			Summary:     "etcd members report different leaders or terms.",
			Description: `Reachable members of etcd cluster {{ $labels.cluster }} have disagreed on the leader or term for a minute (disagreement {{ $value }}); a member is likely cut off from the others and serving stale serializable reads.`,
		},
	}}
}

func membersGroup() Group {
	return Group{Name: "etcdpulse.members", Rules: []Rule{
		{
			Alert: "EtcdMemberUnhealthy",
			// Learners never serve linearizable reads; during quorum loss
			// EtcdQuorumLost names the members already.
			Expr: `max by (cluster, member) (etcdpulse_member_healthy) == 0` +
				` unless on (cluster, member) max by (cluster, member) (etcdpulse_member_is_learner) == 1` +
				` unless on (cluster) max by (cluster) (etcdpulse_cluster_fault_tolerance) < 0`,
			For:         2 * time.Minute,
			Severity:    Warning,
			Summary:     "An etcd member does not answer linearizable reads.",
			Description: `Member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} has not answered a linearizable read within the probe deadline, from any agent, for 2 minutes (healthy {{ $value }}).`,
		},
		{
			Alert:       "EtcdFollowerLagging",
			Expr:        `min by (cluster, member) (etcdpulse_member_raft_index_lag) > 1000`,
			For:         2 * time.Minute,
			Severity:    Warning,
			Summary:     "An etcd member's raft log lags behind the cluster.",
			Description: `Member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} is {{ $value }} raft entries behind the most advanced member for 2 minutes; past 5000 entries it needs a snapshot to catch up.`,
		},
		{
			Alert:       "EtcdApplyLagging",
			Expr:        `min by (cluster, member) (etcdpulse_member_raft_apply_lag) > 1000`,
			For:         2 * time.Minute,
			Severity:    Warning,
			Summary:     "An etcd member applies committed entries too slowly.",
			Description: `Member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} has {{ $value }} committed raft entries not yet applied for 2 minutes; at 5000 etcd rejects new requests with "too many requests".`,
		},
	}}
}

func diskGroup() Group {
	return Group{Name: "etcdpulse.disk", Rules: []Rule{
		{
			Alert:       "EtcdFsyncStalled",
			Expr:        `max by (cluster, instance) (etcdpulse_disk_fsync_stalled) == 1`,
			For:         15 * time.Second,
			Severity:    Critical,
			Summary:     "An fdatasync on etcd's WAL disk has not returned.",
			Description: `On {{ $labels.instance }} (member ` + localMember + `) of etcd cluster {{ $labels.cluster }}, the agent's fdatasync on the WAL filesystem has been outstanding for {{ range printf "etcdpulse_disk_fsync_stalled_seconds{instance=%q}" $labels.instance | query }}{{ .Value | humanizeDuration }}{{ end }} (stalled {{ $value }}): the disk is hung, and etcd's own WAL writes are stuck behind it.`,
		},
		{
			Alert:       "EtcdFsyncSlow",
			Expr:        `histogram_quantile(0.99, sum by (cluster, instance, le) (rate(etcdpulse_disk_fsync_duration_seconds_bucket[10m]))) > 0.05`,
			For:         10 * time.Minute,
			Severity:    Warning,
			Summary:     "fdatasync on etcd's WAL disk is slow.",
			Description: `On {{ $labels.instance }} (member ` + localMember + `) of etcd cluster {{ $labels.cluster }}, the 99th percentile of the agent's WAL-like fdatasync is {{ $value | humanizeDuration }} over 10 minutes (etcd recommends under 10ms; slow syncs delay heartbeats and, near the election timeout, cost the leadership).`,
		},
		{
			Alert:       "EtcdpulseFsyncProbeRefused",
			Expr:        `max by (cluster, instance, reason) (etcdpulse_disk_fsync_probe_refused) == 1`,
			For:         10 * time.Minute,
			Severity:    Info,
			Summary:     "The agent cannot measure fsync latency on this node.",
			Description: `On {{ $labels.instance }} (member ` + localMember + `) of etcd cluster {{ $labels.cluster }}, the fsync probe refuses to run (reason {{ $labels.reason }}, refused {{ $value }}), so a hung or slow WAL disk would go unseen there.`,
		},
	}}
}

func networkGroup() Group {
	return Group{Name: "etcdpulse.network", Rules: []Rule{
		{
			Alert: "EtcdPeerUnreachable",
			// A member that is down is EtcdMemberUnhealthy's business; this
			// is a healthy member one node cannot reach.
			Expr: `min by (cluster, instance, peer) (etcdpulse_network_peer_up{phase="connect_peer"}) == 0` +
				` unless on (cluster, peer) label_replace(max by (cluster, member) (etcdpulse_member_healthy) == 0, "peer", "$1", "member", "(.*)")`,
			For:         time.Minute,
			Severity:    Warning,
			Summary:     "An etcd node cannot reach a healthy peer's peer port.",
			Description: `From {{ $labels.instance }} (member ` + localMember + `) of etcd cluster {{ $labels.cluster }}, TCP connections to the peer port of member {{ $labels.peer }} have failed for a minute (peer_up {{ $value }}) while that member is healthy: a network partition between the two.`,
		},
		{
			Alert:       "EtcdPeerNetworkSlow",
			Expr:        `histogram_quantile(0.99, sum by (cluster, instance, peer, le) (rate(etcdpulse_network_peer_rtt_seconds_bucket{phase="connect_peer"}[10m]))) > 0.1`,
			For:         10 * time.Minute,
			Severity:    Warning,
			Summary:     "The network between etcd members is slow.",
			Description: `From {{ $labels.instance }} (member ` + localMember + `) of etcd cluster {{ $labels.cluster }}, the 99th percentile TCP connect time to member {{ $labels.peer }}'s peer port is {{ $value | humanizeDuration }} over 10 minutes: high latency or packet loss (a lost SYN costs a second), which delays heartbeats and can cause leader elections.`,
		},
	}}
}

// knownQuota keeps, of a per-agent series of a member's quota (or a
// figure computed from it), the agents that know the member's quota
// (etcdpulse_member_db_quota_source other than default), and every agent
// when none does. On etcd 3.4 and 3.5 only the member's own agent reads
// its quota (from its metrics URL) and the others assume etcd's 2 GiB
// default: the max over agents of a ratio against an assumed quota would
// page for a member that runs with 8 GiB.
func knownQuota(metric string) string {
	return metric + ` and on (cluster, instance, member) etcdpulse_member_db_quota_source{source!="default"} == 1` +
		` or ` + metric + ` unless on (cluster, member) etcdpulse_member_db_quota_source{source!="default"} == 1`
}

var (
	quotaUsedRatio = knownQuota("etcdpulse_member_db_quota_used_ratio")
	quotaBytes     = knownQuota("etcdpulse_member_db_quota_bytes")
)

// assumedQuota says, in a description, when no agent knows the member's
// quota and the figure rests on etcd's default.
const assumedQuota = `{{ if not (printf "etcdpulse_member_db_quota_source{cluster=%q, member=%q, source!=\"default\"}" $labels.cluster $labels.member | query) }} No agent knows this member's quota: it is etcd's default of 2 GiB, assumed (quota source default); if the member runs with another --quota-backend-bytes, set etcd.quota_backend_bytes or etcd.metrics_url.{{ end }}`

func capacityGroup() Group {
	return Group{Name: "etcdpulse.capacity", Rules: []Rule{
		{
			Alert:       "EtcdAlarmActive",
			Expr:        `max by (cluster, member, alarm) (etcdpulse_member_alarm_active) == 1`,
			Severity:    Critical,
			Summary:     "An etcd alarm is active.",
			Description: `Member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} has raised the {{ $labels.alarm }} alarm (active {{ $value }}). NOSPACE: the cluster accepts only reads and deletes until space is freed and the alarm disarmed. CORRUPT: the member's data differs from the others'.`,
		},
		{
			Alert:       "EtcdDatabaseQuotaHigh",
			Expr:        `max by (cluster, member) (` + quotaUsedRatio + `) > 0.75`,
			For:         5 * time.Minute,
			Severity:    Warning,
			Summary:     "An etcd database is past 75% of its quota.",
			Description: `The database of member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} uses {{ $value | humanizePercentage }} of its quota; at 100% etcd raises NOSPACE and refuses writes. Compact and defragment, or raise --quota-backend-bytes.` + assumedQuota,
		},
		{
			Alert:       "EtcdDatabaseQuotaCritical",
			Expr:        `max by (cluster, member) (` + quotaUsedRatio + `) > 0.85`,
			For:         5 * time.Minute,
			Severity:    Critical,
			Summary:     "An etcd database is past 85% of its quota.",
			Description: `The database of member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} uses {{ $value | humanizePercentage }} of its quota; at 100% etcd raises NOSPACE and the Kubernetes API stops accepting writes.` + assumedQuota,
		},
		{
			Alert: "EtcdDatabaseQuotaExhaustionPredicted",
			Expr: `max by (cluster, member) (predict_linear(etcdpulse_member_db_size_bytes[2h], 4 * 3600) - (` + quotaBytes + `)) > 0` +
				` and on (cluster, member) max by (cluster, member) (` + quotaUsedRatio + `) > 0.5`,
			For:         30 * time.Minute,
			Severity:    Warning,
			Summary:     "An etcd database will reach its quota within 4 hours at its current growth.",
			Description: `At the growth of the last 2 hours, the database of member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} will exceed its quota by {{ $value | humanize1024 }}B within 4 hours.` + assumedQuota,
		},
		{
			Alert: "EtcdDataFilesystemFilling",
			Expr: `min by (cluster, instance, dir) (predict_linear(etcdpulse_host_filesystem_free_bytes{dir=~"data|wal"}[6h], 24 * 3600)) < 0` +
				` and on (cluster, instance, dir) min by (cluster, instance, dir) (etcdpulse_host_filesystem_free_bytes{dir=~"data|wal"} / etcdpulse_host_filesystem_size_bytes{dir=~"data|wal"}) < 0.25`,
			For:         30 * time.Minute,
			Severity:    Warning,
			Summary:     "The filesystem of etcd's data will fill up within a day.",
			Description: `On {{ $labels.instance }} (member ` + localMember + `) of etcd cluster {{ $labels.cluster }}, the filesystem of etcd's {{ $labels.dir }} directory has under 25% free and will be full within 24 hours at the rate of the last 6 hours (predicted free space in 24 hours: {{ $value | humanize1024 }}B).`,
		},
		{
			Alert:       "EtcdDataFilesystemFull",
			Expr:        `min by (cluster, instance, dir) (etcdpulse_host_filesystem_free_bytes{dir=~"data|wal"} / etcdpulse_host_filesystem_size_bytes{dir=~"data|wal"}) < 0.05`,
			For:         5 * time.Minute,
			Severity:    Critical,
			Summary:     "The filesystem of etcd's data is almost full.",
			Description: `On {{ $labels.instance }} (member ` + localMember + `) of etcd cluster {{ $labels.cluster }}, the filesystem of etcd's {{ $labels.dir }} directory has {{ $value | humanizePercentage }} free; when it is full etcd cannot write its WAL and stops.`,
		},
	}}
}

func agentGroup() Group {
	return Group{Name: "etcdpulse.agent", Rules: []Rule{
		{
			Alert:       "EtcdpulseAgentMissing",
			Expr:        `count by (cluster) (etcdpulse_up) < on (cluster) max by (cluster) (etcdpulse_cluster_voting_members)`,
			For:         5 * time.Minute,
			Severity:    Warning,
			Summary:     "Fewer etcdpulse agents report than there are etcd voting members.",
			Description: `Only {{ $value }} etcdpulse agents of etcd cluster {{ $labels.cluster }} are scraped, fewer than its voting members: a node's agent is down or not scraped, and faults seen only from that node go unreported.`,
		},
		{
			Alert: "EtcdpulseAgentRefused",
			// While etcd refuses an agent, that agent reports the member's
			// health and the quorum figures as unknown (absent), so that a
			// rotated password or an expired certificate never pages as a
			// lost quorum; this says why they are missing.
			Expr:        `max by (cluster, instance, member, reason) (etcdpulse_agent_refused) == 1`,
			For:         time.Minute,
			Severity:    Warning,
			Summary:     "etcd refuses the etcdpulse agent, or the agent refuses etcd's certificate.",
			Description: `The agent on {{ $labels.instance }} (beside member ` + localMember + `) cannot judge member {{ $labels.member }} of etcd cluster {{ $labels.cluster }}: {{ $labels.reason }} (refused {{ $value }}). Its health and the cluster's quorum are unknown to that agent until its credentials, certificates or role are fixed.`,
		},
		{
			Alert: "EtcdpulseAgentsAbsent",
			// A cluster whose agents all vanished within the last hour, or,
			// when none is left anywhere, no agent at all.
			Expr: `(group by (cluster) (max_over_time(etcdpulse_up[1h])) unless on (cluster) group by (cluster) (etcdpulse_up))` +
				` or (absent(etcdpulse_up) unless on () group(max_over_time(etcdpulse_up[1h])))`,
			For:         5 * time.Minute,
			Severity:    Critical,
			Summary:     "No etcdpulse agent is scraped: etcd is not monitored.",
			Description: `Prometheus has scraped no etcdpulse agent of etcd cluster {{ $labels.cluster }} for 5 minutes (absent {{ $value }}), so no alert about it can fire. Check the agents' DaemonSet and the scrape configuration.`,
		},
	}}
}
