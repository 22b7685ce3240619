package testenv

import (
	"testing"
	"time"
)

// Polling starts at pollFirst and doubles up to pollMax: a condition that
// holds almost at once costs the test little, and one that takes seconds
// (an election, a scrape) is not asked hundreds of times on a machine that
// other tests share.
const (
	pollFirst = 5 * time.Millisecond
	pollMax   = 100 * time.Millisecond
)

// Eventually calls cond until it returns nil and fails the test when it has
// not within timeout, saying what was awaited and cond's last error. cond
// runs on the test's goroutine and may itself fail the test at once (for an
// error that waiting cannot cure). It is called once more at the deadline,
// so a condition met while the test slept still counts.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := pollFirst
	for {
		err := cond()
		if err == nil {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
			return
		}
		time.Sleep(min(wait, left))
		wait = min(2*wait, pollMax)
	}
}
