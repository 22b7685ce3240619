package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The slow failures: certificates that expire, backups that stop or would
// not restore, and a cluster configured unlike itself. Nothing here pages within minutes; it is the board to look
// at before a maintenance window, and after an upgrade.

func safety() (dashboard.Dashboard, error) {
	return finish(newDashboard("etcdpulse-safety", "etcdpulse / Certificates, backups and configuration",
		"The slow failures: certificates near expiry (the agent's, each member's client and peer ports, and the certificate directory), backups (the newest snapshot of each directory of backups.dirs: its age and whether it restores this cluster's data), and configuration drift across members (versions, quotas, voters, learners, raft timing against the peer round trip, corruption checks, downgrades, cluster IDs).").
		WithRow(dashboard.NewRowBuilder("Certificates")).
		WithPanel(certSoonestStat()).
		WithPanel(certCAMismatchStat()).
		WithPanel(certClientRequiredStat()).
		WithPanel(certExpiryTable()).
		WithRow(dashboard.NewRowBuilder("Backups")).
		WithPanel(backupOldestStat()).
		WithPanel(backupProblemsStat()).
		WithPanel(backupStatusTable()).
		WithPanel(backupAgeTimeseries()).
		WithPanel(backupSizeTimeseries()).
		WithRow(dashboard.NewRowBuilder("Configuration drift")).
		WithPanel(etcdVersionsStat()).
		WithPanel(quotasStat()).
		WithPanel(evenVotersStat()).
		WithPanel(clusterIDsStat()).
		WithPanel(downgradeStat()).
		WithPanel(corruptChecksStat()).
		WithPanel(learnerAgeTimeseries()).
		WithPanel(raftTimingTimeseries()))
}

// certLeft is the time left on each certificate: a member's, once per
// member and port whichever agent read it; the agent's own and the
// directory's, per node.
var certLeft = `min by (cluster, member, port) (` + cluster("etcdpulse_certificate_not_after_timestamp_seconds", `source="member"`) + `) - time()` +
	` or min by (cluster, instance, source, file) (` + node("etcdpulse_certificate_not_after_timestamp_seconds", `source!="member"`) + `) - time()`

func certSoonestStat() *stat.PanelBuilder {
	return defaultStat("Soonest certificate expiry",
		"Time left on the certificate that expires first: the agent's client certificate, each member's client and peer port certificates (read from a TLS handshake), and the files of certificates.dir. Warning at 30 days, critical at 7.",
		"s", "EtcdCertificateExpiring", "EtcdCertificateExpiringCritical").
		Span(8).
		Thresholds(thresholds("red", step{7 * 86400, "orange"}, step{30 * 86400, "green"})).
		WithTarget(instantQuery(`min(`+certLeft+`)`, "soonest"))
}

func certCAMismatchStat() *stat.PanelBuilder {
	return defaultStat("Certificates from another CA",
		"Member ports whose certificate does not verify against the agent's CA (nor a CA of certificates.dir): a member re-issued by another CA, or the agent given the wrong CA file.",
		"none", "EtcdCertificateCaMismatch").
		Span(8).
		Decimals(0).
		Thresholds(thresholds("green", step{1, "orange"})).
		WithTarget(instantQuery(`count(max by (cluster, member, port) (`+cluster("etcdpulse_member_certificate_ca_mismatch")+`) == 1) or vector(0)`, "ports"))
}

func certClientRequiredStat() *stat.PanelBuilder {
	return defaultStat("Ports requiring a client certificate",
		"Member ports that demand a client certificate the agent does not hold (peer ports with --peer-client-cert-auth): their certificate is still read from the handshake.",
		"none").
		Span(8).
		Decimals(0).
		Thresholds(thresholds("green")).
		WithTarget(instantQuery(`count(max by (cluster, member, port) (`+cluster("etcdpulse_member_certificate_status", `status="client_cert_required"`)+`) == 1) or vector(0)`, "ports"))
}

func certExpiryTable() *table.PanelBuilder {
	return defaultTable("Certificates by time left",
		"Every certificate the agents read, soonest first: members' ports by member and port, the agent's own and certificates.dir files by node and file.",
		"s", "EtcdCertificateExpiring", "EtcdCertificateExpiringCritical").
		WithTarget(tableQuery(`sort(` + certLeft + `)`))
}

func etcdVersionsStat() *stat.PanelBuilder {
	return defaultStat("etcd versions",
		"Distinct etcd server versions among the members. More than one is expected during a rolling upgrade, not for longer.",
		"none", "EtcdVersionsDiffer").
		Span(4).
		Decimals(0).
		Thresholds(thresholds("green", step{2, "orange"})).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_versions")+`)`, "{{cluster}}"))
}

func quotasStat() *stat.PanelBuilder {
	return defaultStat("Backend quotas",
		"Distinct --quota-backend-bytes among the members whose quota is known (their status, or their own agent's metrics URL). A member with a smaller quota raises NOSPACE first.",
		"none", "EtcdQuotasDiffer").
		Span(4).
		Decimals(0).
		Thresholds(thresholds("green", step{2, "orange"})).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_db_quotas")+`)`, "{{cluster}}"))
}

func evenVotersStat() *stat.PanelBuilder {
	return defaultStat("Voting members",
		"Whether the number of voting members is even: 4 voters tolerate one failure, as 3 do, with one more member to fail.",
		"none", "EtcdEvenVotingMembers").
		Span(4).
		Mappings(okMappings("Odd", "Even")).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_voting_members_even")+`) == bool 0`, "{{cluster}}"))
}

func clusterIDsStat() *stat.PanelBuilder {
	return defaultStat("Cluster IDs",
		"Distinct cluster IDs the members report: more than one means an endpoint belongs to another etcd cluster.",
		"none", "EtcdClusterIdMismatch").
		Span(4).
		Decimals(0).
		Thresholds(thresholds("green", step{2, "red"})).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_ids")+`)`, "{{cluster}}"))
}

func downgradeStat() *stat.PanelBuilder {
	return defaultStat("Downgrade",
		"Whether a cluster downgrade is enabled (etcd 3.6 and later report it).",
		"none", "EtcdDowngradeInProgress").
		Span(4).
		Mappings(okMappings("None", "Enabled")).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_downgrade_enabled")+`) == bool 0`, "{{cluster}}"))
}

func corruptChecksStat() *stat.PanelBuilder {
	return defaultStat("Members without corruption checks",
		"Agents whose member runs without etcd's initial corruption check, or without both runtime checks (periodic, compact_hash). etcd ships with them off; etcdpulse's hash check compares the members regardless.",
		"none", "EtcdCorruptionChecksOff").
		Span(4).
		Decimals(0).
		Thresholds(thresholds("green", step{1, "blue"})).
		WithTarget(instantQuery(`count(min by (cluster, instance) (`+node("etcdpulse_etcd_corrupt_check_enabled", `check="initial"`)+`) == 0 or max by (cluster, instance) (`+node("etcdpulse_etcd_corrupt_check_enabled", `check=~"periodic|compact_hash"`)+`) == 0) or vector(0)`, "members"))
}

func learnerAgeTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Learners: time since first seen",
		"How long each learner has been a learner, as long as an agent has watched it (etcd does not say when a member was added). A learner is promoted once caught up; one left for an hour is forgotten.",
		"s", "EtcdLearnerNotPromoted").
		WithTarget(prometheusQuery(`max by (cluster, member) (`+cluster("etcdpulse_member_learner_seconds")+`)`, "{{member}}"))
}

func raftTimingTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Raft timing against the peer round trip",
		"Each member's heartbeat interval and election timeout, read from its flags, beside the mean round trip (TCP connect) to its slowest peer. etcd's tuning guide: heartbeat about the round trip, election timeout at least 10 times it.",
		"s", "EtcdRaftTimeoutsTooShort").
		WithTarget(prometheusQuery(`max by (instance) (`+node("etcdpulse_etcd_heartbeat_interval_seconds")+`)`, "heartbeat {{instance}}")).
		WithTarget(prometheusQuery(`max by (instance) (`+node("etcdpulse_etcd_election_timeout_seconds")+`)`, "election timeout {{instance}}")).
		WithTarget(prometheusQuery(`max by (instance) (sum by (instance, peer) (`+rate(node("etcdpulse_network_peer_rtt_seconds_sum", `phase="connect_peer"`))+`) / sum by (instance, peer) (`+rate(node("etcdpulse_network_peer_rtt_seconds_count", `phase="connect_peer"`))+`))`, "slowest peer RTT {{instance}}"))
}

// backupAge is the age of each directory's newest snapshot.
var backupAge = `time() - max by (cluster, instance, dir) (` + node("etcdpulse_backup_last_timestamp_seconds") + `)`

func backupOldestStat() *stat.PanelBuilder {
	return defaultStat("Oldest newest backup",
		"Age of the newest snapshot of the directory whose newest is the oldest (every directory of backups.dirs on the chosen nodes); a directory with no snapshot shows as none. Warning over 25 hours: a daily backup missed.",
		"s", "EtcdBackupTooOld", "EtcdBackupMissing").
		Span(6).
		Thresholds(thresholds("green", step{25 * 3600, "orange"})).
		WithTarget(instantQuery(`max(`+backupAge+`)`, "oldest"))
}

func backupProblemsStat() *stat.PanelBuilder {
	return defaultStat("Backups that would not restore",
		"Directories whose newest snapshot is corrupt (sha256 trailer, truncated, unreadable database or compressed container) or mismatched (its HashKV at its revision differs from the cluster's, or it is ahead of the cluster), or that hold no snapshot.",
		"none", "EtcdBackupCorrupt", "EtcdBackupMismatch", "EtcdBackupMissing").
		Span(6).
		Decimals(0).
		Thresholds(thresholds("green", step{1, "red"})).
		WithTarget(instantQuery(`count(max by (cluster, instance, dir) (`+node("etcdpulse_backup_status", `status=~"corrupt|mismatched"`)+`) == 1 or max by (cluster, instance, dir) (`+node("etcdpulse_backup_snapshots")+`) == 0) or vector(0)`, "directories"))
}

func backupStatusTable() *table.PanelBuilder {
	return defaultTable("Newest snapshot by directory",
		"Each directory's newest snapshot and its check: verified (its hash at its revision is the cluster's), unverifiable (the cluster has compacted its revision), mismatched, corrupt, compressed (container and trailer intact, store not hashed), unchecked (not checked yet, or the check could not finish: the agent's log says why). The value is the snapshot's revision.",
		"none", "EtcdBackupCorrupt", "EtcdBackupMismatch").
		Span(12).
		WithTarget(tableQuery(`max by (cluster, instance, dir, status) (` + node("etcdpulse_backup_status") + ` == 1) * on (cluster, instance, dir) group_left max by (cluster, instance, dir) (` + node("etcdpulse_backup_last_revision") + `) or max by (cluster, instance, dir, status) (` + node("etcdpulse_backup_status") + ` == 1)`))
}

func backupAgeTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Newest snapshot age",
		"Age of each directory's newest snapshot: a saw tooth whose teeth are the backup schedule; a line that keeps rising is a backup job that stopped.",
		"s", "EtcdBackupTooOld"), "transparent", step{25 * 3600, "orange"}).
		WithTarget(prometheusQuery(backupAge, "{{instance}} {{dir}}"))
}

func backupSizeTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Newest snapshot size",
		"Size of each directory's newest snapshot file: it follows the database size; a sudden drop is a snapshot of something else, or a truncated one.",
		"bytes").
		WithTarget(prometheusQuery(`max by (cluster, instance, dir) (`+node("etcdpulse_backup_last_size_bytes")+`)`, "{{instance}} {{dir}}"))
}
