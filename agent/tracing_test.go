package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
	"github.com/etcdpulse/etcdpulse/probes"
)

// startTracedAgent runs an agent with the default schedule and the given
// tracer provider, served on a real loopback socket.
func startTracedAgent(t testing.TB, endpoints []string, tp trace.TracerProvider) *testAgent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Etcd.Endpoints = endpoints
	return serveAgent(t, Options{Config: &cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), TracerProvider: tp})
}

// recorder is an SDK tracer provider that keeps every ended span.
func recorder(t testing.TB) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}

// eventually polls f until it returns nil; deadlines are generous because
// the machines are shared.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, what, f)
}

func attrs(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		out[kv.Key] = kv.Value
	}
	return out
}

func children(spans []sdktrace.ReadOnlySpan, parent sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() && s.SpanContext().TraceID() == parent.SpanContext().TraceID() {
			out = append(out, s)
		}
	}
	return out
}

// TestTraceShape checks one round's trace: the round is the root, each
// probe run is its child with the attributes of its member, and the etcd
// client's RPCs are children of the probe runs that sent them. The
// OpenMetrics output links latency buckets to those traces.
func TestTraceShape(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 1, Mode: etcdtest.InProcess})
	tp, rec := recorder(t)
	a := startTracedAgent(t, c.ClientURLs(), tp)
	u, _ := url.Parse(c.ClientURLs()[0])
	port, _ := strconv.Atoi(u.Port())
	member := c.Member(0)

	var round sdktrace.ReadOnlySpan
	var runs []sdktrace.ReadOnlySpan
	// The first rounds run before the member list names the member and
	// the leader is known, and the probes that run rarely (the fsync
	// probe, refusing here without a data directory, and the certificate
	// handshakes) run in them: the round to look at is a later one whose
	// every run names the member and knows the leader.
	eventually(t, "a round with every probe, the member named", func() error {
		spans := rec.Ended()
		for _, s := range spans {
			if s.Name() != probes.SpanRound {
				continue
			}
			kids := children(spans, s)
			seen := map[string]bool{}
			settled := true
			for _, k := range kids {
				a := attrs(k.Attributes())
				seen[a[probes.AttrProbe].AsString()] = true
				if a[probes.AttrMemberName].AsString() != member.Name() || !a[probes.AttrHasLeader].AsBool() ||
					a[probes.AttrProbe].AsString() == probes.ProbeFsync {
					settled = false
				}
			}
			if settled && seen[probes.ProbeStatus] && seen[probes.ProbeMemberList] && seen[probes.ProbeReadLinearizable] && seen[probes.ProbeReadSerializable] {
				round, runs = s, kids
				return nil
			}
		}
		return errors.New("no such round yet")
	})
	if round.Parent().IsValid() {
		t.Errorf("round span has parent %v, want a root", round.Parent().SpanID())
	}
	ra := attrs(round.Attributes())
	if ra[probes.AttrLocalMember].AsString() != member.Name() || !ra[probes.AttrHasLeader].AsBool() || ra[probes.AttrVoters].AsInt64() != 1 {
		t.Errorf("round attributes = %v", round.Attributes())
	}

	spans := rec.Ended()
	seen := map[string]bool{}
	// The watch probe sends nothing while the members keep up, and the
	// hash check nothing on one member, or before the first rounds have
	// judged every member (its run is then not_ready).
	quiet := map[string]bool{probes.ProbeWatch: true, probes.ProbeHash: true}
	for _, s := range runs {
		a := attrs(s.Attributes())
		name := a[probes.AttrProbe].AsString()
		seen[name] = true
		if quiet[name] {
			continue
		}
		if s.Name() != probes.SpanProbePrefix+name {
			t.Errorf("span %q for probe %q", s.Name(), name)
		}
		// The certificate probe's handshakes are no etcd RPC: they have
		// the run's attributes, not the client's.
		rpcs := name != probes.ProbeCertificates
		want := map[attribute.Key]attribute.Value{
			"server.address":      attribute.StringValue("127.0.0.1"),
			"server.port":         attribute.IntValue(port),
			probes.AttrResult:     attribute.StringValue("success"),
			probes.AttrMemberName: attribute.StringValue(member.Name()),
			probes.AttrLeaderName: attribute.StringValue(member.Name()),
			probes.AttrLeaderID:   attribute.StringValue(probes.MemberIDLabel(member.ID())),
			probes.AttrHasLeader:  attribute.BoolValue(true),
			probes.AttrMemberID:   attribute.StringValue(probes.MemberIDLabel(member.ID())),
		}
		if rpcs {
			want["db.system.name"] = attribute.StringValue("etcd")
			want["rpc.system.name"] = attribute.StringValue("grpc")
		}
		for k, v := range want {
			if a[k] != v {
				t.Errorf("%s: %s = %v, want %v", s.Name(), k, a[k].Emit(), v.Emit())
			}
		}
		if d := a[probes.AttrDuration].AsFloat64(); d <= 0 {
			t.Errorf("%s: duration %v", s.Name(), d)
		}
		if s.Status().Code == codes.Error {
			t.Errorf("%s: status %v", s.Name(), s.Status())
		}
		if !rpcs {
			continue
		}
		// The client's RPCs are children of the run that sent them.
		rpc := a["rpc.method"].AsString()
		var found bool
		for _, k := range children(spans, s) {
			if k.Name() == rpc && k.SpanKind() == trace.SpanKindClient {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no child client span %q", s.Name(), rpc)
		}
		if name == probes.ProbeStatus {
			if a[probes.AttrMemberTerm].AsInt64() < 1 || a[probes.AttrMemberRaftIndex].AsInt64() < 1 || a[probes.AttrMemberLeaderID] != attribute.StringValue(probes.MemberIDLabel(member.ID())) {
				t.Errorf("status span attributes = %v", s.Attributes())
			}
		}
	}
	for _, p := range []string{probes.ProbeStatus, probes.ProbeMemberList, probes.ProbeReadLinearizable, probes.ProbeReadSerializable} {
		if !seen[p] {
			t.Errorf("no %s span in the round", p)
		}
	}

	t.Run("tracez", func(t *testing.T) {
		body := string(get(t, a.url+"/debug/tracez", ""))
		if !strings.Contains(body, probes.SpanRound) || !strings.Contains(body, "etcdpulse.probe.status") {
			t.Errorf("/debug/tracez does not list the probe spans:\n%.2000s", body)
		}
	})

	t.Run("exemplars", func(t *testing.T) {
		body := string(get(t, a.url+"/metrics", "application/openmetrics-text; version=1.0.0"))
		ex := regexp.MustCompile(`(?m)^etcdpulse_probe_duration_seconds_bucket\{[^}]*\} \d+ # \{[^}]*trace_id="([0-9a-f]{32})"[^}]*\} [0-9.e+-]+`)
		m := ex.FindAllStringSubmatch(body, -1)
		if len(m) == 0 {
			t.Fatalf("no exemplar on etcdpulse_probe_duration_seconds_bucket:\n%.3000s", body)
		}
		traces := map[string]bool{}
		for _, s := range rec.Ended() {
			traces[s.SpanContext().TraceID().String()] = true
		}
		for _, x := range m {
			if !traces[x[1]] {
				t.Errorf("exemplar trace %s is no recorded trace", x[1])
			}
		}
	})
}

// TestTraceLeaderChange kills the leader of three members: the round that
// sees the new one carries a leader_changed event with the old and new
// leader and the term, a quorum_changed event, and the runs against the
// dead member fail with an error status.
func TestTraceLeaderChange(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	old := leaderOf(t, c)
	var eps []string
	for _, m := range c.Members() {
		if m != old {
			eps = append(eps, m.ClientURL())
		}
	}
	eps = append(eps, old.ClientURL())
	tp, rec := recorder(t)
	a := startTracedAgent(t, eps, tp)
	eventually(t, "a healthy cluster", func() error {
		if v := a.View(); !v.HasLeader || v.HealthyVoters != 3 {
			return errors.New("not yet")
		}
		return nil
	})
	// The network probe (every 5 s) has measured the peers: its figure
	// goes into the change events.
	a.waitFor(t, "a network run", gauge("etcdpulse_probe_success", 1, "probe", "network"))
	killed := time.Now()
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}

	// Events after the kill; startup has its own quorum_changed while
	// the members are probed for the first time.
	event := func(name string, after time.Time) (sdktrace.Event, error) {
		for _, s := range rec.Ended() {
			for _, e := range s.Events() {
				if s.Name() == probes.SpanRound && e.Name == name && e.Time.After(after) {
					return e, nil
				}
			}
		}
		return sdktrace.Event{}, errors.New("no " + name + " event yet")
	}
	var changed, quorum sdktrace.Event
	eventually(t, "leader_changed and quorum_changed events", func() (err error) {
		if changed, err = event(probes.EventLeaderChanged, killed); err != nil {
			return err
		}
		quorum, err = event(probes.EventQuorumChanged, killed)
		return err
	})
	t.Logf("%s: %v", changed.Name, changed.Attributes)
	t.Logf("%s: %v", quorum.Name, quorum.Attributes)
	ea := attrs(changed.Attributes)
	if got := ea[probes.AttrPreviousLeaderName].AsString(); got != old.Name() {
		t.Errorf("previous leader = %q, want %s", got, old.Name())
	}
	if got := ea[probes.AttrPreviousLeaderID].AsString(); got != probes.MemberIDLabel(old.ID()) {
		t.Errorf("previous leader ID = %q, want %x", got, old.ID())
	}
	if got := ea[probes.AttrLeaderName].AsString(); got == old.Name() || got == "" {
		t.Errorf("new leader = %q", got)
	}
	if prev, term := ea[probes.AttrPreviousTerm].AsInt64(), ea[probes.AttrTerm].AsInt64(); term <= prev || prev < 1 {
		t.Errorf("term %d after %d", term, prev)
	}
	if _, ok := ea[probes.AttrApplyLag]; !ok {
		t.Errorf("no apply lag in %v", changed.Attributes)
	}
	// The network probe's last run explains the change too.
	if v := ea["etcdpulse.network.peer_connect_seconds"].AsFloat64(); v <= 0 {
		t.Errorf("peer connect figure = %v in %v, want the last measured connect", v, changed.Attributes)
	}
	qa := attrs(quorum.Attributes)
	if qa[probes.AttrVoters].AsInt64() != 3 || qa[probes.AttrPrevFaultTolerance].AsInt64() != 1 || qa[probes.AttrFaultTolerance].AsInt64() != 0 ||
		!slices.Equal(qa[probes.AttrUnhealthy].AsStringSlice(), []string{old.Name()}) {
		t.Errorf("quorum_changed attributes = %v", quorum.Attributes)
	}

	eventually(t, "a failed run against the dead member", func() error {
		for _, s := range rec.Ended() {
			a := attrs(s.Attributes())
			if a[probes.AttrMemberName].AsString() != old.Name() || a[probes.AttrResult].AsString() != "failure" {
				continue
			}
			if s.Status().Code != codes.Error || s.Status().Description == "" {
				return errors.New("failed run without an error status")
			}
			for _, e := range s.Events() {
				if e.Name == "exception" {
					return nil
				}
			}
			return errors.New("failed run without a recorded error")
		}
		return errors.New("none yet")
	})
}
