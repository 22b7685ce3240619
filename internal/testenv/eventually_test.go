package testenv

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// A condition that comes true is waited for, and asked no more once it is.
func TestEventuallyWaits(t *testing.T) {
	calls := 0
	Eventually(t, time.Minute, "the third call", func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("cond called %d times, want 3", calls)
	}
}

// fatalTB records a test's failure instead of failing the real test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// A condition that never comes true fails the test at the timeout, with
// what was awaited and the last error, after one last call at the deadline.
func TestEventuallyTimesOut(t *testing.T) {
	fake := &fatalTB{TB: t}
	calls := 0
	var lastCall time.Time
	const timeout = 100 * time.Millisecond
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Eventually(fake, timeout, "the impossible", func() error {
			calls++
			lastCall = time.Now()
			return errors.New("still not, call " + fmt.Sprint(calls))
		})
		t.Error("Eventually returned on a condition that never held")
	}()
	<-done
	want := fmt.Sprintf("the impossible: not within 100ms: still not, call %d", calls)
	if fake.msg != want {
		t.Errorf("failure %q, want %q", fake.msg, want)
	}
	if calls < 2 || lastCall.Sub(start) < timeout {
		t.Errorf("%d calls, the last %s after the start; want several, the last at or after the %s deadline", calls, lastCall.Sub(start), timeout)
	}
}
