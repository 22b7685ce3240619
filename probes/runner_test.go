package probes

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hangProbe blocks until its deadline, counting runs in flight.
type hangProbe struct {
	inflight, maxInflight, runs atomic.Int32
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
	<-ctx.Done()
	return ctx.Err()
}

// quickProbe answers at once and counts its runs.
type quickProbe struct{ runs atomic.Int32 }

func (p *quickProbe) Name() string { return "quick" }

func (p *quickProbe) Run(context.Context, *Target) error { p.runs.Add(1); return nil }

// A probe that hangs until its deadline is single-flight and does not hold
// up the other probes' rounds; its timeout is recorded as a failure that
// says so.
func TestRunnerHungProbe(t *testing.T) {
	targets, err := NewTargets([]string{"http://127.0.0.1:1"}, ClientConfig{DialTimeout: time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer targets.Close()
	hang, quick := &hangProbe{}, &quickProbe{}
	state := NewState()
	r := NewRunner(RunnerOptions{
		Targets: targets, State: state, Tick: 20 * time.Millisecond,
		Probes: []Scheduled{
			{Probe: hang, Scope: EveryMember, Schedule: Schedule{Interval: 20 * time.Millisecond, Timeout: 500 * time.Millisecond}},
			{Probe: quick, Scope: EveryMember, Schedule: Schedule{Interval: 20 * time.Millisecond, Timeout: 500 * time.Millisecond}},
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.Run(ctx) }()

	// Wait until the quick probe has run many times while the hung probe
	// ran once, then until the hung probe's deadline has passed.
	deadline := time.Now().Add(30 * time.Second)
	for quick.runs.Load() < 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := hang.runs.Load(); quick.runs.Load() >= 10 && got != 1 {
		t.Errorf("hung probe started %d times while its first run was outstanding, want 1", got)
	}
	for time.Now().Before(deadline) {
		if o, ok := state.outcome(targets.Local(), "hang"); ok {
			// Nothing listens on port 1: the state is not READY.
			if o.OK || !strings.HasPrefix(o.Err, "hang: no answer within 500ms; connection ") {
				t.Errorf("outcome = %+v, want a timeout naming the connection state", o)
			}
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if m := hang.maxInflight.Load(); m != 1 {
		t.Errorf("hung probe had %d runs in flight at once, want 1", m)
	}
	if !r.Ready() {
		t.Error("runner not ready after its first round")
	}
}
