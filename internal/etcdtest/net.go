package etcdtest

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
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

// tcpProxy forwards a member's advertised client port to the port the
// embedded etcd listens on. Cutting it drops every client connection at once
// and refuses new ones, which is what clients see when a real etcd process
// dies; it lets Kill of an in-process member look abrupt to clients even
// though embed's shutdown drains client RPCs gracefully.
type tcpProxy struct {
	listenAddr  string
	backendAddr string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{} // nil when stopped
	wg    sync.WaitGroup
}

func (p *tcpProxy) start() error {
	var ln net.Listener
	var err error
	// The port was ours before; retry briefly in case it is still being released.
	for i := 0; i < 20; i++ {
		ln, err = net.Listen("tcp", p.listenAddr)
		if err == nil || !isAddrInUse(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.ln = ln
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	p.wg.Add(1)
	go p.accept(ln)
	return nil
}

func (p *tcpProxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *tcpProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		if p.conns != nil {
			delete(p.conns, c)
		}
		c.Close()
	}
}

func (p *tcpProxy) handle(c net.Conn) {
	if !p.track(c) {
		c.Close()
		return
	}
	b, err := net.DialTimeout("tcp", p.backendAddr, 5*time.Second)
	if err != nil {
		p.untrack(c)
		return
	}
	if !p.track(b) {
		p.untrack(c, b)
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); done <- struct{}{} }() //nolint:errcheck
	go func() { io.Copy(c, b); done <- struct{}{} }() //nolint:errcheck
	<-done
	p.untrack(c, b)
	<-done
}

// stop closes the listener and every proxied connection.
func (p *tcpProxy) stop() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
