package alerts

import (
	"fmt"
	"time"
)

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

// The data path: the write probe puts a key through each agent's own
// member every 5 s (2 s deadline), and every agent follows its writes on a
// watch of every member. Only agents that write count: a read-only agent
// (etcd.read_only, etcdpulse_write_enabled 0) exports no write, delivery
// or lag series, so it neither fires these rules nor blinds them (a lag of
// 0 from an agent with nothing to follow would win every min), and
// EtcdpulseReadOnly says when no agent of a cluster writes at all.

// agentSide are the failure reasons that are the agent's own doing
// (probes.Reason.AgentSide): a write the agent's role may not make is
// EtcdpulseAgentRefused's business, not etcd failing writes.
const agentSide = `tls.*|authentication|permission_denied|wrong_member`

// writeFailures selects the write probe's failures for etcd's reasons.
const writeFailures = `etcdpulse_probe_failures_total{probe="write", reason!~"` + agentSide + `"}`

// writeReasons lists, in a description, why the writes of the alert's
// cluster (the selector's other matchers narrow it) failed in the last 5
// minutes.
func writeReasons(matchers, args string) string {
	return `{{ range $i, $s := printf "sum by (reason) (increase(etcdpulse_probe_failures_total{` + matchers + `, probe=\"write\"}[5m])) > 0" ` + args + ` | query | sortByLabel "reason" }}{{ if $i }}, {{ end }}{{ $s.Labels.reason }}{{ end }}`
}

// notLearner drops the learners: a learner serves no writes and no
// watches (etcd refuses it every streaming RPC), and catching up after it
// joins is EtcdFollowerLagging's business.
const notLearner = ` unless on (cluster, member) max by (cluster, member) (etcdpulse_member_is_learner) == 1`

// writingAgents keeps the agents that had a write committed in the last
// minute: their lag follows fresh writes.
const writingAgents = `sum by (cluster, instance) (increase(etcdpulse_write_duration_seconds_count[1m])) > 0`

func writesGroup() Group {
	return Group{Name: "etcdpulse.writes", Rules: []Rule{
		{
			Alert: "EtcdWritesFailing",
			// No agent that writes has had a write committed for a minute
			// (12 attempts per agent, each failing within its 2 s
			// deadline), while quorum and a leader look fine: the case no
			// read-based rule sees. A rolling restart, a defragmentation
			// or a leader election stops writes through one member, or
			// all of them for a second or two, never every agent's for a
			// minute. Quorum loss (EtcdQuorumLost), no leader
			// (EtcdNoLeader) and NOSPACE (EtcdAlarmActive) explain failed
			// writes and page already: one page. Writes failing only for
			// the agents' own reasons (a role without write permission)
			// are EtcdpulseAgentRefused. An agent whose writes never
			// succeeded has no write series: its write_enabled counts.
			// Two evaluations in a row: it fires 60-75 s after the last
			// committed write.
			Expr: `count by (cluster) (max by (cluster, instance) (etcdpulse_write_enabled) == 1)` +
				` unless on (cluster) sum by (cluster) (increase(etcdpulse_write_duration_seconds_count[1m])) > 0` +
				` and on (cluster) sum by (cluster) (increase(` + writeFailures + `[1m])) > 0` +
				` unless on (cluster) max by (cluster) (etcdpulse_cluster_fault_tolerance) < 0` +
				` unless on (cluster) max by (cluster) (etcdpulse_cluster_leader_voters) < on (cluster) max by (cluster) (etcdpulse_cluster_quorum_size)` +
				` unless on (cluster) max by (cluster) (etcdpulse_member_alarm_active{alarm="NOSPACE"}) == 1`,
			For:      15 * time.Second,
			Severity: Critical,
			Summary:  "etcd commits no writes although it has quorum and a leader.",
			Description: `None of the {{ $value }} etcdpulse agents of etcd cluster {{ $labels.cluster }} that write has had its probe write committed for a minute, although quorum and a leader are in place: the Kubernetes API cannot persist anything. ` +
				`Write failures in the last 5 minutes by reason: ` + writeReasons(`cluster=%q`, `$labels.cluster`) + `.`,
		},
		{
			Alert: "EtcdMemberWritesFailing",
			// One agent's writes, through its own member, have all failed
			// for 2 minutes, for 1 minute more, while other agents commit
			// theirs: clients of that member (the API server on its node)
			// cannot write. A member down or cut off from quorum fails its
			// reads too and is EtcdMemberUnhealthy's; a rolling restart or
			// a defragmentation stops a member's writes for under a
			// minute, less than the window. All writes failing is
			// EtcdWritesFailing. A learner refuses every write.
			Expr: `sum by (cluster, instance, member) (increase(` + writeFailures + `[2m])) > 0` +
				` unless on (cluster, instance) sum by (cluster, instance) (increase(etcdpulse_write_duration_seconds_count[2m])) > 0` +
				` and on (cluster) sum by (cluster) (increase(etcdpulse_write_duration_seconds_count[2m])) > 0` +
				` unless on (cluster, member) max by (cluster, member) (etcdpulse_member_healthy) == 0` + notLearner,
			For:      time.Minute,
			Severity: Warning,
			Summary:  "Writes through one etcd member fail while the others commit.",
			Description: `On {{ $labels.instance }} (member ` + localMember + `) of etcd cluster {{ $labels.cluster }}, no probe write through member {{ $labels.member }} has been committed for 3 minutes ({{ $value | humanize }} failed in the last 2, by reason: ` +
				writeReasons(`instance=%q`, `$labels.instance`) + `), while the agents beside other members commit theirs and the member answers reads. Its clients, such as the Kubernetes API server on its node, cannot write.`,
		},
		{
			Alert: "EtcdWriteLatencyHigh",
			// The 90th percentile, not the 99th: an agent writes 12 times a
			// minute, so the p99 of 5 minutes is the slowest write of 60,
			// and the pause of one compaction (the API server compacts
			// every 5 minutes) holds it up (tests/benign.yml). A put
			// normally commits in a few milliseconds (two fsyncs and a
			// round trip); 250 ms is ten times etcd's own guidance for a
			// backend commit (25 ms) and a quarter of the API server's
			// one-second goal for writes. The 5-minute window and 10
			// minutes of "for" let a burst of writes of a few minutes
			// pass.
			Expr:        `histogram_quantile(0.9, sum by (cluster, member, le) (rate(etcdpulse_write_duration_seconds_bucket[5m]))) > 0.25`,
			For:         10 * time.Minute,
			Severity:    Warning,
			Summary:     "Writes to etcd are slow.",
			Description: `The 90th percentile of the probe writes committed through member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} has been {{ $value | humanizeDuration }} over 5 minutes, for 10 minutes (a small put normally commits in a few milliseconds): every write waits on the WAL disks and the network of a quorum. Look at fsync and peer latency, the leader's first.`,
		},
		{
			Alert: "EtcdpulseReadOnly",
			// Not a fault: a choice (etcd.read_only) that leaves the
			// write, watch and replication rules without data.
			Expr:        `max by (cluster) (etcdpulse_write_enabled) == 0`,
			For:         10 * time.Minute,
			Severity:    Info,
			Summary:     "No etcdpulse agent writes: write and replication alerts cannot fire.",
			Description: `Every etcdpulse agent of etcd cluster {{ $labels.cluster }} runs read-only (etcd.read_only; write_enabled {{ $value }}), so none writes its probe key: EtcdWritesFailing, EtcdMemberWritesFailing, EtcdWriteLatencyHigh, EtcdReplicationLagging, EtcdWatchDeliverySlow and EtcdWatchStalled cannot fire for it.`,
		},
	}}
}

func replicationGroup() Group {
	return Group{Name: "etcdpulse.replication", Rules: []Rule{
		{
			Alert: "EtcdReplicationLagging",
			// The age of the oldest write the member has not served, for
			// the most optimistic agent among those whose writes commit:
			// an agent whose own writes fail (the one beside a frozen
			// member) has nothing to follow and would report 0. Past 30 s
			// for 30 s, so a member stops serving fresh data for about a
			// minute before this fires, ahead of EtcdMemberUnhealthy's two
			// minutes. A member no agent reaches (down, frozen, a rolling
			// restart) is EtcdMemberUnhealthy's: its lag only counts the
			// outage, and no client reads from it. Back, it catches up in
			// seconds; a defragmentation of tens of seconds stays under
			// the threshold and the "for". A learner catching up is
			// EtcdFollowerLagging's.
			Expr: `min by (cluster, member) (etcdpulse_member_replication_lag_seconds and on (cluster, instance) ` + writingAgents + `) > 30` +
				` unless on (cluster, member) max by (cluster, member) (etcdpulse_member_reachable) == 0` + notLearner,
			For:         30 * time.Second,
			Severity:    Warning,
			Summary:     "An etcd member serves data that is more than 30 seconds old.",
			Description: `Member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} answers, but has not served the agents' writes committed {{ $value | humanizeDuration }} ago, neither on its watch nor in its own revision: its serializable reads and its watchers, such as the Kubernetes API server's watch cache on its node, see the cluster as it was then.`,
		},
		{
			Alert: "EtcdWatchDeliverySlow",
			// The time from a write's commit to its event on the member's
			// watch, which is also the member's replication and apply
			// time; the most optimistic agent, so one agent's slow link to
			// the member does not count. The 90th percentile for the same
			// reason as EtcdWriteLatencyHigh: 12 writes a minute per agent,
			// and a member back from a restart or a defragmentation
			// delivers the writes it missed at once, tens of seconds
			// late. Events normally come within milliseconds; half a
			// second for most of them, for 10 minutes, is a member that
			// keeps falling behind.
			Expr:        `min by (cluster, member) (histogram_quantile(0.9, sum by (cluster, instance, member, le) (rate(etcdpulse_watch_delivery_seconds_bucket[5m])))) > 0.5`,
			For:         10 * time.Minute,
			Severity:    Warning,
			Summary:     "Watch events of an etcd member come late.",
			Description: `Member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} has delivered the agents' writes on its watches {{ $value | humanizeDuration }} after their commit (90th percentile over 5 minutes, for the agent that sees it fastest) for 10 minutes: it applies writes late, and its watchers, such as the Kubernetes API server's watch cache on its node, see changes that late.`,
		},
		{
			Alert: "EtcdWatchStalled",
			// The watch probe reports watch_stalled only after reading from
			// the member itself that it applied a write its watch did not
			// deliver: the agent reaches the member, so no partition can
			// fake it, and one agent seeing it (max) is enough. A member
			// back from a restart may stall for a few seconds while the
			// watch reconnects; stalls in every 2-minute window for 3
			// minutes are not that. A learner has no watch to stall.
			Expr:        `max by (cluster, member) (increase(etcdpulse_probe_failures_total{probe="watch", reason="watch_stalled"}[2m])) > 0` + notLearner,
			For:         3 * time.Minute,
			Severity:    Warning,
			Summary:     "An etcd member's watch does not deliver what the member has applied.",
			Description: `Member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} has applied the agents' writes but its watch has not delivered them, again and again for 5 minutes ({{ $value | humanize }} stalled checks in the last 2 minutes, seen by ` + watchStalledAgents + `). Watchers of this member, such as the Kubernetes API server's watch cache on its node, may miss changes: their caches go stale.`,
		},
	}}
}

// watchStalledAgents names, in a description, the agents whose watch of
// the alert's member stalled in the last 2 minutes.
const watchStalledAgents = `{{ range $i, $s := printf "sum by (instance) (increase(etcdpulse_probe_failures_total{cluster=%q, member=%q, probe=\"watch\", reason=\"watch_stalled\"}[2m])) > 0" $labels.cluster $labels.member | query | sortByLabel "instance" }}{{ if $i }}, {{ end }}{{ $s.Labels.instance }}{{ end }}`

func consistencyGroup() Group {
	return Group{Name: "etcdpulse.consistency", Rules: []Rule{
		{
			Alert: "EtcdMemberDataMismatch",
			// A conclusive check compares HashKV at one revision every
			// member has applied, over the same compact revision: the
			// minority's store differs, which no restart, compaction or
			// defragmentation explains (the check skips or retries those).
			// Any agent's finding pages at once; it stands until that
			// agent's next check, 5 minutes later.
			Expr:        `max by (cluster, member) (etcdpulse_member_hash_mismatch) == 1`,
			Severity:    Critical,
			Summary:     "An etcd member's data differs from the other members'.",
			Description: `The key-value store of member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} differs from the majority's: its HashKV at a revision every member had applied, over the same compact revision, was in the minority in an agent's last hash check (mismatch {{ $value }}). Clients reading from it get different data; do not let it lead, and replace it from the healthy members.`,
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

// Drift: the cluster runs, but not the way it should. Each rule is a
// ticket (warning), held long enough that the planned changes which pass
// through the same state (a rolling upgrade, a member replaced, a learner
// catching up) do not fire it. Drift any agent sees counts (max): only
// the agent that reaches the odd member may see it.

// peerRTT is, per agent, the slowest peer's mean TCP connect time to its
// peer port over 30 minutes: a connect is one round trip (SYN, SYN-ACK),
// and etcd's tuning guide states its limits against the mean round trip.
const peerRTT = `max by (cluster, instance) (sum by (cluster, instance, peer) (rate(etcdpulse_network_peer_rtt_seconds_sum{phase="connect_peer"}[30m])) / sum by (cluster, instance, peer) (rate(etcdpulse_network_peer_rtt_seconds_count{phase="connect_peer"}[30m])))`

// measuredQuota keeps the quotas an agent knows rather than assumes: from
// the member's status (etcd 3.6 and later) or the local member's metrics
// URL.
const measuredQuota = `etcdpulse_member_db_quota_bytes and on (cluster, instance, member) etcdpulse_member_db_quota_source{source=~"status|metrics_url"} == 1`

func driftGroup() Group {
	return Group{Name: "etcdpulse.drift", Rules: []Rule{
		{
			Alert: "EtcdVersionsDiffer",
			// A rolling upgrade has members on two versions by design: one
			// member at a time is stopped, replaced and waited for, a few
			// minutes each; kubeadm and cluster-api upgrade the control
			// plane node by node, drains included, in well under an hour
			// for 3 or 5 nodes. An hour past that is an upgrade that
			// stopped half way (prometheusRule.customRules can lengthen
			// it for slower change windows).
			Expr:        `max by (cluster) (etcdpulse_cluster_versions) > 1`,
			For:         time.Hour,
			Severity:    Warning,
			Summary:     "etcd members run different versions for longer than an upgrade takes.",
			Description: `The members of etcd cluster {{ $labels.cluster }} have run {{ $value }} different etcd versions for an hour (` + memberVersions + `): an upgrade or a downgrade stopped half way. Members of different versions run at the oldest one's cluster version, without the newer one's features and fixes.`,
		},
		{
			Alert: "EtcdQuotasDiffer",
			// On etcd 3.6 and later every agent knows every member's
			// quota (its status); before, only the local member's, from
			// its metrics URL: then the quotas are compared across
			// agents. A quota is changed by restarting each member with
			// the new flag, a rolling restart as long as an upgrade.
			Expr:        `max by (cluster) (etcdpulse_cluster_db_quotas) > 1 or count by (cluster) (count_values by (cluster) ("quota", ` + measuredQuota + `)) > 1`,
			For:         time.Hour,
			Severity:    Warning,
			Summary:     "etcd members run with different backend quotas.",
			Description: `The members of etcd cluster {{ $labels.cluster }} enforce {{ $value }} different backend quotas (` + memberQuotas + `): the member with the smallest raises NOSPACE, and the cluster refuses writes, while the others have room. Give every member the same --quota-backend-bytes.`,
		},
		{
			Alert: "EtcdEvenVotingMembers",
			// A member replaced by adding the new one first, or a cluster
			// grown from 3 to 5, has 4 voters for minutes.
			Expr:        `max by (cluster) (etcdpulse_cluster_voting_members) and on (cluster) max by (cluster) (etcdpulse_cluster_voting_members_even) == 1`,
			For:         30 * time.Minute,
			Severity:    Warning,
			Summary:     "etcd has an even number of voting members.",
			Description: `etcd cluster {{ $labels.cluster }} has had {{ $value }} voting members for 30 minutes: an even number tolerates no more failures than one member fewer, and each commit waits for one more member. Add a member, or remove one.`,
		},
		{
			Alert: "EtcdLearnerNotPromoted",
			// The agent that has seen the learner longest: an agent
			// restarted counts from its start. A learner catches up in
			// minutes (a snapshot and the entries after it).
			Expr:        `max by (cluster, member) (etcdpulse_member_learner_seconds) > 3600`,
			Severity:    Warning,
			Summary:     "An etcd learner has not been promoted for over an hour.",
			Description: `Member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} has been a learner for {{ $value | humanizeDuration }} (as long as an agent has watched): it does not vote, so it adds no fault tolerance. Promote it once it has caught up (etcdctl member promote), or remove it.`,
		},
		{
			Alert: "EtcdRaftTimeoutsTooShort",
			// etcd's tuning guide (https://etcd.io/docs/v3.5/tuning/): the
			// heartbeat interval around the round trip between members,
			// 0.5 to 1.5 times it, the election timeout at least 10 times
			// it. Below, heartbeats arrive late and followers start
			// elections. Only the short side: a LAN's round trip is well
			// under etcd's 100 ms default heartbeat, and that is fine.
			Expr: peerRTT + ` > on (cluster, instance) max by (cluster, instance) (etcdpulse_etcd_election_timeout_seconds) / 10` +
				` or ` + peerRTT + ` > on (cluster, instance) max by (cluster, instance) (etcdpulse_etcd_heartbeat_interval_seconds) * 2`,
			For:         15 * time.Minute,
			Severity:    Warning,
			Summary:     "etcd's heartbeat interval or election timeout is short for the round trip between members.",
			Description: `From {{ $labels.instance }} (member ` + localMember + `) of etcd cluster {{ $labels.cluster }}, the mean round trip to the slowest peer is {{ $value | humanizeDuration }} over 30 minutes, while the member runs with a heartbeat interval of ` + localSetting("etcdpulse_etcd_heartbeat_interval_seconds") + ` and an election timeout of ` + localSetting("etcdpulse_etcd_election_timeout_seconds") + `: etcd's tuning guide asks for a heartbeat of at least half the round trip and an election timeout of at least 10 times it, or heartbeats come late and followers start elections.`,
		},
		{
			Alert: "EtcdCorruptionChecksOff",
			// Flags change only with a restart: an hour lets a rolling
			// restart that turns them on finish.
			Expr: `min by (cluster, instance) (etcdpulse_etcd_corrupt_check_enabled{check="initial"}) == 0` +
				` or max by (cluster, instance) (etcdpulse_etcd_corrupt_check_enabled{check=~"periodic|compact_hash"}) == 0`,
			For:         time.Hour,
			Severity:    Info,
			Summary:     "etcd runs without its corruption checks.",
			Description: `On {{ $labels.instance }} (member ` + localMember + `) of etcd cluster {{ $labels.cluster }}, etcd runs without these corruption checks: ` + checksOff + ` (enabled {{ $value }}). A member whose data diverges would serve it undetected by etcd (etcdpulse's own hash check still compares the members). Enable the InitialCorruptCheck and CompactHashCheck feature gates (3.6+), or --experimental-initial-corrupt-check and --experimental-compact-hash-check-enabled (3.5).`,
		},
		{
			Alert: "EtcdDowngradeInProgress",
			// A downgrade is one rolling restart onto the older binary, as
			// long as an upgrade.
			Expr:        `max by (cluster) (etcdpulse_cluster_downgrade_enabled) == 1`,
			For:         time.Hour,
			Severity:    Warning,
			Summary:     "An etcd downgrade has been enabled for over an hour.",
			Description: `etcd cluster {{ $labels.cluster }} has had a downgrade enabled for an hour (enabled {{ $value }}): finish it, every member on the target version, or cancel it (etcdctl downgrade cancel). Meanwhile members of the current version cannot join.`,
		},
		{
			Alert: "EtcdClusterIdMismatch",
			// No planned change does this: 5 minutes rides out a
			// misreported status.
			Expr:        `max by (cluster) (etcdpulse_cluster_ids) > 1`,
			For:         5 * time.Minute,
			Severity:    Warning,
			Summary:     "etcd members answer with different cluster IDs.",
			Description: `The members in the member list of etcd cluster {{ $labels.cluster }} answer with {{ $value }} different cluster IDs: a client URL leads to a member of another etcd cluster (a reused address, a wrong --advertise-client-urls). Clients balanced over these URLs read and write another cluster's data.`,
		},
	}}
}

// memberVersions lists, in a description, the versions the members of the
// alert's cluster report.
const memberVersions = `{{ range $i, $s := printf "count by (version) (max by (member, version) (etcdpulse_member_info{cluster=%q, version!=\"\"}))" $labels.cluster | query | sortByLabel "version" }}{{ if $i }}, {{ end }}{{ $s.Labels.version }} on {{ $s.Value }}{{ end }}`

// memberQuotas lists, in a description, each member's known quota.
const memberQuotas = `{{ range $i, $s := printf "max by (member) (etcdpulse_member_db_quota_bytes{cluster=%q} and on (cluster, instance, member) etcdpulse_member_db_quota_source{source=~\"status|metrics_url\"} == 1)" $labels.cluster | query | sortByLabel "member" }}{{ if $i }}, {{ end }}{{ $s.Labels.member }} {{ $s.Value | humanize1024 }}B{{ end }}`

// localSetting prints, in a description, a setting of the alert's
// instance's member, as a duration.
func localSetting(metric string) string {
	return `{{ range printf "` + metric + `{instance=%q}" $labels.instance | query }}{{ .Value | humanizeDuration }}{{ end }}`
}

// checksOff lists, in a description, the corruption checks off on the
// alert's instance.
const checksOff = `{{ range $i, $s := printf "etcdpulse_etcd_corrupt_check_enabled{instance=%q} == 0" $labels.instance | query | sortByLabel "check" }}{{ if $i }}, {{ end }}{{ $s.Labels.check }}{{ end }}`

// Certificates: each expiry once, however many agents read it. A member's
// served certificate is the same from every agent (min by member and
// port); the agent's own and the files of certificates.dir are the node's
// (by instance).
func certificatesGroup() Group {
	return Group{Name: "etcdpulse.certificates", Rules: []Rule{
		{
			Alert: "EtcdCertificateExpiring",
			// kubeadm's certificates last a year and are renewed by
			// upgrades; k3s and RKE2 renew theirs at restart within 90
			// (RKE2: 120) days of expiry. 30 days left is a renewal that
			// did not happen, with time to plan one.
			Expr:        certExpiresWithin(30),
			For:         15 * time.Minute,
			Severity:    Warning,
			Summary:     "An etcd certificate expires within 30 days.",
			Description: certDescription + ` Renew it in the coming weeks.`,
		},
		{
			Alert:       "EtcdCertificateExpiringCritical",
			Expr:        certExpiresWithin(7),
			For:         15 * time.Minute,
			Severity:    Critical,
			Summary:     "An etcd certificate expires within 7 days.",
			Description: certDescription + ` Once it has expired, etcd refuses the connections it secures: clients (the API server), peers (raft) or this agent. Renew it now.`,
		},
		{
			Alert: "EtcdCertificateCaMismatch",
			// The agent's CA, or a CA certificate of certificates.dir
			// (the chart's presets set it to the distribution's etcd PKI
			// directory, which holds k3s's and RKE2's peer CA).
			Expr:        `max by (cluster, member, port) (etcdpulse_member_certificate_ca_mismatch) == 1`,
			For:         15 * time.Minute,
			Severity:    Warning,
			Summary:     "An etcd member serves a certificate from another CA.",
			Description: `Member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} serves, on its {{ $labels.port }} port, a certificate that does not chain to the agents' CA nor to a CA of their certificates.dir (mismatch {{ $value }}): a certificate renewed from the wrong CA, or a CA rotated on some members only. Clients or peers that trust only the cluster's CA refuse it.`,
		},
	}}
}

// certExpiresWithin: the seconds left of each certificate under n days.
func certExpiresWithin(n int) string {
	limit := fmt.Sprintf(" - time() < %d * 86400", n)
	return `min by (cluster, member, port) (etcdpulse_certificate_not_after_timestamp_seconds{source="member"})` + limit +
		` or min by (cluster, instance, source, file) (etcdpulse_certificate_not_after_timestamp_seconds{source!="member"})` + limit
}

// certDescription names the certificate and its time left.
const certDescription = `{{ if $labels.member }}The certificate member {{ $labels.member }} of etcd cluster {{ $labels.cluster }} serves on its {{ $labels.port }} port{{ else if eq $labels.source "agent" }}The etcdpulse agent's client certificate on {{ $labels.instance }} (beside member ` + localMember + ` of etcd cluster {{ $labels.cluster }}){{ else }}The certificate {{ $labels.file }} of certificates.dir on {{ $labels.instance }} (beside member ` + localMember + ` of etcd cluster {{ $labels.cluster }}){{ end }} {{ if lt $value 0.0 }}has expired{{ else }}expires in {{ $value | humanizeDuration }}{{ end }}.`

// Backups: each directory of backups.dirs is a node's (by instance, dir).
// A snapshot is daily at the least (k3s and RKE2 take one every 12 hours
// by default, a CronJob usually daily): 25 hours is one missed daily
// backup with an hour's slack for a late or slow one, and two missed k3s
// ones.
func backupsGroup() Group {
	return Group{Name: "etcdpulse.backups", Rules: []Rule{
		{
			Alert:       "EtcdBackupTooOld",
			Expr:        `time() - max by (cluster, instance, dir) (etcdpulse_backup_last_timestamp_seconds) > 25 * 3600`,
			For:         15 * time.Minute,
			Severity:    Warning,
			Summary:     "The newest etcd snapshot is more than 25 hours old.",
			Description: `The newest snapshot in {{ $labels.dir }} on {{ $labels.instance }} (beside member ` + localMember + ` of etcd cluster {{ $labels.cluster }}) was taken {{ $value | humanizeDuration }} ago: the backup job has stopped, or writes elsewhere. A restore now would lose everything since.`,
		},
		{
			Alert: "EtcdBackupMissing",
			// No snapshot now, and either there was one within 25 hours
			// (deleted, or the directory's mount lost) or there was none
			// 25 hours ago either: a directory configured before its
			// first backup does not fire for a day.
			Expr: `max by (cluster, instance, dir) (etcdpulse_backup_snapshots) == 0` +
				` and (max by (cluster, instance, dir) (max_over_time(etcdpulse_backup_snapshots[25h])) > 0` +
				` or max by (cluster, instance, dir) (etcdpulse_backup_snapshots offset 25h) == 0)`,
			For:         15 * time.Minute,
			Severity:    Warning,
			Summary:     "A directory of etcd snapshots holds none.",
			Description: `{{ $labels.dir }} on {{ $labels.instance }} (beside member ` + localMember + ` of etcd cluster {{ $labels.cluster }}) holds no snapshot ({{ $value }} files): it is missing, unreadable or empty, and has been for a day, or its snapshots vanished. There is no backup to restore from there.`,
		},
		{
			Alert:       "EtcdBackupCorrupt",
			Expr:        `max by (cluster, instance, dir) (etcdpulse_backup_status{status="corrupt"}) == 1`,
			For:         5 * time.Minute,
			Severity:    Warning,
			Summary:     "The newest etcd snapshot is corrupt.",
			Description: `The newest snapshot in {{ $labels.dir }} on {{ $labels.instance }} (beside member ` + localMember + ` of etcd cluster {{ $labels.cluster }}) is corrupt (status {{ $value }}): its sha256 trailer does not match, it is truncated, or its database or compressed container cannot be read. It cannot be restored; the agent's log and etcdpulse check say which file and why.`,
		},
		{
			Alert:       "EtcdBackupMismatch",
			Expr:        `max by (cluster, instance, dir) (etcdpulse_backup_status{status="mismatched"}) == 1`,
			For:         5 * time.Minute,
			Severity:    Warning,
			Summary:     "The newest etcd snapshot does not hold the cluster's data.",
			Description: `The newest snapshot in {{ $labels.dir }} on {{ $labels.instance }} (beside member ` + localMember + ` of etcd cluster {{ $labels.cluster }}) is intact (mismatched {{ $value }}), but its key-value store differs from the cluster's at its revision (HashKV), or its revision is ahead of the cluster's: a snapshot of another cluster, or of history this cluster no longer has. Restoring it would not bring back this cluster.`,
		},
	}}
}

// The key space group's figures. Each agent counts its own member's key
// space; the rules take the largest figure of any agent.
const (
	// keyspaceGrowth is each resource's growth in keys per second over
	// the last hour (the counts change every keyspace.interval).
	keyspaceGrowth = `max by (cluster, resource) (deriv(etcdpulse_keyspace_resource_keys{resource!="other"}[1h]))`
	// keyspaceBytesPerKey is the database's bytes in use per key counted
	// (every resource, "other" included), of the fullest member: an
	// average that includes the history not yet compacted, so it errs
	// high.
	keyspaceBytesPerKey = `max by (cluster) (etcdpulse_member_db_size_in_use_bytes) / max by (cluster) (sum by (cluster, instance) (etcdpulse_keyspace_resource_keys))`
)

// keyspaceHeadroom is the space left under the quota of the member with
// the least.
var keyspaceHeadroom = `min by (cluster) ((` + quotaBytes + `) - etcdpulse_member_db_size_bytes)`

func keyspaceGroup() Group {
	return Group{Name: "etcdpulse.keyspace", Rules: []Rule{
		{
			Alert: "EtcdKeyspaceResourceGrowing",
			// The keys one resource gained an hour, carried over a day
			// at the database's bytes per key, against the room left
			// under the quota; at least 1,000 keys an hour, so that a
			// database already near its quota (which the quota alerts
			// report) does not name every resource that gains a few
			// keys; and still growing over the last 20 minutes (two
			// walks at the default interval) for 45 minutes, so that a
			// rollout's burst of events, which stops within minutes and
			// is expired by --event-ttl, does not fire.
			Expr: keyspaceGrowth + ` * 86400 * on (cluster) group_left () (` + keyspaceBytesPerKey + `)` +
				` > on (cluster) group_left () ` + keyspaceHeadroom +
				` and on (cluster, resource) ` + keyspaceGrowth + ` * 3600 > 1000` +
				` and on (cluster, resource) max by (cluster, resource) (deriv(etcdpulse_keyspace_resource_keys{resource!="other"}[20m])) > 0`,
			For:      45 * time.Minute,
			Severity: Warning,
			Summary:  "One Kubernetes resource grows fast enough to fill the etcd quota within a day.",
			Description: `Resource {{ $labels.resource }} of etcd cluster {{ $labels.cluster }} gained {{ range printf "max(deriv(etcdpulse_keyspace_resource_keys{cluster=%q, resource=%q}[1h])) * 3600" $labels.cluster $labels.resource | query }}{{ .Value | humanize }}{{ end }} keys an hour over the last hour; at that pace, and at the database's average bytes per key, it alone adds {{ $value | humanize1024 }}B within 24 hours, more than the room left under the quota of the fullest member. ` +
				`Find its objects (etcdctl get --prefix --keys-only, kubectl get) and what creates them: the runbook has the commands.`,
		},
	}}
}
