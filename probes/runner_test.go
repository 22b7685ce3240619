package probes

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// hangProbe's runs block until the test releases them, past their deadline
// if need be, as a call to a hung member does: the runner cannot interrupt
// a run, only stop waiting for it. It counts runs, and says when the first
// one started and when its deadline passed.
type hangProbe struct {
	release chan struct{}
	// started is closed when the first run starts, expired when a run's
	// deadline has passed (it still blocks until released).
	started, expired            chan struct{}
	startOnce, expireOnce       sync.Once
	inflight, maxInflight, runs atomic.Int32
}

func newHangProbe() *hangProbe {
	return &hangProbe{release: make(chan struct{}), started: make(chan struct{}), expired: make(chan struct{})}
}

func (p *hangProbe) Name() string { return "hang" }

func (p *hangProbe) Run(ctx context.Context, _ *Target) error {
	n := p.inflight.Add(1)
	defer p.inflight.Add(-1)
	p.runs.Add(1)
	for {
		m := p.maxInflight.Load()
		if n <= m || p.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	p.startOnce.Do(func() { close(p.started) })
	<-ctx.Done()
	p.expireOnce.Do(func() { close(p.expired) })
	<-p.release
	return ctx.Err()
}

// quickProbe answers at once and counts its runs.
type quickProbe struct{ runs atomic.Int32 }

func (p *quickProbe) Name() string { return "quick" }

func (p *quickProbe) Run(context.Context, *Target) error { p.runs.Add(1); return nil }

// waitClosed waits until ch is closed.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("%s: not within a minute", what)
	}
}

// A probe that hangs past its deadline is single-flight and does not hold
// up the other probes' rounds; its timeout is recorded as a failure that
// says so.
//
// The hung run is held until the runner has stopped: every round the runner
// ever started, during the run's deadline, after it and after the runner
// was cancelled, started while that run was in flight, so exactly one run
// proves single-flight whatever the timing.
func TestRunnerHungProbe(t *testing.T) {
	targets, err := NewTargets([]string{"http://127.0.0.1:1"}, ClientConfig{DialTimeout: time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer targets.Close()
	hang, quick := newHangProbe(), &quickProbe{}
	state := NewState()
	r := NewRunner(RunnerOptions{
		Targets: targets, State: state, Tick: 20 * time.Millisecond,
		Probes: []Scheduled{
			// One schedule for both: the hung probe is due in every round
			// the quick one runs in.
			{Probe: hang, Scope: EveryMember, Schedule: Schedule{Interval: 20 * time.Millisecond, Timeout: 500 * time.Millisecond}},
			{Probe: quick, Scope: EveryMember, Schedule: Schedule{Interval: 20 * time.Millisecond, Timeout: 500 * time.Millisecond}},
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	released := false
	defer func() {
		// A test that failed early must not leave the runner running.
		cancel()
		if !released {
			close(hang.release)
		}
		wg.Wait()
	}()

	waitClosed(t, hang.started, "the hung probe's first run")
	waitClosed(t, hang.expired, "the hung run's deadline")
	// Rounds go on past the hung run's deadline, and every one of them is
	// due to start the hung probe again.
	after := quick.runs.Load()
	testenv.Eventually(t, 30*time.Second, "five rounds after the hung run's deadline", func() error {
		if n := quick.runs.Load() - after; n < 5 {
			return fmt.Errorf("%d rounds", n)
		}
		return nil
	})
	cancel()
	close(hang.release)
	released = true
	wg.Wait() // Run returns once every run it started has returned

	if got := hang.runs.Load(); got != 1 {
		t.Errorf("hung probe started %d times while its first run was outstanding, want 1", got)
	}
	if m := hang.maxInflight.Load(); m != 1 {
		t.Errorf("hung probe had %d runs in flight at once, want 1", m)
	}
	o, ok := state.outcome(targets.Local(), "hang")
	// Nothing listens on port 1: the state is not READY.
	if !ok || o.OK || !strings.HasPrefix(o.Err, "hang: no answer within 500ms; connection ") {
		t.Errorf("outcome = %+v (recorded %v), want a timeout naming the connection state", o, ok)
	}
	if !r.Ready() {
		t.Error("runner not ready after its first round")
	}
}

// A run the runner's stop cuts short (before its deadline) is not recorded:
// it says nothing of etcd, and as a failure it would log the members as
// failing (context canceled) while the agent shuts down.
func TestRunnerStopRecordsNoFailure(t *testing.T) {
	targets, err := NewTargets([]string{"http://127.0.0.1:1"}, ClientConfig{DialTimeout: time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer targets.Close()
	hang := newHangProbe()
	close(hang.release) // each run returns as soon as its context ends
	state := NewState()
	logs := &testenv.Buffer{}
	r := NewRunner(RunnerOptions{
		Targets: targets, State: state, Tick: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Probes: []Scheduled{{Probe: hang, Scope: EveryMember, Schedule: Schedule{Interval: time.Hour, Timeout: time.Hour}}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	waitClosed(t, hang.started, "the probe's first run")
	cancel()
	wg.Wait()
	if o, ok := state.outcome(targets.Local(), "hang"); ok {
		t.Errorf("a run cut short by the stop was recorded: %+v", o)
	}
	if l := logs.Lines("canceled"); len(l) > 0 {
		t.Errorf("the stop logged failures: %q", l)
	}
}
