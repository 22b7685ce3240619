//go:build !linux

package delayproxy

import "net"

// listen opens a TCP listener. Outside Linux the backlog is the system's,
// so Blackhole cannot fill the accept queue and connects still complete.
func listen(addr string) (*net.TCPListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

func relisten(addr string) (*net.TCPListener, error) { return listen(addr) }
