package main

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/etcdpulse/etcdpulse/agent"
	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/internal/demo"
	"github.com/etcdpulse/etcdpulse/probes"
)

// statusWidth is the widest line of the status screen: a default terminal
// is 80 columns, and a wrapped table is unreadable.
const statusWidth = 80

// statusBoard gathers what each status screen shows, and remembers across
// screens which member led when it was last seen answering.
type statusBoard struct {
	cluster    *demo.Cluster
	agents     []*agent.Agent
	registries []*prometheus.Registry // each agent's
	addrs      []string
	promConfig string
	prom       *demo.Prometheus
	chaos      bool
	events     *eventLog

	wasLeader map[string]bool // member label → led when it last answered
}

// statusScreen is one status screen's content.
type statusScreen struct {
	now time.Time
	// source is the member whose agent's view is shown.
	source string
	view   probes.View
	// wasLeader: members that led when they last answered.
	wasLeader  map[string]bool
	agents     []agentRow
	promConfig string
	promURL    string
	promErr    error
	chaos      bool
	events     []string
	next       string
	nextAt     time.Time
}

// agentRow is one agent: its member, metrics URL and fsync summary.
type agentRow struct {
	member, metrics, fsync string
}

func (b *statusBoard) screen(now time.Time) statusScreen {
	s := statusScreen{now: now, promConfig: b.promConfig, chaos: b.chaos}
	// Show the view of an agent whose member is running: the one any
	// operator would be reading on a healthy node.
	src := -1
	for i, a := range b.agents {
		if b.cluster.Members[i].Running() && a.Ready() {
			src = i
			break
		}
	}
	if src < 0 {
		src = 0
	}
	s.source, s.view = b.cluster.Members[src].Name, b.agents[src].View()
	if b.wasLeader == nil {
		b.wasLeader = map[string]bool{}
	}
	// Only an agreed leader says who leads: without one, every member
	// reads as not leading, the last leader included.
	for _, m := range s.view.Members {
		if m.Reachable && s.view.HasLeader {
			b.wasLeader[m.Label] = m.IsLeader
		}
	}
	s.wasLeader = b.wasLeader
	for i := range b.agents {
		s.agents = append(s.agents, agentRow{
			member:  b.cluster.Members[i].Name,
			metrics: "http://" + b.addrs[i] + "/metrics",
			fsync:   fsyncSummary(b.registries[i]),
		})
	}
	if b.prom != nil {
		s.promURL, s.promErr = b.prom.URL, b.prom.Exited()
	}
	if b.events != nil {
		s.events, s.next, s.nextAt = b.events.snapshot()
	}
	return s
}

// render formats the screen, every line within statusWidth columns.
func (s statusScreen) render(tty bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "etcdpulse demo — %s   (Ctrl-C to stop)\n\n", s.now.Format("15:04:05"))
	v := s.view
	leader := v.LeaderLabel()
	if leader == "" {
		leader = "NONE"
		if v.Leader != 0 {
			leader += " (last " + memberLabel(v, v.Leader) + ")"
		}
	}
	fmt.Fprintf(&b, "cluster (as seen by the agent of %s):\n", s.source)
	fmt.Fprintf(&b, "  leader %-10s term %-4d leader changes %d\n", leader, v.Term, v.LeaderChanges)
	fmt.Fprintf(&b, "  voting members %d, healthy %d, quorum %d, fault tolerance %d\n", v.Voters, v.HealthyVoters, v.QuorumSize, v.FaultTolerance)
	if note := toleranceNote(v); note != "" {
		fmt.Fprintf(&b, "  << %s\n", note)
	}
	const row = "  %-9s %-17s %-9s %-7s %8s %10s\n"
	fmt.Fprintf(&b, "\n"+row, "member", "role", "reachable", "healthy", "idx lag", "db size")
	for _, m := range v.Members {
		db := "-"
		if m.Status != nil {
			db = fmt.Sprintf("%.1f KiB", float64(m.Status.DBSize)/1024)
		}
		reachable, healthy := yesNo(m.Reachable), yesNo(m.Healthy)
		if m.Outcomes[probes.ProbeStatus].At.IsZero() {
			reachable, healthy = "-", "-"
		}
		fmt.Fprintf(&b, row, m.Label, s.role(m), reachable, healthy, fmt.Sprint(m.RaftIndexLag), db)
	}
	fmt.Fprintf(&b, "\n  %-9s %-31s %s\n", "agent of", "metrics", "fsync on its member's disk")
	for _, a := range s.agents {
		fmt.Fprintf(&b, "  %-9s %-31s %s\n", a.member, a.metrics, a.fsync)
	}
	b.WriteString("  Each agent shows its recent probe spans at /debug/tracez.\n")
	fmt.Fprintf(&b, "\nPrometheus configuration (the three agents and the alert rules):\n  %s\n", s.promConfig)
	switch {
	case s.promURL != "" && s.promErr != nil:
		fmt.Fprintf(&b, "Prometheus at %s stopped: %v\n", s.promURL, s.promErr)
	case s.promURL != "":
		fmt.Fprintf(&b, "Prometheus: %s   (alerts: %s/alerts)\n", s.promURL, s.promURL)
	}
	if s.chaos {
		b.WriteString("\nchaos events:\n")
		for _, l := range s.events {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		if s.next != "" {
			what := "next: " + s.next
			if s.next == "fault" && len(s.events) == 0 {
				what = "first fault"
			}
			// Both rounded up to the second, so that they agree.
			at := s.nextAt.Truncate(time.Second)
			if at.Before(s.nextAt) {
				at = at.Add(time.Second)
			}
			fmt.Fprintf(&b, "  %s at %s (in %s)\n", what, at.Format("15:04:05"), until(s.now, s.nextAt))
		}
	} else {
		b.WriteString("\nRun with --chaos to kill and restart members, the leader included.\n")
	}
	out := fit(b.String(), statusWidth)
	if tty {
		return "\033[H\033[2J" + out
	}
	return out + "\n"
}

// role names a member's part: a member that does not answer is down, and
// one that led when it was last seen (or is still the last agreed leader)
// is "down (was leader)".
func (s statusScreen) role(m probes.MemberView) string {
	switch {
	case m.Outcomes[probes.ProbeStatus].At.IsZero():
		return "not probed yet"
	case !m.Reachable && (m.IsLeader || s.wasLeader[m.Label] || (!s.view.HasLeader && s.view.Leader == m.ID && m.ID != 0)):
		return "down (was leader)"
	case !m.Reachable:
		return "down"
	case m.IsLeader:
		return "LEADER"
	case m.IsLearner:
		return "learner"
	}
	return "follower"
}

// memberLabel names the member with the given ID.
func memberLabel(v probes.View, id uint64) string {
	for _, m := range v.Members {
		if m.ID == id {
			return m.Label
		}
	}
	return probes.MemberIDLabel(id)
}

// until is the time from now to at, in whole seconds rounded up.
func until(now, at time.Time) time.Duration {
	secs := math.Ceil(at.Sub(now).Seconds())
	return time.Duration(max(secs, 0)) * time.Second
}

func toleranceNote(v probes.View) string {
	switch {
	case !v.MembershipKnown || !v.HealthKnown:
		// A member not probed yet would count as failed.
		return ""
	case v.FaultTolerance < 0:
		return "QUORUM LOST"
	case v.FaultTolerance == 0 && v.Voters >= 3:
		return "quorum at risk: one more failure loses it"
	}
	return ""
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// fsyncSummary reads an agent's fsync probe from its own registry: the p99
// of every fdatasync it timed, or why it does not measure.
func fsyncSummary(g prometheus.Gatherer) string {
	mfs, _ := g.Gather() // a failing collector leaves the others
	var hist *dto.Histogram
	var refused string
	stalled := false
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case collectors.FsyncDuration.Name:
				hist = m.GetHistogram()
			case collectors.FsyncStalled.Name:
				stalled = stalled || m.GetGauge().GetValue() == 1
			case collectors.FsyncRefused.Name:
				if m.GetGauge().GetValue() == 1 {
					for _, l := range m.GetLabel() {
						if l.GetName() == "reason" {
							refused = l.GetValue()
						}
					}
				}
			}
		}
	}
	switch {
	case hist == nil:
		return "probe off"
	case stalled:
		return "STALLED (disk op outstanding)"
	case refused != "":
		return "refused: " + refused
	case hist.GetSampleCount() == 0:
		return "no sample yet"
	}
	return fmt.Sprintf("p99 %s (%d syncs)", seconds(p99(hist)), hist.GetSampleCount())
}

// p99 is Prometheus' histogram_quantile(0.99) over a histogram's classic
// buckets: linear interpolation inside the bucket, the highest finite
// bound when the rank falls in +Inf.
func p99(h *dto.Histogram) float64 {
	rank := 0.99 * float64(h.GetSampleCount())
	lower, below := 0.0, uint64(0)
	for _, b := range h.GetBucket() {
		if float64(b.GetCumulativeCount()) >= rank {
			if b.GetCumulativeCount() == below {
				return b.GetUpperBound()
			}
			return lower + (b.GetUpperBound()-lower)*(rank-float64(below))/float64(b.GetCumulativeCount()-below)
		}
		lower, below = b.GetUpperBound(), b.GetCumulativeCount()
	}
	return lower
}

// seconds formats a latency at a readable scale.
func seconds(s float64) string {
	switch {
	case s < 1e-3:
		return fmt.Sprintf("%.0f µs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.2f ms", s*1e3)
	}
	return fmt.Sprintf("%.2f s", s)
}

// fit wraps every line longer than width at spaces, continuing with an
// indent; a word longer than a line (a long path) is cut.
func fit(text string, width int) string {
	var out strings.Builder
	for i, line := range strings.Split(text, "\n") {
		if i > 0 {
			out.WriteByte('\n')
		}
		out.WriteString(wrap(line, width))
	}
	return out.String()
}

func wrap(line string, width int) string {
	if utf8.RuneCountInString(line) <= width {
		return line
	}
	indent := "    " + strings.Repeat(" ", len(line)-len(strings.TrimLeft(line, " ")))
	if len(indent) > width/2 {
		indent = "    "
	}
	var lines []string
	cur := ""
	for _, word := range strings.Fields(line) {
		for utf8.RuneCountInString(word) > width-len(indent) {
			// Too long for any line: cut it.
			r := []rune(word)
			n := width - len(indent)
			lines, cur = appendLine(lines, cur), ""
			lines = append(lines, string(r[:n]))
			word = string(r[n:])
		}
		switch {
		case cur == "":
			cur = word
		case utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(word) <= width-len(indent):
			cur += " " + word
		default:
			lines, cur = append(lines, cur), word
		}
	}
	lines = appendLine(lines, cur)
	lead := line[:len(line)-len(strings.TrimLeft(line, " "))]
	for i := range lines {
		if i == 0 {
			lines[i] = lead + lines[i]
		} else {
			lines[i] = indent + lines[i]
		}
	}
	return strings.Join(lines, "\n")
}

func appendLine(lines []string, s string) []string {
	if s == "" {
		return lines
	}
	return append(lines, s)
}
