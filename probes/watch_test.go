package probes

import (
	"testing"
	"time"
)

// The lag bookkeeping: a member's lag is the age of the oldest write it
// has not served; writes every member served are dropped, and a member
// that never catches up keeps its oldest write however many follow.
func TestWatchLagBookkeeping(t *testing.T) {
	p := &WatchProbe{}
	t0 := time.Unix(1000, 0)
	fast := &memberWatch{target: &Target{member: Member{ID: 1, Name: "fast"}}, cancel: func() {}}
	slow := &memberWatch{target: &Target{member: Member{ID: 2, Name: "slow"}}, cancel: func() {}}
	p.Committed("/k", 10, t0) // the first write sets the key and clears watchers
	p.watchers = map[*Target]*memberWatch{fast.target: fast, slow.target: slow}
	fast.delivered, slow.delivered = 9, 9
	for i := int64(1); i <= maxWrites+10; i++ {
		p.Committed("/k", 10+i, t0.Add(time.Duration(i)*time.Second))
		fast.delivered = 10 + i
	}
	lags := p.Lags(t0.Add(time.Duration(maxWrites+20) * time.Second))
	if len(lags) != 2 || lags[0].Member != "fast" || lags[1].Member != "slow" {
		t.Fatalf("lags = %+v", lags)
	}
	if lags[0].Seconds != 0 {
		t.Errorf("fast lag = %v, want 0", lags[0].Seconds)
	}
	if want := float64(maxWrites + 20); lags[1].Seconds != want {
		t.Errorf("slow lag = %v s, want %v (its oldest unserved write kept)", lags[1].Seconds, want)
	}
	if len(p.writes) > maxWrites {
		t.Errorf("%d writes kept, want at most %d", len(p.writes), maxWrites)
	}
	// A serializable read shows the slow member at the latest revision.
	slow.served = 10 + maxWrites + 10
	p.prune()
	if lags := p.Lags(t0); lags[1].Seconds != 0 {
		t.Errorf("slow lag after catching up = %v, want 0", lags[1].Seconds)
	}
	if len(p.writes) != 1 {
		t.Errorf("%d writes kept once every member served them, want the last one", len(p.writes))
	}
}
