// Package delayproxy is a loopback TCP proxy for tests that adds latency to
// the bytes a client sends and drops connections in the ways a network
// does: refused, reset, or silently (a black hole).
//
// A userspace proxy cannot slow the TCP handshake itself: the kernel answers
// a SYN before accept(2) returns. What it can do is stop the kernel from
// answering: in Blackhole mode the proxy's accept queue is kept full, so the
// kernel drops new SYNs and clients retransmit them (the first time after
// about 1 s) until the mode changes or their connect times out. That makes
// a connect slow or hang on a real socket, without privileges.
//
// It is internal to etcdpulse: not public API.
package delayproxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// Mode says what the proxy does with connections.
type Mode int

const (
	// Forward forwards both ways, the client's bytes after the delay.
	Forward Mode = iota
	// Reset accepts connections and resets each when the client sends
	// its first bytes: the connect succeeds, the exchange fails. Open
	// connections are cut.
	Reset
	// Refuse stops listening: connects are refused. Open connections are
	// cut.
	Refuse
	// Blackhole drops new SYNs (the accept queue is full), so connects
	// hang until their timeout, and forwards nothing on open connections
	// until the mode changes.
	Blackhole
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Forward:
		return "forward"
	case Reset:
		return "reset"
	case Refuse:
		return "refuse"
	case Blackhole:
		return "blackhole"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Proxy forwards one loopback port to a target address.
type Proxy struct {
	target string
	addr   string

	mu      sync.Mutex
	mode    Mode
	delay   time.Duration
	changed chan struct{} // closed and replaced at each change of mode or delay
	ln      *net.TCPListener
	conns   map[net.Conn]struct{}
	heads   map[net.Conn][]byte // client side -> its first headLimit bytes
	drop    []byte              // cut connections whose head contains this
	plugs   map[string]net.Conn // local address -> client side of a connection filling the accept queue
	closed  bool
	wg      sync.WaitGroup
}

// New starts a proxy on 127.0.0.1 (a free port) forwarding to target.
func New(target string) (*Proxy, error) { return Listen("127.0.0.1:0", target) }

// Listen starts a proxy on the given IPv4 address forwarding to target. A
// port that was just released (by a proxy closed before) is retried for
// up to two seconds.
func Listen(addr, target string) (*Proxy, error) {
	p := &Proxy{target: target, changed: make(chan struct{}), conns: map[net.Conn]struct{}{}, heads: map[net.Conn][]byte{}, plugs: map[string]net.Conn{}}
	ln, err := listen(addr)
	for i := 0; i < 20 && errors.Is(err, syscall.EADDRINUSE); i++ {
		time.Sleep(100 * time.Millisecond)
		ln, err = listen(addr)
	}
	if err != nil {
		return nil, fmt.Errorf("delayproxy: %w", err)
	}
	p.addr = ln.Addr().String()
	p.ln = ln
	p.wg.Add(1)
	go p.serve(ln)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// URL is the proxy's address as a URL with the given scheme.
func (p *Proxy) URL(scheme string) string { return scheme + "://" + p.addr }

// SetDelay makes every chunk of bytes from a client reach the target d
// after it reached the proxy, on open connections too: each request on a
// kept-alive connection, and a TLS handshake, take d longer.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
	p.notifyLocked()
}

// headLimit bounds the client bytes kept per connection for SetDropMatching:
// enough for an HTTP request's headers.
const headLimit = 8 << 10

// SetDropMatching cuts every connection whose client has sent, within its
// first 8 KiB, bytes containing match: the open ones now, new ones as soon
// as the bytes arrive (nothing of a cut connection's chunk is forwarded).
// It singles out one caller among many, for example an etcd member by the
// X-Server-From header of its peer requests. nil or empty stops it.
func (p *Proxy) SetDropMatching(match []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = bytes.Clone(match)
	if len(p.drop) == 0 {
		return
	}
	for c, head := range p.heads {
		if bytes.Contains(head, p.drop) {
			c.Close() // its pumps end, and handle untracks both sides
		}
	}
}

// sawClient records a chunk from a client and reports whether the
// connection is to be dropped.
func (p *Proxy) sawClient(c net.Conn, data []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	head, ok := p.heads[c]
	if !ok {
		return false
	}
	if n := min(len(data), headLimit-len(head)); n > 0 {
		head = append(head, data[:n]...)
		p.heads[c] = head
	}
	return len(p.drop) > 0 && bytes.Contains(head, p.drop)
}

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode switches the mode; see Mode.
func (p *Proxy) SetMode(m Mode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("delayproxy: closed")
	}
	prev := p.mode
	if m == prev {
		return nil
	}
	p.mode = m
	p.notifyLocked()
	if prev == Blackhole {
		p.unplugLocked()
	}
	if m == Reset || m == Refuse {
		p.cutLocked()
	}
	switch {
	case m == Refuse:
		p.ln.Close()
		p.ln = nil
	case prev == Refuse:
		ln, err := relisten(p.addr)
		if err != nil {
			p.mode = prev
			return fmt.Errorf("delayproxy: listening again on %s: %w", p.addr, err)
		}
		p.ln = ln
		p.wg.Add(1)
		go p.serve(ln)
	}
	if m == Blackhole {
		// Wake a blocked Accept so the loop stops accepting, then fill
		// the queue.
		p.ln.SetDeadline(time.Now()) //nolint:errcheck
		p.plugLocked()
	}
	return nil
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.notifyLocked()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	p.unplugLocked()
	p.cutLocked()
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *Proxy) cutLocked() {
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
	p.heads = map[net.Conn][]byte{}
}

// plugLocked fills the accept queue with connections of its own until a
// connect no longer completes: from then on the kernel drops SYNs.
func (p *Proxy) plugLocked() {
	for range 16 {
		c, err := net.DialTimeout("tcp", p.addr, 100*time.Millisecond)
		if err != nil {
			return
		}
		p.plugs[c.LocalAddr().String()] = c
	}
}

func (p *Proxy) unplugLocked() {
	if p.ln != nil {
		p.ln.SetDeadline(time.Time{}) //nolint:errcheck
	}
	for _, c := range p.plugs {
		c.Close()
	}
	// The entries stay until the accept loop has taken the server sides
	// out of the queue; see isPlug.
}

// isPlug reports (and forgets) an accepted connection the proxy made
// itself to fill the queue.
func (p *Proxy) isPlug(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := c.RemoteAddr().String()
	if _, ok := p.plugs[key]; ok {
		delete(p.plugs, key)
		return true
	}
	return false
}

// state returns the mode, the delay and the channel closed at the next
// change.
func (p *Proxy) state() (Mode, time.Duration, chan struct{}, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.delay, p.changed, p.closed
}

func (p *Proxy) serve(ln *net.TCPListener) {
	defer p.wg.Done()
	for {
		mode, _, changed, closed := p.state()
		if closed {
			return
		}
		if mode == Blackhole {
			<-changed
			continue
		}
		c, err := ln.AcceptTCP()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // woken to stop accepting
			}
			return // closed
		}
		if p.isPlug(c) {
			c.Close()
			continue
		}
		if p.Mode() == Reset {
			p.wg.Add(1)
			go p.reset(c)
			continue
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

// reset answers the client's first bytes (or its close) with a RST. Not at
// accept: on loopback a RST that fast can beat the client's own view of its
// connect, and the connect would fail instead.
func (p *Proxy) reset(c *net.TCPConn) {
	defer p.wg.Done()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	c.Read(make([]byte, 1))                             //nolint:errcheck
	c.SetLinger(0)                                      //nolint:errcheck // RST, not FIN
	p.untrack(c)
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == Reset || p.mode == Refuse {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		delete(p.heads, c)
		c.Close()
	}
}

func (p *Proxy) handle(c net.Conn) {
	defer p.wg.Done()
	if !p.track(c) {
		c.Close()
		return
	}
	b, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.untrack(c)
		return
	}
	if !p.track(b) {
		p.untrack(c, b)
		return
	}
	p.mu.Lock()
	if _, open := p.conns[c]; open {
		p.heads[c] = nil
	}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pump(b, c, true); done <- struct{}{} }()
	go func() { p.pump(c, b, false); done <- struct{}{} }()
	<-done
	p.untrack(c, b)
	<-done
}

type chunk struct {
	data []byte
	at   time.Time
}

// pump copies src to dst. A reader stamps each chunk with its arrival; the
// writer sends it once the delay (for the client's direction) has passed
// and the proxy is not a black hole, so latency adds up like a wire's, not
// per round trip of the copy loop.
func (p *Proxy) pump(dst, src net.Conn, delayed bool) {
	chunks := make(chan chunk, 64)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32*1024)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{buf[:n], time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		src.Close()
		for range chunks { //nolint:revive // drain so the reader exits
		}
	}()
	for ch := range chunks {
		if delayed && p.sawClient(src, ch.data) {
			return
		}
		if !p.wait(ch.at, delayed) {
			return
		}
		if _, err := dst.Write(ch.data); err != nil {
			return
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite() //nolint:errcheck
	}
}

// wait blocks until a chunk that arrived at at may be written; false means
// the proxy closed or dropped the connection.
func (p *Proxy) wait(at time.Time, delayed bool) bool {
	for {
		mode, delay, changed, closed := p.state()
		if closed || mode == Reset || mode == Refuse {
			return false
		}
		var t *time.Timer
		switch {
		case mode == Blackhole:
			t = time.NewTimer(time.Hour) // until the mode changes
		case delayed && time.Until(at.Add(delay)) > 0:
			t = time.NewTimer(time.Until(at.Add(delay)))
		default:
			return true
		}
		select {
		case <-changed:
			t.Stop()
		case <-t.C:
			if mode != Blackhole {
				return true
			}
		}
	}
}
