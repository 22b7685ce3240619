package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/etcdpulse/etcdpulse/probes"
)

// Gate is the maintenance gate's answer: whether a member can be taken
// down now (drained, rebooted, upgraded) without losing quorum, and why.
type Gate struct {
	// Member is the member asked about, by its label.
	Member string `json:"member"`
	// Allowed: the member can be taken down now.
	Allowed bool `json:"allowed"`
	// Leader: the member is the leader; move leadership first (Commands).
	Leader bool `json:"leader"`
	// Reasons say why not, one per problem; when allowed, what was
	// checked.
	Reasons []string `json:"reasons"`
	// Commands are what to run first, when something can be done.
	Commands []string `json:"commands,omitempty"`
	// What the answer was made from.
	Voters        int `json:"voters"`
	HealthyVoters int `json:"healthy_voters"`
	QuorumSize    int `json:"quorum_size"`
	// HealthyVotersAfter is how many voters stay healthy with the member
	// down.
	HealthyVotersAfter int `json:"healthy_voters_after"`
}

// gateMaxLag is how many raft entries a member may be behind the highest
// committed index and still count as up to date: a round's worth of
// writes on a busy control plane.
const gateMaxLag = 1000

// maintenanceGate answers whether the member named (by name, label or
// hexadecimal ID) can be taken down now, from a cluster view. endpoints
// are the client URLs the agent was given, for the commands it suggests.
func maintenanceGate(v probes.View, member string, etcdctl string) Gate {
	g := Gate{Member: member, Voters: v.Voters, HealthyVoters: v.HealthyVoters, QuorumSize: v.QuorumSize}
	no := func(format string, args ...any) { g.Reasons = append(g.Reasons, fmt.Sprintf(format, args...)) }
	if !v.MembershipKnown {
		no("the member list is not known: no member answered")
		return g
	}
	target, ok := findMember(v, member)
	if !ok {
		no("no member %q; the members are %s", member, memberList(v.Members))
		return g
	}
	g.Member = target.Label
	if !v.HealthKnown {
		no("the health of every voter is not known yet")
	}
	voter := !target.IsLearner
	g.HealthyVotersAfter = v.HealthyVoters
	if voter && target.Healthy {
		g.HealthyVotersAfter--
	}
	if voter && g.HealthyVotersAfter < v.QuorumSize {
		no("with %s down, %d of %d voters would be healthy, fewer than the quorum of %d: the cluster would stop accepting writes", target.Label, g.HealthyVotersAfter, v.Voters, v.QuorumSize)
	}
	var upToDate int
	for _, m := range v.Members {
		if m.ID == target.ID && m.Label == target.Label {
			continue
		}
		switch {
		case !m.Healthy && m.CauseKnown && m.Cause != "":
			no("%s is unhealthy (%s)", m.Label, m.Cause)
		case !m.Healthy:
			no("%s is unhealthy or its health is unknown", m.Label)
		case lagging(m):
			no("%s is lagging: %s", m.Label, lagText(m))
		}
		if !m.IsLearner && m.Healthy && !lagging(m) {
			upToDate++
		}
	}
	if voter && upToDate == 0 && len(v.Members) > 1 {
		no("%s is the only up-to-date member", target.Label)
	}
	for _, a := range v.Alarms {
		no("alarm %s is active on %s", a.Type, v.MemberLabel(a.MemberID))
	}
	if target.IsLeader {
		g.Leader = true
		no("%s is the leader: move leadership to another member first, then ask again", target.Label)
		if to, ok := successor(v, target); ok {
			g.Commands = append(g.Commands, fmt.Sprintf("%s --endpoints=%s move-leader %x", etcdctl, clientURL(target), to.ID))
		}
	}
	if len(g.Reasons) == 0 {
		g.Allowed = true
		g.Reasons = []string{fmt.Sprintf("with %s down, %d of %d voters stay healthy (quorum %d), no other member is down or lagging, and no alarm is active", target.Label, g.HealthyVotersAfter, v.Voters, v.QuorumSize)}
	}
	return g
}

// findMember finds a member by label, name or hexadecimal ID.
func findMember(v probes.View, s string) (probes.MemberView, bool) {
	for _, m := range v.Members {
		if m.Label == s || m.Name == s && s != "" || fmt.Sprintf("%x", m.ID) == strings.ToLower(s) {
			return m, true
		}
	}
	return probes.MemberView{}, false
}

// lagging: the member is behind the others, by raft entries or by the
// write probe's watch.
func lagging(m probes.MemberView) bool {
	if m.RaftIndexLag > gateMaxLag {
		return true
	}
	o, ok := m.Outcomes[probes.ProbeWatch]
	return ok && !o.OK && o.Reason == probes.ReasonBehind
}

func lagText(m probes.MemberView) string {
	if o, ok := m.Outcomes[probes.ProbeWatch]; ok && !o.OK && o.Reason == probes.ReasonBehind {
		return o.Err
	}
	return strconv.FormatUint(m.RaftIndexLag, 10) + " raft entries behind"
}

// successor is the healthy voter best placed to lead: the least behind.
func successor(v probes.View, leader probes.MemberView) (probes.MemberView, bool) {
	var cands []probes.MemberView
	for _, m := range v.Members {
		if m.ID != leader.ID && !m.IsLearner && m.Healthy && m.ID != 0 {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return probes.MemberView{}, false
	}
	slices.SortStableFunc(cands, func(a, b probes.MemberView) int {
		switch {
		case a.RaftIndexLag < b.RaftIndexLag:
			return -1
		case a.RaftIndexLag > b.RaftIndexLag:
			return 1
		}
		return strings.Compare(a.Label, b.Label)
	})
	return cands[0], true
}

// Maintenance answers the maintenance gate for a member from the agent's
// latest view.
func (a *Agent) Maintenance(member string) Gate {
	return maintenanceGate(a.View(), member, a.cfg.Etcd.etcdctl())
}

// serveMaintenance answers GET /maintenance?member=NAME, or about the
// agent's own member without one: 200 when the member can be taken down
// now, 409 when not, with the reasons; 503 before the first probe round.
// ?output=json answers in JSON.
func (a *Agent) serveMaintenance(w http.ResponseWriter, r *http.Request) {
	member := r.URL.Query().Get("member")
	v := a.View()
	if member == "" {
		member = localLabel(v)
	}
	var g Gate
	code := http.StatusOK
	switch {
	case member == "" && v.MembershipKnown && a.Ready():
		// The member list is known, and the agent's endpoint is in none.
		g = Gate{Reasons: []string{fmt.Sprintf("no member at this agent's endpoint %s in etcd's member list: it was removed, or the endpoint is not this node's member; name one with ?member=NAME", a.cfg.Etcd.Endpoints[0])}}
		code = http.StatusConflict
	case member == "":
		g = Gate{Reasons: []string{"the agent's own member is not identified yet: name one with ?member=NAME"}}
		code = http.StatusServiceUnavailable
	case !a.Ready():
		g = Gate{Member: member, Reasons: []string{"the agent has not finished its first probe round"}}
		code = http.StatusServiceUnavailable
	default:
		if g = a.Maintenance(member); !g.Allowed {
			code = http.StatusConflict
		}
	}
	if r.URL.Query().Get("output") == "json" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(g)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprint(w, g.Text())
}

// Text is the answer for people: yes or no, then a line per reason and
// per command.
func (g Gate) Text() string {
	var b strings.Builder
	if g.Allowed {
		fmt.Fprintf(&b, "yes: %s can be taken down now\n", g.Member)
	} else {
		fmt.Fprintf(&b, "no: %s cannot be taken down now\n", g.Member)
	}
	for _, r := range g.Reasons {
		fmt.Fprintf(&b, "  - %s\n", r)
	}
	for _, c := range g.Commands {
		fmt.Fprintf(&b, "  run: %s\n", c)
	}
	return b.String()
}

// clientURL is the URL to reach a member at: the one the agent probes, or
// its first advertised client URL.
func clientURL(m probes.MemberView) string {
	if m.Endpoint != "" {
		return m.Endpoint
	}
	if len(m.ClientURLs) > 0 {
		return m.ClientURLs[0]
	}
	return "<client URL of " + m.Label + ">"
}

// etcdctl is the etcdctl command line that reaches etcd as the agent
// does, for the commands a report suggests (the password is left for the
// user to add).
func (e EtcdConfig) etcdctl() string {
	parts := []string{"etcdctl"}
	t := e.TLS
	if t.CAFile != "" {
		parts = append(parts, "--cacert="+t.CAFile)
	}
	if t.CertFile != "" {
		parts = append(parts, "--cert="+t.CertFile, "--key="+t.KeyFile)
	}
	if t.InsecureSkipVerify {
		parts = append(parts, "--insecure-skip-tls-verify")
	}
	if e.Username != "" {
		parts = append(parts, "--user="+e.Username)
	}
	return strings.Join(parts, " ")
}

// localLabel is the label of the agent's own member, "" until identified.
func localLabel(v probes.View) string {
	for _, m := range v.Members {
		if m.Local && m.ID != 0 {
			return m.Label
		}
	}
	return ""
}
