package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
	"github.com/etcdpulse/etcdpulse/probes"
)

// The detection benchmarks measure how long each fault takes to show in an
// agent's /metrics at default settings; docs/benchmarks.md records the
// figures and the command. They run only with -bench, for instance
//
//	ETCDPULSE_ETCD_BIN=/tmp/etcd go test -run '^$' -bench BenchmarkDetection -benchtime 5x -timeout 30m ./agent/
//
// One iteration injects one fault, so it lasts seconds: use -benchtime Nx.

const (
	// detectPoll is how often the benchmark scrapes while a fault is pending.
	detectPoll = 20 * time.Millisecond
	// detectGiveUp bounds one detection; far above the 5 s goal, it only
	// keeps a broken agent from hanging the run.
	detectGiveUp = 60 * time.Second
	// phaseSpread is the range of the random pause before each injection:
	// the default probe interval, so that faults land at a random point of
	// the agents' probe rounds. Without it, a fault injected right after a
	// settle lands just after a round and shows the worst case each time.
	phaseSpread = DefaultInterval
	// requestRateWindow is the sampling window of BenchmarkRequestRate per
	// iteration.
	requestRateWindow = 30 * time.Second
)

// benchEnv is one 3-member cluster of etcd processes with one agent per
// member at default settings; agents[i] sits beside c.Member(i).
type benchEnv struct {
	c      *etcdtest.Cluster
	agents []*testAgent
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	return newBenchEnvWith(b, etcdtest.Options{Size: 3, Mode: etcdtest.Process})
}

func newBenchEnvWith(b *testing.B, opts etcdtest.Options) *benchEnv {
	b.Helper()
	c := etcdtest.Start(b, opts)
	e := &benchEnv{c: c, agents: agentsFor(b, c)}
	e.settle(b)
	return e
}

func (e *benchEnv) agentOf(m *etcdtest.Member) *testAgent { return e.agents[indexOf(e.c, m)] }

// leader waits until the running, non-frozen members agree on a leader.
func (e *benchEnv) leader(b testing.TB) *etcdtest.Member {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := e.c.WaitLeader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// follower returns the i-th follower (i = 0 or 1) of leader l.
func (e *benchEnv) follower(l *etcdtest.Member, i int) *etcdtest.Member {
	return e.c.Member((indexOf(e.c, l) + 1 + i%2) % 3)
}

// settle waits, untimed, until every member runs, etcd agrees on a leader
// and every agent reports a healthy cluster with that leader.
func (e *benchEnv) settle(b testing.TB) {
	b.Helper()
	var err error
	for range 3 {
		l := e.leader(b)
		err = nil
		for i, a := range e.agents {
			if _, err = awaitAll(time.Now(), 45*time.Second, watch{a, "agent of " + e.c.Member(i).Name(), append(healthyCluster(3), leaderIs(l.Name()))}); err != nil {
				break
			}
		}
		if err == nil {
			return
		}
	}
	b.Fatalf("cluster not healthy between iterations: %v", err)
}

// watch is a condition awaited on one agent's /metrics.
type watch struct {
	a    *testAgent
	what string
	exps []expect
}

// awaitAll scrapes every pending watch every detectPoll until each has held
// once, and returns for each how long after t0 it was first seen.
func awaitAll(t0 time.Time, limit time.Duration, ws ...watch) ([]time.Duration, error) {
	seen := make([]time.Duration, len(ws))
	done := make([]bool, len(ws))
	lastErr := make([]error, len(ws))
	pending := len(ws)
	for {
		for i, w := range ws {
			if done[i] {
				continue
			}
			if lastErr[i] = w.a.check(w.exps...); lastErr[i] == nil {
				seen[i], done[i] = time.Since(t0), true
				pending--
			}
		}
		if pending == 0 {
			return seen, nil
		}
		if time.Since(t0) > limit {
			var errs []string
			for i, w := range ws {
				if !done[i] {
					errs = append(errs, fmt.Sprintf("%s: %v", w.what, lastErr[i]))
				}
			}
			return seen, fmt.Errorf("not seen within %v: %s", limit, strings.Join(errs, "; "))
		}
		time.Sleep(detectPoll)
	}
}

// faultRun collects the detection times of one sub-benchmark.
type faultRun struct {
	b       *testing.B
	t0      time.Time
	samples []time.Duration
	extra   map[string][]time.Duration
	// context is appended to the next detection's log line.
	context string
}

// inject starts the timer, takes t0 and injects the fault. f should make
// its syscall (SIGKILL, SIGSTOP, exec) at once.
func (r *faultRun) inject(what string, f func() error) {
	r.b.StartTimer()
	r.t0 = time.Now()
	if err := f(); err != nil {
		r.b.Fatalf("%s: %v", what, err)
	}
}

// detect waits until every watch holds, stops the timer and records the
// time from t0 until the last of them was first seen.
func (r *faultRun) detect(ws ...watch) time.Duration {
	seen, err := awaitAll(r.t0, detectGiveUp, ws...)
	r.b.StopTimer()
	if err != nil {
		r.b.Fatal(err)
	}
	d := slices.Max(seen)
	r.samples = append(r.samples, d)
	var parts []string
	for i, w := range ws {
		parts = append(parts, fmt.Sprintf("%s %.3fs", w.what, seen[i].Seconds()))
	}
	r.b.Logf("detected in %.3fs (%s)%s", d.Seconds(), strings.Join(parts, ", "), r.context)
	r.context = ""
	return d
}

// record adds a sample measured outside detect.
func (r *faultRun) record(d time.Duration, log string) {
	r.samples = append(r.samples, d)
	r.b.Logf("detected in %.3fs (%s)", d.Seconds(), log)
}

// note records a secondary duration reported as s-median/<name>.
func (r *faultRun) note(name string, d time.Duration) {
	if r.extra == nil {
		r.extra = map[string][]time.Duration{}
	}
	r.extra[name] = append(r.extra[name], d)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (r *faultRun) report() {
	if len(r.samples) == 0 {
		return
	}
	r.b.ReportMetric(median(r.samples).Seconds(), "s-median/detect")
	r.b.ReportMetric(slices.Max(r.samples).Seconds(), "s-max/detect")
	r.b.ReportMetric(slices.Min(r.samples).Seconds(), "s-min/detect")
	for name, ds := range r.extra {
		r.b.ReportMetric(median(ds).Seconds(), "s-median/"+name)
	}
}

// run runs body once per iteration on a settled cluster. body calls
// r.inject and r.detect (the timed part), then restores the cluster.
func (e *benchEnv) run(b *testing.B, body func(r *faultRun, iter int)) {
	r := &faultRun{b: b}
	iter := 0
	for b.Loop() {
		b.StopTimer()
		e.settle(b)
		time.Sleep(rand.N(phaseSpread))
		body(r, iter)
		b.StopTimer() // in case body did not detect
		e.settle(b)
		iter++
		b.StartTimer()
	}
	r.report()
}

func restartAll(b testing.TB, ms ...*etcdtest.Member) {
	b.Helper()
	for _, m := range ms {
		if err := m.Restart(); err != nil {
			b.Fatalf("restart %s: %v", m.Name(), err)
		}
	}
}

func thaw(b testing.TB, m *etcdtest.Member) {
	b.Helper()
	if err := m.Thaw(); err != nil {
		b.Fatalf("thaw %s: %v", m.Name(), err)
	}
}

// BenchmarkDetection measures, per fault, the time from injecting it on a
// 3-member cluster of etcd processes until an agent at default settings
// shows it in /metrics. Reported: s-median/detect, s-max/detect (seconds
// over the iterations); ns/op is the mean detection time.
func BenchmarkDetection(b *testing.B) {
	e := newBenchEnv(b)
	b.ResetTimer()

	b.Run("leader-killed", func(b *testing.B) {
		e.run(b, func(r *faultRun, _ int) {
			old := e.leader(b)
			watcher := e.agents[(indexOf(e.c, old)+1)%3]
			before, ok := mustScrapeTB(b, watcher).value(mChanges)
			if !ok {
				b.Fatalf("%s absent", mChanges)
			}
			var survivors []*etcdtest.Member
			for _, m := range e.c.Members() {
				if m != old {
					survivors = append(survivors, m)
				}
			}
			r.inject("kill the leader", old.Kill)
			stop := make(chan struct{})
			elected := electionTime(r.t0, survivors, old.ID(), stop)
			trace := traceView(r.t0, watcher, stop)
			seen, err := awaitAll(r.t0, detectGiveUp, watch{watcher, "new leader counted", []expect{
				gauge(mHasLeader, 1), leaderIsNot(old.Name()), counterAtLeast(mChanges, before+1),
				gauge(mMember, 0, "member", old.Name()), gauge(mTolerance, 0),
			}})
			b.StopTimer()
			close(stop)
			if err != nil {
				b.Fatal(err)
			}
			r.record(seen[0], fmt.Sprintf("killed leader %s; etcd: %s; agent of %s: %s", old.Name(), <-elected, watcher.name(e), <-trace))
			restartAll(b, old)
		})
	})

	b.Run("follower-killed", func(b *testing.B) {
		e.run(b, func(r *faultRun, i int) {
			l := e.leader(b)
			victim := e.follower(l, i)
			r.inject("kill a follower", victim.Kill)
			r.detect(watch{e.agentOf(l), "leader's agent", []expect{
				gauge(mMember, 0, "member", victim.Name()), gauge(mReachable, 0, "member", victim.Name()),
				gauge(mHealthy, 2), gauge(mTolerance, 0), gauge(mHasLeader, 1),
			}})
			restartAll(b, victim)
		})
	})

	b.Run("follower-frozen", func(b *testing.B) {
		e.run(b, func(r *faultRun, i int) {
			l := e.leader(b)
			victim := e.follower(l, i)
			r.inject("SIGSTOP a follower", victim.Freeze)
			r.detect(watch{e.agentOf(l), "leader's agent", []expect{
				gauge(mMember, 0, "member", victim.Name()), gauge(mReachable, 0, "member", victim.Name()),
				gauge(mHealthy, 2), gauge(mTolerance, 0), gauge(mHasLeader, 1),
			}})
			thaw(b, victim)
		})
	})

	b.Run("own-member-killed", func(b *testing.B) {
		e.run(b, func(r *faultRun, i int) {
			victim := e.follower(e.leader(b), i)
			r.inject("kill the agent's own member", victim.Kill)
			r.detect(watch{e.agentOf(victim), "own agent", []expect{
				gauge(mUp, 0), gauge(mMember, 0, "member", victim.Name()),
				gauge(mHasLeader, 1), gauge(mHealthy, 2), gauge(mTolerance, 0),
			}})
			restartAll(b, victim)
		})
	})

	b.Run("own-member-frozen", func(b *testing.B) {
		e.run(b, func(r *faultRun, i int) {
			victim := e.follower(e.leader(b), i)
			r.inject("SIGSTOP the agent's own member", victim.Freeze)
			r.detect(watch{e.agentOf(victim), "own agent", []expect{
				gauge(mUp, 0), gauge(mMember, 0, "member", victim.Name()),
				gauge(mHasLeader, 1), gauge(mHealthy, 2), gauge(mTolerance, 0),
			}})
			thaw(b, victim)
		})
	})

	b.Run("two-of-three-stopped", func(b *testing.B) {
		e.run(b, func(r *faultRun, i int) {
			// The leader and one follower die; the other follower survives.
			l := e.leader(b)
			survivor := e.follower(l, i)
			other := e.follower(l, i+1)
			r.inject("kill two members", func() error {
				if err := l.Kill(); err != nil {
					return err
				}
				return other.Kill()
			})
			r.detect(watch{e.agentOf(survivor), "survivor's agent", []expect{
				gauge(mUp, 1), gauge(mHasLeader, 0), gauge(mVoters, 3), gauge(mQuorum, 2),
				gauge(mHealthy, 0), gaugeBelow(mTolerance, 0), gauge(mMember, 0, "member", survivor.Name()),
			}})
			restartAll(b, l, other)
		})
	})

	// A killed follower restarted after 5 s (a quick process restart),
	// and after 30 s (a longer outage): the agents' connections to the
	// member are in gRPC's reconnect backoff meanwhile.
	b.Run("recovery-after-restart", func(b *testing.B) { e.recovery(b, 5*time.Second) })
	b.Run("recovery-after-30s-down", func(b *testing.B) { e.recovery(b, 30*time.Second) })
}

// BenchmarkDetectionWedged measures, on etcd built with its failpoints
// (ETCDPULSE_ETCD_FAILPOINTS_BIN), the time from stalling one member's WAL
// (raftBeforeSave, wedgeStall) until the agent of another member shows it
// unhealthy and wedged: a follower, and the leader (which the others
// replace meanwhile). s-median/unhealthy is the time until
// etcdpulse_member_healthy alone reads 0.
func BenchmarkDetectionWedged(b *testing.B) {
	e := newBenchEnvWith(b, etcdtest.Options{Size: 3, Mode: etcdtest.Process, Failpoints: true})
	b.ResetTimer()
	wedge := func(b *testing.B, r *faultRun, victim *etcdtest.Member, watcher *testAgent) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stop := make(chan struct{})
		r.inject("stall the WAL of "+victim.Name(), func() error {
			return victim.SetFailpoint(ctx, etcdtest.FailpointRaftBeforeSave, wedgeStall)
		})
		unhealthy := make(chan time.Duration, 1)
		go func() {
			d, _ := awaitAll(r.t0, detectGiveUp, watch{watcher, "unhealthy", []expect{gauge(mMember, 0, "member", victim.Name())}})
			unhealthy <- d[0]
		}()
		views := firstUnhealthy(r.t0, watcher, victim.Name(), probes.CauseWedged, stop)
		r.context = fmt.Sprintf("; %s, agent of %s", victim.Name(), watcher.name(e))
		r.detect(watch{watcher, "wedged", []expect{
			gauge(mMember, 0, "member", victim.Name()), reasonIs(victim.Name(), probes.CauseWedged),
			gauge(mReachable, 1, "member", victim.Name()), gauge(mHealthy, 2), gauge(mTolerance, 0),
		}})
		close(stop)
		r.note("unhealthy", <-unhealthy)
		b.Logf("view: %v", <-views)
		if err := victim.ClearFailpoint(ctx, etcdtest.FailpointRaftBeforeSave); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("follower-wedged", func(b *testing.B) {
		e.run(b, func(r *faultRun, i int) {
			l := e.leader(b)
			wedge(b, r, e.follower(l, i), e.agentOf(l))
		})
	})
	b.Run("leader-wedged", func(b *testing.B) {
		e.run(b, func(r *faultRun, i int) {
			l := e.leader(b)
			wedge(b, r, l, e.agentOf(e.follower(l, i)))
		})
	})
}

// recovery kills a follower (untimed, at a random phase of the probe
// rounds), restarts it once it has been down for downtime, and times from
// the restart call until every agent reports a healthy cluster again.
func (e *benchEnv) recovery(b *testing.B, downtime time.Duration) {
	e.run(b, func(r *faultRun, i int) {
		l := e.leader(b)
		victim := e.follower(l, i)
		killed := time.Now()
		if err := victim.Kill(); err != nil {
			b.Fatal(err)
		}
		// Seen down by the agents first, then down for downtime in all.
		if _, err := awaitAll(killed, detectGiveUp,
			watch{e.agentOf(l), "leader's agent", []expect{gauge(mMember, 0, "member", victim.Name())}},
			watch{e.agentOf(victim), "own agent", []expect{gauge(mUp, 0)}},
		); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Until(killed.Add(downtime)))
		r.inject("restart", victim.Restart)
		ready := time.Since(r.t0)
		var ws []watch
		for j, a := range e.agents {
			ws = append(ws, watch{a, "agent of " + e.c.Member(j).Name(), healthyCluster(3)})
		}
		r.context = fmt.Sprintf("; %s restarted after %.1fs down, serving %.3fs after the restart call", victim.Name(), r.t0.Sub(killed).Seconds(), ready.Seconds())
		d := r.detect(ws...)
		r.note("restart-ready", ready)
		r.note("detect-after-ready", d-ready)
	})
}

func (a *testAgent) name(e *benchEnv) string {
	for i, x := range e.agents {
		if x == a {
			return e.c.Member(i).Name()
		}
	}
	return "?"
}

// electionTime polls the survivors' status until they agree on a leader
// other than old, and sends when that was first seen (since t0).
func electionTime(t0 time.Time, survivors []*etcdtest.Member, old uint64, stop <-chan struct{}) <-chan string {
	out := make(chan string, 1)
	go func() {
		for {
			var lead uint64
			agree := true
			for _, m := range survivors {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				st, err := m.Status(ctx)
				cancel()
				if err != nil || st.Leader == 0 || st.Leader == old || (lead != 0 && st.Leader != lead) {
					agree = false
					break
				}
				lead = st.Leader
			}
			if agree {
				for _, m := range survivors {
					if m.ID() == lead {
						out <- fmt.Sprintf("new leader %s at %.3fs", m.Name(), time.Since(t0).Seconds())
						return
					}
				}
			}
			select {
			case <-stop:
				out <- "no new leader seen"
				return
			case <-time.After(detectPoll):
			}
		}
	}()
	return out
}

// traceView records the changes of an agent's view (leader, disagreement,
// reachable and healthy members) until stop, as one line. With
// ETCDPULSE_BENCH_TRACE set, each step also shows every member's last
// status (leader, term) and probe outcomes (ok@start+duration, seconds
// from t0).
func traceView(t0 time.Time, a *testAgent, stop <-chan struct{}) <-chan string {
	detail := os.Getenv("ETCDPULSE_BENCH_TRACE") != ""
	out := make(chan string, 1)
	go func() {
		var steps []string
		last := ""
		snap := func() {
			v := a.View()
			var reach, healthy []string
			for _, m := range v.Members {
				if m.Reachable {
					reach = append(reach, m.Label)
				}
				if m.Healthy {
					healthy = append(healthy, m.Label)
				}
			}
			leader := v.LeaderLabel()
			if v.LeaderDisagreement {
				leader = "disagreement"
			} else if leader == "" {
				leader = "none"
			}
			cur := fmt.Sprintf("leader %s, reachable [%s], healthy [%s]", leader, strings.Join(reach, " "), strings.Join(healthy, " "))
			if detail {
				var det []string
				for _, m := range v.Members {
					st := "-"
					if m.Status != nil {
						st = fmt.Sprintf("L%x/T%d", m.Status.Leader%4096, m.Status.Term)
					}
					var outs []string
					for p, o := range m.Outcomes {
						outs = append(outs, fmt.Sprintf("%s:%v@%.2f+%.2f", p, o.OK, o.At.Sub(t0).Seconds(), o.Duration.Seconds()))
					}
					sort.Strings(outs)
					det = append(det, fmt.Sprintf("%s{%s %s}", m.Label, st, strings.Join(outs, " ")))
				}
				cur += fmt.Sprintf(" (view of %.2fs: %s)", v.At.Sub(t0).Seconds(), strings.Join(det, " "))
			}
			if cur != last {
				steps = append(steps, fmt.Sprintf("%.3fs %s", time.Since(t0).Seconds(), cur))
				last = cur
			}
		}
		for {
			snap()
			select {
			case <-stop:
				snap()
				out <- strings.Join(steps, " | ")
				return
			case <-time.After(detectPoll):
			}
		}
	}()
	return out
}

func mustScrapeTB(b testing.TB, a *testAgent) metrics {
	b.Helper()
	m, err := a.scrape()
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// requestSample is one agent's etcdpulse_etcd_requests_total, summed over
// methods per member, with the time of the round the counts come from.
type requestSample struct {
	at       float64 // etcdpulse_last_round_timestamp_seconds
	byMember map[string]float64
	byMethod map[string]map[string]float64 // member -> method -> count
}

func sampleRequests(b testing.TB, a *testAgent) requestSample {
	b.Helper()
	m := mustScrapeTB(b, a)
	at, ok := m.value("etcdpulse_last_round_timestamp_seconds")
	if !ok {
		b.Fatal("etcdpulse_last_round_timestamp_seconds absent")
	}
	s := requestSample{at: at, byMember: map[string]float64{}, byMethod: map[string]map[string]float64{}}
	mf, ok := m["etcdpulse_etcd_requests_total"]
	if !ok {
		b.Fatal("etcdpulse_etcd_requests_total absent")
	}
	for _, sm := range mf.Metric {
		var member, method string
		for _, l := range sm.Label {
			switch l.GetName() {
			case "member":
				member = l.GetValue()
			case "method":
				method = l.GetValue()
			}
		}
		v := sm.GetCounter().GetValue()
		s.byMember[member] += v
		if s.byMethod[member] == nil {
			s.byMethod[member] = map[string]float64{}
		}
		s.byMethod[member][method] += v
	}
	return s
}

// BenchmarkRequestRate measures the requests per second agents at default
// settings send to each member of a healthy 3-member cluster, from the
// agents' own etcdpulse_etcd_requests_total over requestRateWindow per
// iteration (rates use the agents' round timestamps, not the scrape times).
func BenchmarkRequestRate(b *testing.B) {
	c := etcdtest.Start(b, etcdtest.Options{Size: 3, Mode: etcdtest.Process})
	e := &benchEnv{c: c, agents: agentsFor(b, c)}
	e.settle(b)
	time.Sleep(3 * time.Second) // every pinned connection up, counters running

	names := make([]string, 3)
	for i := range names {
		names[i] = c.Member(i).Name()
	}
	before := make([]requestSample, 3)
	for i, a := range e.agents {
		before[i] = sampleRequests(b, a)
	}
	for b.Loop() {
		time.Sleep(requestRateWindow)
	}
	b.StopTimer()
	after := make([]requestSample, 3)
	for i, a := range e.agents {
		after[i] = sampleRequests(b, a)
	}

	var own, other, perAgent []float64
	toMember := map[string]float64{}
	for i := range e.agents {
		dt := after[i].at - before[i].at
		var total float64
		var line []string
		for _, name := range names {
			rate := (after[i].byMember[name] - before[i].byMember[name]) / dt
			total += rate
			toMember[name] += rate
			if name == names[i] {
				own = append(own, rate)
			} else {
				other = append(other, rate)
			}
			var methods []string
			for method, n := range after[i].byMethod[name] {
				methods = append(methods, fmt.Sprintf("%s %.2f", method, (n-before[i].byMethod[name][method])/dt))
			}
			sort.Strings(methods)
			line = append(line, fmt.Sprintf("%s %.2f (%s)", name, rate, strings.Join(methods, ", ")))
		}
		perAgent = append(perAgent, total)
		b.Logf("agent of %s, req/s over %.1fs: %s", names[i], dt, strings.Join(line, "; "))
	}
	var line []string
	var allRates []float64
	for _, name := range names {
		line = append(line, fmt.Sprintf("%s %.2f", name, toMember[name]))
		allRates = append(allRates, toMember[name])
	}
	b.Logf("all agents, req/s received: %s", strings.Join(line, "; "))
	mean := func(xs []float64) float64 {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	b.ReportMetric(mean(own), "req/s-own-member")
	b.ReportMetric(mean(other), "req/s-other-member")
	b.ReportMetric(mean(perAgent), "req/s-per-agent")
	b.ReportMetric(mean(allRates), "req/s-per-member-all-agents")
	b.ReportMetric(slices.Max(allRates), "req/s-max-member-all-agents")
}

// BenchmarkWriteThroughput measures etcd's write throughput with one agent
// per member at default settings (the fsync probe on each member's own data
// directory) against the same cluster without agents, in alternating
// windows of one run (ABBA order), so that the shared machine's drift
// falls on both sides. Each window runs a fixed write load (64 clients,
// 256-byte values, over 1000 keys) through a client balanced over every
// member for ETCDPULSE_BENCH_WINDOW (default 10 s), and the history is
// compacted after each, as the Kubernetes API server does. One iteration is
// one pair of windows. Reported: the median of the pairs' with/without ratios
// (ratio-median), and the puts/s medians. bench/write-throughput.sh runs
// it; docs/benchmarks.md records the figures.
func BenchmarkWriteThroughput(b *testing.B) {
	window := 10 * time.Second
	if v := os.Getenv("ETCDPULSE_BENCH_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("ETCDPULSE_BENCH_WINDOW: %v", err)
		}
		window = d
	}
	c := etcdtest.Start(b, etcdtest.Options{Size: 3, Mode: etcdtest.Process})
	cli := c.Client(b)
	load := func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), window)
		defer cancel()
		val := strings.Repeat("v", 256)
		var n atomic.Int64
		var wg sync.WaitGroup
		for w := range 64 {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					if _, err := cli.Put(ctx, fmt.Sprintf("/bench/%d", (w*7919+i)%1000), val); err == nil {
						n.Add(1)
					}
				}
			})
		}
		start := time.Now()
		wg.Wait()
		return float64(n.Load()) / time.Since(start).Seconds()
	}
	// Between windows, untimed, the history is compacted, as the
	// Kubernetes API server does every 5 minutes: without it the store
	// grows by every window's puts, and every check of the agents' hash
	// probe (run at each start) reads all of it.
	compact := func() {
		resp, err := cli.Get(context.Background(), "/bench/none")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cli.Compact(context.Background(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
			b.Fatal(err)
		}
	}
	window1 := func(on bool) float64 {
		defer compact()
		if !on {
			return load()
		}
		agents := agentsWith(b, c, func(m *etcdtest.Member, cfg *Config) { cfg.Etcd.DataDir = m.DataDir() })
		for _, a := range agents {
			a.waitFor(b, "agent ready", append(healthyCluster(3), gauge("etcdpulse_write_enabled", 1))...)
		}
		defer func() {
			for _, a := range agents {
				a.stop()
			}
		}()
		return load()
	}
	load() // warm up: the cluster's first writes are slower
	var with, without, ratios []float64
	for i := 0; b.Loop(); i++ {
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false}
		}
		var pair [2]float64
		for _, on := range order {
			r := window1(on)
			if on {
				pair[1] = r
				with = append(with, r)
			} else {
				pair[0] = r
				without = append(without, r)
			}
			b.Logf("pair %d, agents %v: %.0f puts/s", i, on, r)
		}
		ratios = append(ratios, pair[1]/pair[0])
	}
	b.StopTimer()
	med := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	fmt.Fprintf(os.Stderr, "BenchmarkWriteThroughput ratios with/without: %.3f\n", ratios)
	mean := 0.0
	for _, r := range ratios {
		mean += r / float64(len(ratios))
	}
	b.ReportMetric(med(ratios), "ratio-median")
	b.ReportMetric(mean, "ratio-mean")
	b.ReportMetric(med(with)/med(without), "ratio-of-medians")
	b.ReportMetric(med(with), "puts/s-with")
	b.ReportMetric(med(without), "puts/s-without")
}

// BenchmarkHashCheck measures what the hash consistency check costs on a
// large key space: 3 etcd processes holding 100 000 keys of 5 KiB (about
// 500 MB of values; ETCDPULSE_BENCH_HASH_KEYS changes the count),
// compacted once. One iteration is one check each way the agent runs it,
// the members one after the other: at the compaction's revision, which
// etcd 3.6+ answers from the hash it kept (s-median/check-compaction), and
// at the current revision, which reads each member's whole store
// (s-median/check-full, and the slowest member's s-max/hashkv-full), with
// a light write load's p99 put latency during the full checks against
// between them (p99-ms-during-full, p99-ms-between), alternately in one
// run.
func BenchmarkHashCheck(b *testing.B) {
	keys := 100_000
	if v := os.Getenv("ETCDPULSE_BENCH_HASH_KEYS"); v != "" {
		if _, err := fmt.Sscan(v, &keys); err != nil {
			b.Fatalf("ETCDPULSE_BENCH_HASH_KEYS: %v", err)
		}
	}
	c := etcdtest.Start(b, etcdtest.Options{Size: 3, Mode: etcdtest.Process})
	cli := c.Client(b)
	ctx := context.Background()
	val := strings.Repeat("x", 5*1024)
	start := time.Now()
	var compactRev int64
	for i := 0; i < keys; i += 100 {
		var ops []clientv3.Op
		for j := i; j < min(i+100, keys); j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("/bench/hash/%08d", j), val))
		}
		resp, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			b.Fatal(err)
		}
		compactRev = resp.Header.Revision
	}
	if _, err := cli.Compact(ctx, compactRev, clientv3.WithCompactPhysical()); err != nil {
		b.Fatal(err)
	}
	st, err := c.Member(0).Status(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d keys in %v; member db %d MB", keys, time.Since(start).Round(time.Second), st.DbSize>>20)

	// A light write load, timed put by put, beside the checks.
	var mu sync.Mutex
	var lat []time.Duration
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; loadCtx.Err() == nil; i++ {
				t0 := time.Now()
				if _, err := cli.Put(loadCtx, fmt.Sprintf("/bench/load/%d-%d", w, i%100), "v"); err == nil {
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	take := func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		out := lat
		lat = nil
		return out
	}
	p99 := func(ds []time.Duration) float64 {
		if len(ds) == 0 {
			return 0
		}
		slices.Sort(ds)
		return float64(ds[len(ds)*99/100]) / float64(time.Millisecond)
	}
	clients := make([]*clientv3.Client, 3)
	for i := range clients {
		clients[i] = c.Member(i).Client(b)
	}
	// check hashes every member at rev, one after the other, as the agent
	// does; it returns the total and the slowest member's time.
	check := func(rev int64) (total, slowest time.Duration) {
		t0 := time.Now()
		for _, mc := range clients {
			s := time.Now()
			if _, err := mc.HashKV(ctx, mc.Endpoints()[0], rev); err != nil {
				b.Fatal(err)
			}
			slowest = max(slowest, time.Since(s))
		}
		return time.Since(t0), slowest
	}
	var atCompaction, full, slowest []time.Duration
	var during, between []time.Duration
	for b.Loop() {
		take()
		time.Sleep(3 * time.Second)
		between = append(between, take()...)
		d, _ := check(compactRev)
		atCompaction = append(atCompaction, d)
		resp, err := cli.Get(ctx, "/bench/none", clientv3.WithSerializable())
		if err != nil {
			b.Fatal(err)
		}
		take()
		d, s := check(resp.Header.Revision - 10) // applied by every member
		during = append(during, take()...)
		full, slowest = append(full, d), append(slowest, s)
	}
	b.StopTimer()
	stopLoad()
	wg.Wait()
	b.ReportMetric(median(atCompaction).Seconds(), "s-median/check-compaction")
	b.ReportMetric(median(full).Seconds(), "s-median/check-full")
	b.ReportMetric(slices.Max(slowest).Seconds(), "s-max/hashkv-full")
	b.ReportMetric(float64(st.DbSize>>20), "MB-db")
	b.ReportMetric(p99(during), "p99-ms-during-full")
	b.ReportMetric(p99(between), "p99-ms-between")
}

// BenchmarkWriteProbeBytes measures what the write probe writes to each
// member's WAL per put, from etcd's own etcd_disk_wal_write_bytes_total on
// a 3-member cluster of etcd processes: one iteration is one put of the
// real probe (its key, its value, its lease). Reported: WAL bytes per put
// on a member (B/put-wal) and, at the default interval, per hour per agent
// (B/hour-wal-per-member); every member writes each put to its WAL.
func BenchmarkWriteProbeBytes(b *testing.B) {
	c := etcdtest.Start(b, etcdtest.Options{Size: 3, Mode: etcdtest.Process})
	walBytes := func() float64 {
		b.Helper()
		resp, err := http.Get(c.Member(1).ClientURL() + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			b.Fatal(err)
		}
		v, ok := testenv.Sample(mfs, "etcd_disk_wal_write_bytes_total")
		if !ok {
			b.Fatal("etcd_disk_wal_write_bytes_total absent")
		}
		return v
	}
	targets, err := probes.NewTargets(c.ClientURLs()[:1], probes.ClientConfig{DialTimeout: 5 * time.Second}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer targets.Close()
	p := &probes.WriteProbe{Prefix: DefaultKeyPrefix, LeaseTTL: writeLeaseTTL}
	defer p.Close(context.Background()) //nolint:errcheck
	ctx := context.Background()
	if err := p.Run(ctx, targets.Local()); err != nil { // the lease, granted once
		b.Fatal(err)
	}
	time.Sleep(time.Second)
	before := walBytes()
	n := 0
	for b.Loop() {
		if err := p.Run(ctx, targets.Local()); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.StopTimer()
	time.Sleep(time.Second) // the follower's WAL has every put
	per := (walBytes() - before) / float64(n)
	b.ReportMetric(per, "B/put-wal")
	b.ReportMetric(per*float64(time.Hour/DefaultWriteInterval), "B/hour-wal-per-member")
}
