package delayproxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echo serves a line-echo server on loopback.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c) //nolint:errcheck
			}()
		}
	}()
	return ln.Addr().String()
}

func start(t *testing.T) *Proxy {
	t.Helper()
	p, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// roundTrip sends a line on c and times its echo.
func roundTrip(t *testing.T, c net.Conn) (time.Duration, error) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	start := time.Now()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	_, err := bufio.NewReader(c).ReadString('\n')
	return time.Since(start), err
}

func TestDelay(t *testing.T) {
	p := start(t)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := roundTrip(t, c); err != nil {
		t.Fatal(err)
	}
	// The delay applies to a connection opened before it was set.
	p.SetDelay(200 * time.Millisecond)
	d, err := roundTrip(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if d < 200*time.Millisecond {
		t.Errorf("round trip with 200ms delay took %v", d)
	}
}

func TestRefuseAndRecover(t *testing.T) {
	p := start(t)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := p.SetMode(Refuse); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(t, c); err == nil {
		t.Error("an open connection still works after Refuse")
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("connect succeeded in Refuse mode")
	}
	if err := p.SetMode(Forward); err != nil {
		t.Fatal(err)
	}
	c2, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		t.Fatalf("connect after Forward: %v", err)
	}
	defer c2.Close()
	if _, err := roundTrip(t, c2); err != nil {
		t.Fatalf("round trip after Forward: %v", err)
	}
}

func TestReset(t *testing.T) {
	p := start(t)
	if err := p.SetMode(Reset); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		t.Fatalf("connect in Reset mode: %v (the kernel should complete it)", err)
	}
	defer c.Close()
	if _, err := roundTrip(t, c); err == nil {
		t.Error("round trip succeeded in Reset mode")
	}
}

func TestBlackhole(t *testing.T) {
	p := start(t)
	open, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := p.SetMode(Blackhole); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("connect completed in Blackhole mode")
	}
	// A connect started in the black hole completes once it ends, after
	// a SYN retransmission.
	go func() {
		// The sleep is the black hole's length, which the connect must
		// be seen to wait out.
		time.Sleep(200 * time.Millisecond)
		p.SetMode(Forward) //nolint:errcheck
	}()
	start := time.Now()
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("connect after the black hole ended: %v", err)
	}
	defer c.Close()
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("connect through a 200ms black hole took %v", d)
	}
	if _, err := roundTrip(t, c); err != nil {
		t.Fatalf("round trip after the black hole: %v", err)
	}
	if _, err := roundTrip(t, open); err != nil {
		t.Fatalf("round trip on a connection opened before the black hole: %v", err)
	}
}

// say sends a line on c and waits for its echo.
func say(c net.Conn, line string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return err
	}
	_, err := bufio.NewReader(c).ReadString('\n')
	return err
}

// SetDropMatching singles out connections by what their client sent: open
// ones at once, new ones at their first matching bytes; others go on.
func TestDropMatching(t *testing.T) {
	p := start(t)
	dial := func(first string) net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := say(c, first); err != nil {
			t.Fatalf("%q before any drop: %v", first, err)
		}
		return c
	}
	a, b := dial("X-Server-From: a1"), dial("X-Server-From: b2")
	p.SetDropMatching([]byte("X-Server-From: a1"))
	if err := say(a, "ping"); err == nil {
		t.Error("an open connection whose client matched still works")
	}
	if err := say(b, "ping"); err != nil {
		t.Errorf("another open connection was cut: %v", err)
	}
	// A new connection: the connect completes, the matching bytes are
	// not forwarded and the connection is cut.
	c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := say(c, "GET / HTTP/1.1\r\nX-Server-From: a1\r\n"); err == nil {
		t.Error("a new matching connection was forwarded")
	}
	p.SetDropMatching(nil)
	dial("X-Server-From: a1") // fails the test unless forwarded again
}
