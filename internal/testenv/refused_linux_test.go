package testenv

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// The address refuses connections, and no other socket can take its port
// while the test runs.
func TestRefusedAddr(t *testing.T) {
	addr := RefusedAddr(t)
	for range 3 {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("connected to %s", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v, want connection refused", addr, err)
		}
	}
	l, err := net.Listen("tcp", addr)
	if err == nil {
		l.Close()
		t.Fatalf("another listener took %s", addr)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("listen %s: %v, want address already in use", addr, err)
	}
}
