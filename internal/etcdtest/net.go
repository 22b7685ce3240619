package etcdtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Ports are drawn at random from a range below Linux's default ephemeral
// range (32768-60999), so that they do not collide with ports the kernel hands
// out for outgoing connections or for listeners on port 0 in other test
// packages. Each port is checked by binding it and is never handed out twice
// in one process.
const (
	portMin = 20000
	portMax = 32000
)

var ports struct {
	sync.Mutex
	used  map[int]bool
	force []int // tests: ports to hand out next, unchecked
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ports.Lock()
	defer ports.Unlock()
	if ports.used == nil {
		ports.used = map[int]bool{}
	}
	if len(ports.force) > 0 {
		p := ports.force[0]
		ports.force = ports.force[1:]
		return p, nil
	}
	for range 500 {
		p := portMin + rand.IntN(portMax-portMin)
		if ports.used[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		ports.used[p] = true
		return p, nil
	}
	// Fall back to a kernel-chosen port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("etcdtest: no free loopback port: %w", err)
	}
	defer ln.Close()
	p := ln.Addr().(*net.TCPAddr).Port
	ports.used[p] = true
	return p, nil
}

// errAddrInUse marks start failures caused by a port taken by someone else.
var errAddrInUse = errors.New("address already in use")

func isAddrInUse(err error) bool {
	return err != nil && (errors.Is(err, errAddrInUse) || errors.Is(err, syscall.EADDRINUSE) ||
		strings.Contains(err.Error(), "address already in use"))
}
