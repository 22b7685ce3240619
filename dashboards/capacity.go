package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Database panels show every member as the chosen agents see it (each agent
// reads every member's status); disk, filesystem and process panels show
// the chosen agents' own nodes.

func capacity() (dashboard.Dashboard, error) {
	return finish(newDashboard("etcdpulse-capacity", "etcdpulse / Capacity",
		"How close etcd is to its limits: database size against the quota, the data and WAL filesystems, the disk, and the etcd process.").
		WithRow(dashboard.NewRowBuilder("Database")).
		WithPanel(quotaUsedStat()).
		WithPanel(capacityAlarmsStat()).
		WithPanel(dbSizeTimeseries()).
		WithPanel(quotaUsedTimeseries()).
		WithPanel(dbPredictedTimeseries()).
		WithPanel(dbReclaimableTimeseries()).
		WithPanel(fragmentationTimeseries()).
		WithPanel(quotaSourceTable()).
		WithRow(dashboard.NewRowBuilder("Key space")).
		WithPanel(keyspaceTopTable()).
		WithPanel(keyspaceWalkStat()).
		WithPanel(keyspaceResourcesTimeseries()).
		WithPanel(keyspaceGrowthTimeseries()).
		WithPanel(keyspaceNamespacesTimeseries()).
		WithRow(dashboard.NewRowBuilder("Filesystems")).
		WithPanel(filesystemFreeTimeseries()).
		WithPanel(filesystemSpaceTimeseries()).
		WithPanel(filesystemPredictedTimeseries()).
		WithPanel(inodesFreeTimeseries()).
		WithRow(dashboard.NewRowBuilder("Disk")).
		WithPanel(diskIOPSTimeseries()).
		WithPanel(diskAwaitTimeseries()).
		WithPanel(diskUtilisationTimeseries()).
		WithPanel(diskQueueTimeseries()).
		WithPanel(iowaitTimeseries()).
		WithRow(dashboard.NewRowBuilder("etcd process")).
		WithPanel(etcdCPUTimeseries()).
		WithPanel(etcdMemoryTimeseries()).
		WithPanel(etcdFDsTimeseries()).
		WithPanel(etcdUptimeTimeseries()))
}

// knownQuota keeps, of a per-agent series of a member's quota (or a
// figure computed from it), the agents that know the quota (its source is
// not etcd's default, assumed) and every agent when none does, as the quota
// alerts do: on etcd 3.4 and 3.5 only a member's own agent reads its quota.
func knownQuota(metric string) string {
	return metric + ` and on (cluster, instance, member) ` + node("etcdpulse_member_db_quota_source", `source!="default"`) + ` == 1` +
		` or ` + metric + ` unless on (cluster, member) ` + node("etcdpulse_member_db_quota_source", `source!="default"`) + ` == 1`
}

// dbRatio is each member's database size over its quota.
var dbRatio = `max by (cluster, member) (` + knownQuota(node("etcdpulse_member_db_quota_used_ratio")) + `)`

// fsFree is the free share of the data and WAL filesystems.
var fsFree = `min by (cluster, instance, dir) (` + node("etcdpulse_host_filesystem_free_bytes") + ` / ` + node("etcdpulse_host_filesystem_size_bytes") + `)`

// byDevice sums a per-device counter's rate per node and device.
func byDevice(metric string) string {
	return `sum by (cluster, instance, device) (` + rate(node(metric)) + `)`
}

func quotaUsedStat() *stat.PanelBuilder {
	return defaultStat("Quota used",
		"Each member's database file size as a share of its quota (--quota-backend-bytes), from the agents that know the quota, or against etcd's 2 GiB default when none does (Quota source says which). Past the quota etcd raises NOSPACE and refuses writes; the alerts warn at 75% and page at 85%.",
		"percentunit", "EtcdDatabaseQuotaHigh", "EtcdDatabaseQuotaCritical").
		Span(12).
		Min(0).
		Max(1).
		Thresholds(thresholds("green", step{0.75, "orange"}, step{0.85, "red"})).
		TextMode(common.BigValueTextModeValueAndName).
		WithTarget(instantQuery(dbRatio, "{{member}}"))
}

func capacityAlarmsStat() *stat.PanelBuilder {
	return defaultStat("Active alarms",
		"etcd alarms raised by the members, by member and type. NOSPACE stays raised after space is freed: disarm it with etcdctl alarm disarm, after compaction and defragmentation.",
		"none", "EtcdAlarmActive").
		Span(12).
		NoValue("No alarms").
		Mappings(valueMappings(mapping{"1", "active", "red"})).
		TextMode(common.BigValueTextModeValueAndName).
		WithTarget(instantQuery(`max by (cluster, member, alarm) (`+node("etcdpulse_member_alarm_active")+`) == 1`, "{{member}} {{alarm}}"))
}

func dbSizeTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Database size and quota",
		"Each member's backend database: its physical size, the part in use (the rest is reclaimable by defragmentation) and its quota.",
		"bytes", "EtcdDatabaseQuotaHigh", "EtcdDatabaseQuotaCritical").
		Min(0).
		WithTarget(prometheusQuery(`max by (cluster, member) (`+node("etcdpulse_member_db_size_bytes")+`)`, "{{member}} size")).
		WithTarget(prometheusQuery(`max by (cluster, member) (`+node("etcdpulse_member_db_size_in_use_bytes")+`)`, "{{member}} in use")).
		WithTarget(prometheusQuery(`max by (cluster, member) (`+node("etcdpulse_member_db_quota_bytes")+`)`, "{{member}} quota"))
}

func quotaUsedTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Quota used over time",
		"Each member's database size as a share of its quota, over time, with the alerts' thresholds.",
		"percentunit", "EtcdDatabaseQuotaHigh", "EtcdDatabaseQuotaCritical"),
		"green", step{0.75, "orange"}, step{0.85, "red"}).
		Min(0).
		WithTarget(prometheusQuery(dbRatio, "{{member}}"))
}

func dbPredictedTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Quota used in 4 hours, predicted",
		"Each member's database size 4 hours ahead as a share of its quota, extrapolated linearly from the last 2 hours (fixed windows, as the alert uses). Past 100% the quota runs out within 4 hours at this growth.",
		"percentunit", "EtcdDatabaseQuotaExhaustionPredicted"), "green", step{1, "red"}).
		Min(0).
		WithTarget(prometheusQuery(`max by (cluster, member) (predict_linear(`+node("etcdpulse_member_db_size_bytes")+`[2h], 4 * 3600) / (`+knownQuota(node("etcdpulse_member_db_quota_bytes"))+`))`, "{{member}}"))
}

func dbReclaimableTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Reclaimable by defragmentation",
		"Database size not in use: space a defragmentation would return to the filesystem (it counts against the quota until then).",
		"bytes", "EtcdDatabaseQuotaHigh").
		Min(0).
		WithTarget(prometheusQuery(`max by (cluster, member) (`+node("etcdpulse_member_db_size_bytes")+` - `+node("etcdpulse_member_db_size_in_use_bytes")+`)`, "{{member}}"))
}

func fragmentationTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Fragmentation",
		"Share of each member's database file not in use, (size − in use) / size, as etcdctl endpoint status's % NOT IN USE: free pages that compaction left and only a defragmentation returns. It counts against the quota until then. A few free pages are a large share of a small file.",
		"percentunit", "EtcdDatabaseQuotaHigh").
		Min(0).
		Max(1).
		WithTarget(prometheusQuery(`max by (cluster, member) (`+node("etcdpulse_member_db_fragmented_ratio")+`)`, "{{member}}"))
}

func quotaSourceTable() *table.PanelBuilder {
	return defaultTable("Quota source",
		"Where each agent has each member's quota from: status (the member's own, etcd 3.6 and later), metrics_url (the local member's etcd_server_quota_backend_bytes), config (etcd.quota_backend_bytes) or default (nothing said: etcd's 2 GiB default, assumed). The quota panels and alerts prefer the agents that know it.",
		"none", "EtcdDatabaseQuotaHigh").
		Span(12).
		WithTarget(tableQuery(`max by (cluster, instance, member, source) (` + node("etcdpulse_member_db_quota_source") + `) == 1`)).
		WithTransformation(dashboard.DataTransformerConfig{
			Id:      "organize",
			Options: map[string]any{"excludeByName": map[string]any{"Time": true, "Value": true}},
		})
}

// keyspaceKeys is each resource's keys, as the chosen agents counted
// them (each counts its own member's store).
var keyspaceKeys = `max by (cluster, resource) (` + node("etcdpulse_keyspace_resource_keys") + `)`

func keyspaceTopTable() *table.PanelBuilder {
	return defaultTable("Largest resources",
		"Keys of each Kubernetes resource in the last complete walk of the key space (count-only requests under keyspace.prefix, /registry by default): the keyspace.top_resources largest, the rest under other. No value is read, so there are no bytes per resource: the database's bytes in use per key is the estimate the growth alert uses.",
		"short", "EtcdKeyspaceResourceGrowing").
		Span(16).
		WithTarget(tableQuery(`sort_desc(` + keyspaceKeys + `)`)).
		WithTransformation(dashboard.DataTransformerConfig{
			Id:      "organize",
			Options: map[string]any{"excludeByName": map[string]any{"Time": true}, "renameByName": map[string]any{"Value": "keys"}},
		})
}

func keyspaceWalkStat() *stat.PanelBuilder {
	return defaultStat("Last complete walk",
		"Time since each agent's last complete walk of the key space (every keyspace.interval, 10 minutes by default). It grows while the walks are skipped (the local member unhealthy or slow) or need several runs (keyspace.max_requests); etcdpulse_keyspace_runs_total says which.",
		"s").
		Span(8).
		TextMode(common.BigValueTextModeValueAndName).
		WithTarget(instantQuery(`time() - max by (cluster, instance) (`+node("etcdpulse_keyspace_walk_timestamp_seconds")+`)`, "{{instance}}"))
}

func keyspaceResourcesTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Keys by resource",
		"Keys of each resource over time: a resource that fills the database (events, leases, a custom resource) stands out.",
		"short", "EtcdKeyspaceResourceGrowing").
		Min(0).
		WithTarget(prometheusQuery(keyspaceKeys, "{{resource}}"))
}

func keyspaceGrowthTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Growth by resource",
		"Keys each resource gains an hour, over the last hour (deriv over 1h, as the alert uses). The alert fires when one resource's growth, carried over a day at the database's bytes per key, exceeds the room left under the quota.",
		"short", "EtcdKeyspaceResourceGrowing").
		WithTarget(prometheusQuery(`max by (cluster, resource) (deriv(`+node("etcdpulse_keyspace_resource_keys", `resource!="other"`)+`[1h])) * 3600`, "{{resource}}"))
}

func keyspaceNamespacesTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Keys by namespace of the largest resources",
		"Keys of the keyspace.namespace_resources largest namespaced resources in each of their keyspace.top_namespaces largest namespaces, the rest under _other: which namespace holds the events or the custom resources.",
		"short", "EtcdKeyspaceResourceGrowing").
		Span(24).
		Min(0).
		WithTarget(prometheusQuery(`max by (cluster, resource, namespace) (`+node("etcdpulse_keyspace_namespace_keys")+`)`, "{{resource}} {{namespace}}"))
}

func filesystemFreeTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Filesystem free",
		"Free share of the filesystems holding etcd's data and WAL directories, per node. The alerts fire under 5% (full) and under 25% when a 24-hour prediction runs out.",
		"percentunit", "EtcdDataFilesystemFull", "EtcdDataFilesystemFilling"),
		"red", step{0.05, "orange"}, step{0.25, "green"}).
		Min(0).
		Max(1).
		WithTarget(prometheusQuery(fsFree, "{{instance}} {{dir}}"))
}

func filesystemSpaceTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Filesystem space",
		"Used and total bytes of the filesystems holding etcd's data and WAL directories, per node.",
		"bytes", "EtcdDataFilesystemFilling").
		Min(0).
		WithTarget(prometheusQuery(`max by (cluster, instance, dir) (`+node("etcdpulse_host_filesystem_size_bytes")+` - `+node("etcdpulse_host_filesystem_free_bytes")+`)`, "{{instance}} {{dir}} used")).
		WithTarget(prometheusQuery(`max by (cluster, instance, dir) (`+node("etcdpulse_host_filesystem_size_bytes")+`)`, "{{instance}} {{dir}} size"))
}

func filesystemPredictedTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Filesystem free in 24 hours, predicted",
		"Free bytes 24 hours ahead, extrapolated linearly from the last 6 hours (fixed windows, as the alert uses). Below 0 the filesystem fills within a day at this rate.",
		"bytes", "EtcdDataFilesystemFilling"), "red", step{0, "green"}).
		WithTarget(prometheusQuery(`min by (cluster, instance, dir) (predict_linear(`+node("etcdpulse_host_filesystem_free_bytes")+`[6h], 24 * 3600))`, "{{instance}} {{dir}}"))
}

func inodesFreeTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Inodes free",
		"Free share of the inodes of the data and WAL filesystems; absent on filesystems without a fixed inode count (btrfs).",
		"percentunit").
		Min(0).
		Max(1).
		WithTarget(prometheusQuery(`min by (cluster, instance, dir) (`+node("etcdpulse_host_filesystem_files_free")+` / `+node("etcdpulse_host_filesystem_files")+`)`, "{{instance}} {{dir}}"))
}

func diskIOPSTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Disk operations",
		"Reads and writes completed per second by the block devices under etcd's data and WAL directories.",
		"iops").
		WithTarget(prometheusQuery(byDevice("etcdpulse_host_disk_reads_completed_total"), "{{instance}} {{device}} reads")).
		WithTarget(prometheusQuery(byDevice("etcdpulse_host_disk_writes_completed_total"), "{{instance}} {{device}} writes"))
}

func diskAwaitTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Disk await",
		"Average time a read or a write spent on the device, queueing included (iostat's r_await and w_await).",
		"s", "EtcdFsyncSlow").
		WithTarget(prometheusQuery(byDevice("etcdpulse_host_disk_read_time_seconds_total")+` / `+byDevice("etcdpulse_host_disk_reads_completed_total"), "{{instance}} {{device}} read")).
		WithTarget(prometheusQuery(byDevice("etcdpulse_host_disk_write_time_seconds_total")+` / `+byDevice("etcdpulse_host_disk_writes_completed_total"), "{{instance}} {{device}} write"))
}

func diskUtilisationTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Disk utilisation",
		"Share of time the device had at least one I/O in flight. Near 100% on a single disk it is saturated; on SSDs and RAID, which serve I/Os in parallel, read it with the queue size.",
		"percentunit").
		Min(0).
		WithTarget(prometheusQuery(byDevice("etcdpulse_host_disk_io_time_seconds_total"), "{{instance}} {{device}}"))
}

func diskQueueTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Disk queue",
		"Average I/Os in flight over the interval (from the weighted I/O time) and at the last scrape.",
		"short").
		Min(0).
		WithTarget(prometheusQuery(byDevice("etcdpulse_host_disk_io_time_weighted_seconds_total"), "{{instance}} {{device}} average")).
		WithTarget(prometheusQuery(`max by (cluster, instance, device) (`+node("etcdpulse_host_disk_io_now")+`)`, "{{instance}} {{device}} now"))
}

func iowaitTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("CPU iowait",
		"CPU time the node spent idle with I/O outstanding, in CPUs (1 = one CPU's worth of time). Rising iowait with rising fsync latency means the disk holds etcd up.",
		"short").
		Min(0).
		WithTarget(prometheusQuery(`sum by (cluster, instance) (`+rate(node("etcdpulse_host_cpu_iowait_seconds_total"))+`)`, "{{instance}}"))
}

func etcdCPUTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("etcd CPU",
		"CPU used by the etcd process, user and system, in CPUs (1 = one CPU fully busy).",
		"short").
		Min(0).
		WithTarget(prometheusQuery(`sum by (cluster, instance) (`+rate(node("etcdpulse_etcd_process_cpu_seconds_total"))+`)`, "{{instance}}"))
}

func etcdMemoryTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("etcd resident memory",
		"Resident memory of the etcd process. It grows with the database (bbolt maps it) and with watchers and large range requests.",
		"bytes").
		Min(0).
		WithTarget(prometheusQuery(`max by (cluster, instance) (`+node("etcdpulse_etcd_process_resident_memory_bytes")+`)`, "{{instance}}"))
}

func etcdFDsTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("etcd file descriptors used",
		"Open file descriptors of the etcd process as a share of its soft limit. At the limit etcd cannot accept connections or open files.",
		"percentunit"), "green", step{0.8, "orange"}).
		Min(0).
		Max(1).
		WithTarget(prometheusQuery(`max by (cluster, instance) (`+node("etcdpulse_etcd_process_open_fds")+` / `+node("etcdpulse_etcd_process_max_fds")+`)`, "{{instance}}"))
}

func etcdUptimeTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("etcd uptime",
		"Time since the etcd process started; a drop is a restart.",
		"s").
		Min(0).
		WithTarget(prometheusQuery(`time() - max by (cluster, instance) (`+node("etcdpulse_etcd_process_start_time_seconds")+`)`, "{{instance}}"))
}
