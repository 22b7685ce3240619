// Package collectors turns the probes' latest results into Prometheus
// metrics at scrape time. A scrape never calls etcd.
package collectors

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Type is a metric's Prometheus type.
type Type string

// The metric types the catalogue uses.
const (
	Gauge     Type = "gauge"
	Counter   Type = "counter"
	Histogram Type = "histogram"
)

// Metric is one row of the catalogue: every metric etcdpulse exports.
type Metric struct {
	Name   string
	Type   Type
	Help   string
	Labels []string
	// Group orders the reference documentation.
	Group string
}

// Desc returns the metric's Prometheus descriptor.
func (m Metric) Desc() *prometheus.Desc {
	return prometheus.NewDesc(m.Name, m.Help, m.Labels, nil)
}

// The catalogue. Alert rules, dashboards and docs/metrics.md read it; add a
// metric here first.
var (
	Up = Metric{"etcdpulse_up", Gauge,
		"1 when the local etcd member answered its last status probe, else 0.", nil, "agent"}
	BuildInfo = Metric{"etcdpulse_build_info", Gauge,
		"A metric with a constant '1' value labeled by version, revision, branch, goversion from which etcdpulse was built, and the goos and goarch for the build.",
		[]string{"branch", "goarch", "goos", "goversion", "revision", "tags", "version"}, "agent"}
	LastRound = Metric{"etcdpulse_last_round_timestamp_seconds", Gauge,
		"Unix time at which the agent last evaluated a probe round.", nil, "agent"}
	Requests = Metric{"etcdpulse_etcd_requests_total", Counter,
		"gRPC requests the agent sent to etcd, by member and method: the agent's own load on etcd.",
		[]string{"member", "method"}, "agent"}
	AgentRefused = Metric{"etcdpulse_agent_refused", Gauge,
		"1 while the member refuses the agent, or the agent refuses the member's certificate, by reason: tls_certificate_expired, tls_unknown_authority, tls_name_mismatch, tls_bad_certificate, tls, authentication, permission_denied; absent otherwise. While the member's status or health read is refused, its health is unknown, not bad: etcdpulse_member_healthy and the quorum figures are absent rather than wrong.",
		[]string{"member", "reason"}, "agent"}

	HasLeader = Metric{"etcdpulse_cluster_has_leader", Gauge,
		"1 when the reachable members agree on one leader in one term, else 0; absent while members that refuse the agent (etcdpulse_agent_refused) could change the answer.", nil, "cluster"}
	LeaderVoters = Metric{"etcdpulse_cluster_leader_voters", Gauge,
		"Reachable voting members that report the same leader in the same term, the largest such group, the leader included. The leader commits while this is at least the quorum size, even when one cut-off member reports no leader (has_leader 0).", nil, "cluster"}
	LeaderDisagreement = Metric{"etcdpulse_cluster_leader_disagreement", Gauge,
		"1 when reachable members report different leaders or terms, else 0.", nil, "cluster"}
	LeaderChanges = Metric{"etcdpulse_cluster_leader_changes_total", Counter,
		"Leader changes the agent observed: a new agreed leader, or the same one in a new term.", nil, "cluster"}
	Term = Metric{"etcdpulse_cluster_raft_term", Gauge,
		"Raft term of the agreed leader, or of the last agreed leader while there is none.", nil, "cluster"}
	Members = Metric{"etcdpulse_cluster_members", Gauge,
		"Members in etcd's member list, learners included.", nil, "cluster"}
	VotingMembers = Metric{"etcdpulse_cluster_voting_members", Gauge,
		"Voting members (not learners) in etcd's member list.", nil, "cluster"}
	HealthyVotingMembers = Metric{"etcdpulse_cluster_healthy_voting_members", Gauge,
		"Voting members that answered their last linearizable read within the probe deadline.", nil, "cluster"}
	QuorumSize = Metric{"etcdpulse_cluster_quorum_size", Gauge,
		"Voting members needed for quorum: floor(voting members / 2) + 1.", nil, "cluster"}
	FaultTolerance = Metric{"etcdpulse_cluster_fault_tolerance", Gauge,
		"Healthy voting members minus quorum size: 0 means one more failure loses quorum, negative means quorum is lost.", nil, "cluster"}

	MemberInfo = Metric{"etcdpulse_member_info", Gauge,
		"Constant 1 per member, labelled with its hex ID and the etcd version it last reported.",
		[]string{"member", "member_id", "version"}, "member"}
	LocalMemberInfo = Metric{"etcdpulse_local_member_info", Gauge,
		"Constant 1 naming the member this agent sits beside, once it has answered; joins node-level metrics to a member.",
		[]string{"member", "member_id"}, "member"}
	MemberReachable = Metric{"etcdpulse_member_reachable", Gauge,
		"1 when the member answered its last status probe, else 0; absent while it refuses the agent (etcdpulse_agent_refused).", []string{"member"}, "member"}
	MemberHealthy = Metric{"etcdpulse_member_healthy", Gauge,
		"1 when a voting member answered its last linearizable read within the probe deadline, or a learner its last serializable read with the leader's entries of a round before applied, else 0; absent while it refuses the agent (etcdpulse_agent_refused).", []string{"member"}, "member"}
	MemberIsLeader = Metric{"etcdpulse_member_is_leader", Gauge,
		"1 when the member is the agreed leader, else 0.", []string{"member"}, "member"}
	MemberIsLearner = Metric{"etcdpulse_member_is_learner", Gauge,
		"1 when the member is a learner (non-voting), else 0.", []string{"member"}, "member"}
	MemberRaftTerm = Metric{"etcdpulse_member_raft_term", Gauge,
		"Raft term the member reported.", []string{"member"}, "member"}
	MemberRaftIndexLag = Metric{"etcdpulse_member_raft_index_lag", Gauge,
		"Raft entries the member's committed index is behind the highest committed index any reachable member reported.", []string{"member"}, "member"}
	MemberApplyLag = Metric{"etcdpulse_member_raft_apply_lag", Gauge,
		"Raft entries the member has committed but not yet applied.", []string{"member"}, "member"}
	MemberDBSize = Metric{"etcdpulse_member_db_size_bytes", Gauge,
		"Physical size of the member's backend database.", []string{"member"}, "member"}
	MemberDBSizeInUse = Metric{"etcdpulse_member_db_size_in_use_bytes", Gauge,
		"Logically used size of the member's backend database; the rest is reclaimable by defragmentation.", []string{"member"}, "member"}
	MemberDBQuota = Metric{"etcdpulse_member_db_quota_bytes", Gauge,
		"Backend quota of the member (--quota-backend-bytes); writes stop with a NOSPACE alarm past it.", []string{"member"}, "member"}
	MemberAlarm = Metric{"etcdpulse_member_alarm_active", Gauge,
		"1 while an alarm raised by the member is active, by alarm type (NOSPACE, CORRUPT).", []string{"member", "alarm"}, "member"}

	ProbeSuccess = Metric{"etcdpulse_probe_success", Gauge,
		"1 when the probe's last run against the member succeeded, else 0.", []string{"probe", "member"}, "probe"}
	ProbeDuration = Metric{"etcdpulse_probe_duration_seconds", Histogram,
		"Duration of probe runs, failed ones included.", []string{"probe"}, "probe"}
	ProbeFailures = Metric{"etcdpulse_probe_failures_total", Counter,
		"Failed probe runs, by probe, member and reason: unreachable (refused, reset, DNS), timeout, tls_certificate_expired, tls_unknown_authority, tls_name_mismatch, tls_bad_certificate, tls, authentication, permission_denied, etcd_error (no leader, NOSPACE, ...), other.",
		[]string{"probe", "member", "reason"}, "probe"}

	FsyncDuration = Metric{"etcdpulse_disk_fsync_duration_seconds", Histogram,
		"Duration of the fsync probe's fdatasync calls, each after a small sequential write into a fresh preallocated file on the WAL's filesystem, as etcd's WAL syncs.", nil, "disk"}
	FsyncStalled = Metric{"etcdpulse_disk_fsync_stalled", Gauge,
		"1 while a disk operation of the fsync probe (normally its fdatasync) has been outstanding for longer than the stall threshold (disk.stall_threshold), else 0.", nil, "disk"}
	FsyncStalledSeconds = Metric{"etcdpulse_disk_fsync_stalled_seconds", Gauge,
		"Seconds the fsync probe's outstanding disk operation has been waiting so far, 0 when none is outstanding.", nil, "disk"}
	FsyncRefused = Metric{"etcdpulse_disk_fsync_probe_refused", Gauge,
		"1 while the fsync probe refuses to measure, by reason: tmpfs, overlay, other_device, no_wal_dir, no_space, error; absent while it measures.", []string{"reason"}, "disk"}
	FsyncWritten = Metric{"etcdpulse_disk_fsync_written_bytes_total", Counter,
		"Bytes the fsync probe wrote.", nil, "disk"}

	NetworkPeerRTT = Metric{"etcdpulse_network_peer_rtt_seconds", Histogram,
		"Time of one network phase from this agent to another member, by phase: connect_peer (TCP connect to its peer URL), connect_client (TCP connect to its client URL), tls_handshake (TLS handshake on that fresh client connection, https only), request (a serializable read of the probe key on the kept-alive client connection).", []string{"peer", "phase"}, "network"}
	NetworkPeerUp = Metric{"etcdpulse_network_peer_up", Gauge,
		"1 when the last attempt of the phase to the peer succeeded, 0 when it failed (refused, reset or timed out).", []string{"peer", "phase"}, "network"}

	HostFilesystemSize = Metric{"etcdpulse_host_filesystem_size_bytes", Gauge,
		"Size of the filesystem holding etcd's data (dir=\"data\") or WAL (dir=\"wal\") directory; dir=\"wal\" only when the WAL is on a filesystem of its own; absent while the directory cannot be read.", []string{"dir"}, "host"}
	HostFilesystemFree = Metric{"etcdpulse_host_filesystem_free_bytes", Gauge,
		"Bytes available to unprivileged users on the filesystem of the directory.", []string{"dir"}, "host"}
	HostFilesystemFiles = Metric{"etcdpulse_host_filesystem_files", Gauge,
		"Inodes of the filesystem of the directory; absent on filesystems without a fixed inode count (btrfs).", []string{"dir"}, "host"}
	HostFilesystemFilesFree = Metric{"etcdpulse_host_filesystem_files_free", Gauge,
		"Free inodes of the filesystem of the directory; absent on filesystems without a fixed inode count (btrfs).", []string{"dir"}, "host"}
	HostDiskReads = Metric{"etcdpulse_host_disk_reads_completed_total", Counter,
		"Reads completed by the block device under etcd's data or WAL directory (/proc/diskstats).", []string{"device"}, "host"}
	HostDiskWrites = Metric{"etcdpulse_host_disk_writes_completed_total", Counter,
		"Writes completed by the block device.", []string{"device"}, "host"}
	HostDiskReadTime = Metric{"etcdpulse_host_disk_read_time_seconds_total", Counter,
		"Seconds spent by all reads of the block device; divided by reads, the read await.", []string{"device"}, "host"}
	HostDiskWriteTime = Metric{"etcdpulse_host_disk_write_time_seconds_total", Counter,
		"Seconds spent by all writes of the block device; divided by writes, the write await.", []string{"device"}, "host"}
	HostDiskIOTime = Metric{"etcdpulse_host_disk_io_time_seconds_total", Counter,
		"Seconds the block device was busy with at least one I/O; its rate is the utilisation.", []string{"device"}, "host"}
	HostDiskIOTimeWeighted = Metric{"etcdpulse_host_disk_io_time_weighted_seconds_total", Counter,
		"Seconds spent doing I/O weighted by the I/Os in flight; its rate is the average queue size.", []string{"device"}, "host"}
	HostDiskIONow = Metric{"etcdpulse_host_disk_io_now", Gauge,
		"I/Os in flight on the block device.", []string{"device"}, "host"}
	HostCPUIowait = Metric{"etcdpulse_host_cpu_iowait_seconds_total", Counter,
		"Seconds the node's CPUs, summed, spent idle with I/O outstanding.", nil, "host"}
	// The etcd process: client_golang's process collector (its help texts)
	// with the etcdpulse_etcd namespace, for the process found by
	// host.pid_file or host.process_name; absent while it is not found or
	// not readable.
	EtcdProcessCPU = Metric{"etcdpulse_etcd_process_cpu_seconds_total", Counter,
		"Total user and system CPU time spent in seconds.", nil, "host"}
	EtcdProcessOpenFDs = Metric{"etcdpulse_etcd_process_open_fds", Gauge,
		"Number of open file descriptors.", nil, "host"}
	EtcdProcessMaxFDs = Metric{"etcdpulse_etcd_process_max_fds", Gauge,
		"Maximum number of open file descriptors.", nil, "host"}
	EtcdProcessVirtualMemory = Metric{"etcdpulse_etcd_process_virtual_memory_bytes", Gauge,
		"Virtual memory size in bytes.", nil, "host"}
	EtcdProcessVirtualMemoryMax = Metric{"etcdpulse_etcd_process_virtual_memory_max_bytes", Gauge,
		"Maximum amount of virtual memory available in bytes.", nil, "host"}
	EtcdProcessRSS = Metric{"etcdpulse_etcd_process_resident_memory_bytes", Gauge,
		"Resident memory size in bytes.", nil, "host"}
	EtcdProcessStartTime = Metric{"etcdpulse_etcd_process_start_time_seconds", Gauge,
		"Start time of the process since unix epoch in seconds.", nil, "host"}
	EtcdProcessNetworkReceive = Metric{"etcdpulse_etcd_process_network_receive_bytes_total", Counter,
		"Number of bytes received by the process over the network.", nil, "host"}
	EtcdProcessNetworkTransmit = Metric{"etcdpulse_etcd_process_network_transmit_bytes_total", Counter,
		"Number of bytes sent by the process over the network.", nil, "host"}

	EtcdWALFsync = Metric{"etcdpulse_etcd_wal_fsync_duration_seconds", Histogram,
		"etcd's own etcd_disk_wal_fsync_duration_seconds, read from the local member's metrics URL (etcd.metrics_url) with etcd's buckets.", nil, "etcd"}
	EtcdBackendCommit = Metric{"etcdpulse_etcd_backend_commit_duration_seconds", Histogram,
		"etcd's own etcd_disk_backend_commit_duration_seconds, read from the local member's metrics URL.", nil, "etcd"}
	EtcdPeerRTT = Metric{"etcdpulse_etcd_peer_round_trip_time_seconds", Histogram,
		"etcd's own etcd_network_peer_round_trip_time_seconds from the local member to each peer (its To label mapped to the member label), read from the local member's metrics URL.", []string{"peer"}, "etcd"}
	EtcdMetricsUp = Metric{"etcdpulse_etcd_metrics_up", Gauge,
		"1 when the last read of the local member's metrics URL succeeded, else 0; absent when etcd.metrics_url is not set.", nil, "etcd"}
)

// Catalogue lists every metric etcdpulse exports, in documentation order.
var Catalogue = []Metric{
	Up, BuildInfo, LastRound, Requests, AgentRefused,
	HasLeader, LeaderVoters, LeaderDisagreement, LeaderChanges, Term, Members, VotingMembers, HealthyVotingMembers, QuorumSize, FaultTolerance,
	MemberInfo, LocalMemberInfo, MemberReachable, MemberHealthy, MemberIsLeader, MemberIsLearner, MemberRaftTerm, MemberRaftIndexLag, MemberApplyLag,
	MemberDBSize, MemberDBSizeInUse, MemberDBQuota, MemberAlarm,
	ProbeSuccess, ProbeDuration, ProbeFailures,
	FsyncDuration, FsyncStalled, FsyncStalledSeconds, FsyncRefused, FsyncWritten,
	NetworkPeerRTT, NetworkPeerUp,
	HostFilesystemSize, HostFilesystemFree, HostFilesystemFiles, HostFilesystemFilesFree,
	HostDiskReads, HostDiskWrites, HostDiskReadTime, HostDiskWriteTime, HostDiskIOTime, HostDiskIOTimeWeighted, HostDiskIONow,
	HostCPUIowait,
	EtcdProcessCPU, EtcdProcessOpenFDs, EtcdProcessMaxFDs, EtcdProcessVirtualMemory, EtcdProcessVirtualMemoryMax,
	EtcdProcessRSS, EtcdProcessStartTime, EtcdProcessNetworkReceive, EtcdProcessNetworkTransmit,
	EtcdWALFsync, EtcdBackendCommit, EtcdPeerRTT, EtcdMetricsUp,
}

// Lookup returns the catalogue row for a metric name; histogram series
// (_bucket, _sum, _count) resolve to their family.
func Lookup(name string) (Metric, bool) {
	for _, m := range Catalogue {
		if m.Name == name {
			return m, true
		}
		if m.Type == Histogram {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if strings.TrimSuffix(name, s) == m.Name && name != m.Name {
					return m, true
				}
			}
		}
	}
	return Metric{}, false
}

var groupTitles = map[string]string{
	"agent":   "Agent",
	"cluster": "Cluster",
	"member":  "Members",
	"probe":   "Probes",
	"disk":    "Disk",
	"network": "Network",
	"host":    "Host and etcd process",
	"etcd":    "etcd's own view",
}

// Markdown renders the metrics reference (docs/metrics.md).
func Markdown() string {
	var b strings.Builder
	b.WriteString("# Metrics reference\n\n")
	b.WriteString("Generated from the catalogue in `collectors/catalogue.go` by `go run ./cmd/etcdpulse docs metrics`; do not edit by hand.\n\n")
	b.WriteString("`member` is the etcd member name, or its hex ID while the name is empty. Node and cluster identity come from Prometheus target labels.\n")
	b.WriteString("Per-member values that come from a member's status are absent while the member does not answer; `etcdpulse_member_reachable` says so.\n")
	group := ""
	for _, m := range Catalogue {
		if m.Group != group {
			group = m.Group
			fmt.Fprintf(&b, "\n## %s\n\n| metric | type | labels | meaning |\n|---|---|---|---|\n", groupTitles[group])
		}
		labels := "—"
		if len(m.Labels) > 0 {
			labels = "`" + strings.Join(m.Labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", m.Name, m.Type, labels, m.Help)
	}
	return b.String()
}
