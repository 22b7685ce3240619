package dashboards

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// RunbookBase is where the runbooks are published; an alert's runbook is
// RunbookBase + <Alert>.md, from docs/runbooks/ in this repository. The
// alerts package points its runbook_url annotations at the same place.
const RunbookBase = "https://github.com/etcdpulse/etcdpulse/blob/main/docs/runbooks/"

// Runbook returns the runbook URL of an alert.
func Runbook(alert string) string { return RunbookBase + alert + ".md" }

// Tags are the tags of every etcdpulse dashboard; the dashboards' links
// menu lists the dashboards with these tags.
var Tags = []string{"etcd", "etcdpulse"}

// Every panel and query reads from the datasource the user picks.
const datasourceVar = "${datasource}"

func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr(datasourceVar)}
}

// Matchers. Node and cluster identity come from Prometheus target labels:
// cluster-level panels filter by cluster only and aggregate over the agents,
// node-level panels filter by the chosen agents (instances) as well.
const (
	clusterMatchers = `cluster=~"$cluster"`
	nodeMatchers    = `cluster=~"$cluster", instance=~"$instance"`
)

// cluster returns a selector of metric over every agent of the chosen
// clusters, with extra matchers.
func cluster(metric string, extra ...string) string {
	return metric + "{" + strings.Join(append([]string{clusterMatchers}, extra...), ", ") + "}"
}

// node returns a selector of metric from the chosen agents, with extra
// matchers.
func node(metric string, extra ...string) string {
	return metric + "{" + strings.Join(append([]string{nodeMatchers}, extra...), ", ") + "}"
}

// rate is the per-second rate of a counter selector over $__rate_interval.
func rate(selector string) string {
	return "rate(" + selector + "[$__rate_interval])"
}

// quantile is the q-quantile of a histogram (selector of its _bucket
// series), keeping the labels in by.
func quantile(q float64, by, selector string) string {
	return fmt.Sprintf("histogram_quantile(%g, sum by (%s, le) (%s))", q, by, rate(selector))
}

// localMember keeps the series of expr (labelled cluster, instance, member)
// whose member is the one the agent sits beside: each agent's view of its
// own member.
func localMember(expr string) string {
	return expr + " and on (cluster, instance, member) " + node("etcdpulse_local_member_info")
}

// prometheusQuery is a range query with a legend.
func prometheusQuery(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(datasource()).
		Expr(expr).
		LegendFormat(legend)
}

// instantQuery is an instant query for stats and tables.
func instantQuery(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheusQuery(expr, legend).Instant()
}

// tableQuery is an instant query returning a table, one row per series.
func tableQuery(expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		Datasource(datasource()).
		Expr(expr).
		Format(prometheus.PromQueryFormatTable).
		Instant()
}

// runbookLinks links a panel to the runbooks of the alerts it shows.
func runbookLinks(alerts []string) []cog.Builder[dashboard.DashboardLink] {
	links := make([]cog.Builder[dashboard.DashboardLink], 0, len(alerts))
	for _, a := range alerts {
		links = append(links, dashboard.NewDashboardLinkBuilder("Runbook: "+a).
			Type(dashboard.DashboardLinkTypeLink).
			Url(Runbook(a)).
			Tooltip("What "+a+" means and what to do").
			TargetBlank(true))
	}
	return links
}

// step is a threshold: from value on, color.
type step struct {
	value float64
	color string
}

// thresholds starts at base and changes color at each step.
func thresholds(base string, steps ...step) *dashboard.ThresholdsConfigBuilder {
	out := []dashboard.Threshold{{Color: base}}
	for _, s := range steps {
		out = append(out, dashboard.Threshold{Value: cog.ToPtr(s.value), Color: s.color})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(out)
}

// mapping displays a value as text in a color.
type mapping struct {
	value, text, color string
}

// valueMappings turns mappings into Grafana's value mappings.
func valueMappings(ms ...mapping) []dashboard.ValueMapping {
	options := map[string]dashboard.ValueMappingResult{}
	for i, m := range ms {
		options[m.value] = dashboard.ValueMappingResult{Text: cog.ToPtr(m.text), Color: cog.ToPtr(m.color), Index: cog.ToPtr(int32(i))}
	}
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: options}}}
}

// okMappings display a 0/1 gauge where 1 is good.
func okMappings(ok, bad string) []dashboard.ValueMapping {
	return valueMappings(mapping{"1", ok, "green"}, mapping{"0", bad, "red"})
}

// defaultTimeseries is a time series panel with a title, description, unit
// and links to the runbooks of alerts.
func defaultTimeseries(title, description, unit string, alerts ...string) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Unit(unit).
		Datasource(datasource()).
		Links(runbookLinks(alerts)).
		Span(12).
		Height(8).
		LineWidth(1).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		SpanNulls(common.BoolOrFloat64{Bool: cog.ToPtr(false)}).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending))
}

// withThresholdLines draws the thresholds of an alert on a time series
// panel as dashed lines.
func withThresholdLines(p *timeseries.PanelBuilder, base string, steps ...step) *timeseries.PanelBuilder {
	return p.Thresholds(thresholds(base, steps...)).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))
}

// defaultStat is a stat panel showing the last value of each series.
func defaultStat(title, description, unit string, alerts ...string) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Unit(unit).
		Datasource(datasource()).
		Links(runbookLinks(alerts)).
		Span(4).
		Height(4).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		TextMode(common.BigValueTextModeAuto).
		Orientation(common.VizOrientationAuto)
}

// defaultStateTimeline shows 0/1 gauges per series as coloured bands.
func defaultStateTimeline(title, description string, mappings []dashboard.ValueMapping, alerts ...string) *statetimeline.PanelBuilder {
	return statetimeline.NewPanelBuilder().
		Title(title).
		Description(description).
		Unit("none").
		Datasource(datasource()).
		Links(runbookLinks(alerts)).
		Mappings(mappings).
		Thresholds(thresholds("green")).
		Span(12).
		Height(8).
		ShowValue(common.VisibilityModeNever).
		MergeValues(true).
		FillOpacity(80).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(false)).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeSingle).
			Sort(common.SortOrderNone))
}

// defaultTable is a table panel of instant queries.
func defaultTable(title, description, unit string, alerts ...string) *table.PanelBuilder {
	return table.NewPanelBuilder().
		Title(title).
		Description(description).
		Unit(unit).
		Datasource(datasource()).
		Links(runbookLinks(alerts)).
		Span(24).
		Height(8).
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{}))
}

// queryVariable is a multi-value label_values variable with an All option
// that matches anything, series without the label included, refreshed
// when the time range changes.
func queryVariable(name, label, query, description string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Description(description).
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{
			Selected: cog.ToPtr(true),
			Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		})
}

// newDashboard is an etcdpulse dashboard with the common settings, the
// datasource, cluster and instance variables and links to the other
// etcdpulse dashboards; the caller adds the panels.
func newDashboard(uid, title, description string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags(Tags).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("30s").
		Time("now-3h", "now").
		Timezone(common.TimeZoneBrowser).
		Link(dashboard.NewDashboardLinkBuilder("etcdpulse").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"etcdpulse"}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true)).
		Link(dashboard.NewDashboardLinkBuilder("Runbooks").
			Type(dashboard.DashboardLinkTypeLink).
			Url(RunbookBase).
			Icon("doc").
			TargetBlank(true)).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Description("The Prometheus that scrapes the etcdpulse agents.").
			Type("prometheus").
			Multi(false)).
		WithVariable(queryVariable("cluster", "Cluster",
			`label_values(etcdpulse_build_info, cluster)`,
			"The cluster target label; All also matches agents scraped without one.")).
		WithVariable(queryVariable("instance", "Instance",
			`label_values(etcdpulse_build_info{cluster=~"$cluster"}, instance)`,
			"The agents (one beside each etcd member), by their instance target label."))
}

// finish builds a dashboard and numbers its panels and queries, which the
// builders leave unset.
func finish(b *dashboard.DashboardBuilder) (dashboard.Dashboard, error) {
	d, err := b.Build()
	if err != nil {
		return d, err
	}
	// The SDK places links in the controls menu, where Grafana 12 folds
	// them away; unset, they show above the panels.
	for i := range d.Links {
		d.Links[i].Placement = nil
	}
	id := uint32(0)
	for _, p := range d.Panels {
		id++
		switch {
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		case p.Panel != nil:
			p.Panel.Id = cog.ToPtr(id)
			for i := range p.Panel.Links {
				p.Panel.Links[i].Placement = nil
			}
			for i, t := range p.Panel.Targets {
				if q, ok := t.(prometheus.Dataquery); ok {
					q.RefId = cog.ToPtr(string(rune('A' + i)))
					p.Panel.Targets[i] = q
				}
			}
		}
	}
	return d, nil
}
