package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Every agent reports the whole cluster. Cluster-level panels take the most
// optimistic agent (max by cluster), as the quorum alerts do: one agent cut
// off from the others must not paint the cluster red.

func overview() (dashboard.Dashboard, error) {
	return finish(newDashboard("etcdpulse-overview", "etcdpulse / Cluster overview",
		"Is the etcd cluster serving? Quorum, leader, members, fault tolerance, whether writes commit and reach every member's watches, and firing alerts, from the etcdpulse agents beside the members.").
		WithRow(dashboard.NewRowBuilder("Cluster")).
		WithPanel(quorumStat()).
		WithPanel(faultToleranceStat()).
		WithPanel(leaderStat()).
		WithPanel(leaderAgreementStat()).
		WithPanel(membersStat()).
		WithPanel(leaderChangesStat()).
		WithPanel(alarmsStat()).
		WithPanel(agentsStat()).
		WithRow(dashboard.NewRowBuilder("Quorum and leadership")).
		WithPanel(votersTimeseries()).
		WithPanel(faultToleranceTimeseries()).
		WithPanel(memberHealthTimeline()).
		WithPanel(leaderTimeline()).
		WithPanel(leaderChangesTimeseries()).
		WithPanel(termTimeseries()).
		WithRow(dashboard.NewRowBuilder("Why the leader changed")).
		WithPanel(leaderCausesTimeseries()).
		WithPanel(leaderEvidenceFsyncTimeseries()).
		WithPanel(leaderEvidencePeerTimeseries()).
		WithPanel(leaderEvidenceRestartsTimeseries()).
		WithPanel(leaderEvidenceIowaitTimeseries()).
		WithRow(dashboard.NewRowBuilder("Data path")).
		WithPanel(writesTimeseries()).
		WithPanel(writeLatencyTimeseries()).
		WithPanel(watchDeliveryTimeseries()).
		WithPanel(replicationLagTimeseries()).
		WithPanel(watchFailuresTimeseries()).
		WithPanel(watchRestartsTimeseries()).
		WithPanel(hashMismatchTimeline()).
		WithPanel(hashCheckAgeTimeseries()).
		WithRow(dashboard.NewRowBuilder("Alerts")).
		WithPanel(firingAlertsTable()).
		WithPanel(firingAlertsTimeseries()))
}

func quorumStat() *stat.PanelBuilder {
	return defaultStat("Quorum",
		"Whether enough voting members are healthy for quorum: healthy voters minus quorum size is at least 0 for the most optimistic agent. Lost means writes and linearizable reads fail.",
		"none", "EtcdQuorumLost").
		Span(3).
		Mappings(okMappings("Quorum", "Lost")).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_fault_tolerance")+`) >= bool 0`, "{{cluster}}"))
}

func faultToleranceStat() *stat.PanelBuilder {
	return defaultStat("Fault tolerance",
		"Voting members that can still fail without losing quorum: healthy voters minus quorum size, for the most optimistic agent. 0 means the next failure loses quorum; negative means quorum is lost.",
		"none", "EtcdQuorumAtRisk", "EtcdQuorumLost").
		Span(3).
		Decimals(0).
		Thresholds(thresholds("red", step{0, "orange"}, step{1, "green"})).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_fault_tolerance")+`)`, "{{cluster}}"))
}

func leaderStat() *stat.PanelBuilder {
	return defaultStat("Leader",
		"Whether a quorum of voting members follows one leader in one term, for the most optimistic agent. Without one etcd accepts no writes. One cut-off member that reports no leader shows under Leader agreement, not here.",
		"none", "EtcdNoLeader").
		Span(3).
		Mappings(okMappings("Leader", "No leader")).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_leader_voters")+`) >= bool on (cluster) max by (cluster) (`+cluster("etcdpulse_cluster_quorum_size")+`)`, "{{cluster}}"))
}

func leaderAgreementStat() *stat.PanelBuilder {
	return defaultStat("Leader agreement",
		"Whether the reachable members report different leaders or terms (any agent). A lasting disagreement points at a partition or a member stuck in an old term.",
		"none", "EtcdLeaderDisagreement").
		Span(3).
		Mappings(valueMappings(mapping{"0", "Agreed", "green"}, mapping{"1", "Disagreement", "red"})).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_leader_disagreement")+`)`, "{{cluster}}"))
}

func membersStat() *stat.PanelBuilder {
	return defaultStat("Members",
		"Healthy voting members (answered a linearizable read in time), voting members, and all members including learners, from etcd's member list.",
		"none", "EtcdMemberUnhealthy").
		Span(3).
		Decimals(0).
		ColorMode(common.BigValueColorModeNone).
		TextMode(common.BigValueTextModeValueAndName).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_healthy_voting_members")+`)`, "healthy")).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_voting_members")+`)`, "voters")).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_members")+`)`, "members"))
}

func leaderChangesStat() *stat.PanelBuilder {
	return defaultStat("Leader changes",
		"Leader changes (a new leader, or the same one in a new term) in the dashboard's time range, for the agent that saw the most. A few per day are normal (restarts, upgrades); many point at slow disks or a flaky network.",
		"none", "EtcdLeaderFlapping").
		Span(3).
		Decimals(0).
		Thresholds(thresholds("blue")).
		WithTarget(instantQuery(`max by (cluster) (increase(`+cluster("etcdpulse_cluster_leader_changes_total")+`[$__range]))`, "{{cluster}}"))
}

func alarmsStat() *stat.PanelBuilder {
	return defaultStat("Active alarms",
		"etcd alarms raised by any member (NOSPACE: the database hit its quota and writes are refused; CORRUPT: a member's data differs).",
		"none", "EtcdAlarmActive").
		Span(3).
		Decimals(0).
		NoValue("0").
		Thresholds(thresholds("green", step{1, "red"})).
		WithTarget(instantQuery(`count by (cluster) (max by (cluster, member, alarm) (`+cluster("etcdpulse_member_alarm_active")+`) == 1)`, "{{cluster}}"))
}

func agentsStat() *stat.PanelBuilder {
	return defaultStat("Agents reporting",
		"etcdpulse agents Prometheus scrapes, against voting members: every voting member should have an agent beside it.",
		"none", "EtcdpulseAgentMissing", "EtcdpulseAgentsAbsent").
		Span(3).
		Decimals(0).
		ColorMode(common.BigValueColorModeNone).
		TextMode(common.BigValueTextModeValueAndName).
		NoValue("0").
		WithTarget(instantQuery(`count by (cluster) (`+cluster("etcdpulse_up")+`)`, "agents")).
		WithTarget(instantQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_voting_members")+`)`, "voters"))
}

func votersTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Healthy voters and quorum",
		"Healthy voting members against the quorum size, for the most optimistic agent. Quorum holds while healthy voters stay at or above the quorum size.",
		"none", "EtcdQuorumAtRisk", "EtcdQuorumLost").
		Decimals(0).
		WithTarget(prometheusQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_healthy_voting_members")+`)`, "{{cluster}} healthy voters")).
		WithTarget(prometheusQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_quorum_size")+`)`, "{{cluster}} quorum size")).
		WithTarget(prometheusQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_voting_members")+`)`, "{{cluster}} voters"))
}

func faultToleranceTimeseries() *timeseries.PanelBuilder {
	return withThresholdLines(defaultTimeseries("Fault tolerance over time",
		"Healthy voters minus quorum size, for the most and the least optimistic agent; the alerts use the most optimistic one. A gap between them means the agents see the cluster differently.",
		"none", "EtcdQuorumAtRisk", "EtcdQuorumLost"), "red", step{0, "orange"}, step{1, "green"}).
		Decimals(0).
		WithTarget(prometheusQuery(`max by (cluster) (`+cluster("etcdpulse_cluster_fault_tolerance")+`)`, "{{cluster}} most optimistic agent")).
		WithTarget(prometheusQuery(`min by (cluster) (`+cluster("etcdpulse_cluster_fault_tolerance")+`)`, "{{cluster}} least optimistic agent"))
}

func memberHealthTimeline() *statetimeline.PanelBuilder {
	return defaultStateTimeline("Member health",
		"Per member: healthy when at least one agent got a linearizable read answered by it within the probe deadline.",
		okMappings("healthy", "unhealthy"), "EtcdMemberUnhealthy").
		WithTarget(prometheusQuery(`max by (cluster, member) (`+cluster("etcdpulse_member_healthy")+`)`, "{{member}}"))
}

func leaderTimeline() *statetimeline.PanelBuilder {
	return defaultStateTimeline("Leader by member",
		"Which member was the agreed leader, over time.",
		valueMappings(mapping{"1", "leader", "blue"}, mapping{"0", "follower", "transparent"}), "EtcdNoLeader", "EtcdLeaderFlapping").
		WithTarget(prometheusQuery(`max by (cluster, member) (`+cluster("etcdpulse_member_is_leader")+`)`, "{{member}}"))
}

func leaderChangesTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Leader changes over time",
		"Leader changes per rate interval, for the agent that saw the most.",
		"none", "EtcdLeaderFlapping").
		DrawStyle(common.GraphDrawStyleBars).
		FillOpacity(80).
		WithTarget(prometheusQuery(`max by (cluster) (increase(`+cluster("etcdpulse_cluster_leader_changes_total")+`[$__rate_interval]))`, "{{cluster}}"))
}

func termTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Raft term",
		"Raft term each member reports. Every election raises it; members on different terms disagree on the leader.",
		"none", "EtcdLeaderDisagreement").
		Decimals(0).
		WithTarget(prometheusQuery(`max by (cluster, member) (`+cluster("etcdpulse_member_raft_term")+`)`, "{{member}}"))
}

// firingAlerts selects etcdpulse's firing alerts (all named Etcd*).
var firingAlerts = `ALERTS{alertstate="firing", alertname=~"Etcd.*", ` + clusterMatchers + `}`

func firingAlertsTable() *table.PanelBuilder {
	return defaultTable("Firing alerts",
		"etcdpulse alerts firing now, from Prometheus' ALERTS series. The alert name links to its runbook.",
		"none").
		Span(12).
		WithTarget(tableQuery(`max by (alertname, severity, cluster, member, instance, peer, dir, alarm) (`+firingAlerts+`)`)).
		WithTransformation(dashboard.DataTransformerConfig{
			Id:      "organize",
			Options: map[string]any{"excludeByName": map[string]any{"Time": true, "Value": true}},
		}).
		OverrideByName("alertname", []dashboard.DynamicConfigValue{{
			Id: "links",
			Value: []map[string]any{{
				"title":       "Runbook: ${__value.text}",
				"url":         RunbookBase + "${__value.text}.md",
				"targetBlank": true,
			}},
		}}).
		SortBy([]cog.Builder[common.TableSortByFieldState]{common.NewTableSortByFieldStateBuilder().DisplayName("severity")})
}

func firingAlertsTimeseries() *timeseries.PanelBuilder {
	return defaultTimeseries("Firing alerts over time",
		"How many series of each etcdpulse alert were firing, over time.",
		"none").
		Decimals(0).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		WithTarget(prometheusQuery(`count by (alertname) (`+firingAlerts+`)`, "{{alertname}}"))
}
