//go:build !linux

package testenv

import (
	"net"
	"testing"
)

// RefusedAddr returns a loopback host:port where connections are refused.
// Outside Linux it is a port that was free a moment ago: another process may
// take it while the test runs.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
