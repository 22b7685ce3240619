package probes

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"
)

// connErrors keeps the last error of a target's connection attempts: a
// refused dial, a failed TLS handshake, or the member's TLS alert when it
// refuses the agent's certificate. gRPC retries such connections in the
// background, and a wait-for-ready call only ever sees its deadline; this
// is what names the cause.
type connErrors struct {
	// dials counts the TCP connections opened: more than one is a
	// connection that dropped (the member restarted, or the network reset
	// it) and was opened again.
	dials atomic.Uint64

	mu  sync.Mutex
	err error
	at  time.Time
}

// connErrorMaxAge bounds how old a connection error may be and still
// explain a timeout: gRPC retries at least every second (targets.go), so
// a live cause is always fresher.
const connErrorMaxAge = 10 * time.Second

func (c *connErrors) set(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err, c.at = err, time.Now()
}

// recent returns the last connection error if it is fresh.
func (c *connErrors) recent() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil || time.Since(c.at) > connErrorMaxAge {
		return nil
	}
	return c.err
}

// last returns the last connection error and its time, however old.
func (c *connErrors) last() (error, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err, c.at
}

// dialOptions record the connection's errors for an http(s) endpoint;
// other schemes (unix sockets) keep gRPC's own dialer.
func (c *connErrors) dialOptions(endpoint string, tlsCfg *tls.Config) []grpc.DialOption {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil
	}
	var opts []grpc.DialOption
	switch u.Scheme {
	case "https":
		// As clientv3 does for an https URL (credentialsForEndpoint),
		// with the handshake watched.
		creds := &recordingCreds{TransportCredentials: grpccreds.NewTLS(tlsCfg), rec: c}
		if tlsCfg != nil {
			creds.serverName = tlsCfg.ServerName
		}
		opts = append(opts, grpc.WithTransportCredentials(creds))
		fallthrough
	case "http":
		opts = append(opts, grpc.WithContextDialer(c.dial))
	}
	return opts
}

func (c *connErrors) dial(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		c.set(err)
	} else {
		c.dials.Add(1)
	}
	return conn, err
}

// recordingCreds is gRPC's TLS transport credentials, recording handshake
// failures and the TLS alerts the member sends afterwards: with TLS 1.3 a
// server checks the client's certificate after the client's side of the
// handshake is done, so its refusal arrives on the first read.
type recordingCreds struct {
	grpccreds.TransportCredentials
	rec *connErrors
	// serverName, when set (etcd.tls.server_name), is the name to verify
	// instead of the dialled host: gRPC's TLS credentials otherwise take
	// the host and ignore the configuration's ServerName.
	serverName string
}

// ClientHandshake implements credentials.TransportCredentials.
func (r *recordingCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, grpccreds.AuthInfo, error) {
	if r.serverName != "" {
		authority = r.serverName
	}
	conn, info, err := r.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		r.rec.set(err)
		return conn, info, err
	}
	return &alertConn{Conn: conn, rec: r.rec}, info, nil
}

// Clone implements credentials.TransportCredentials.
func (r *recordingCreds) Clone() grpccreds.TransportCredentials {
	return &recordingCreds{TransportCredentials: r.TransportCredentials.Clone(), rec: r.rec, serverName: r.serverName}
}

// alertConn records a TLS alert read from the member.
type alertConn struct {
	net.Conn
	rec *connErrors
}

func (a *alertConn) Read(b []byte) (int, error) {
	n, err := a.Conn.Read(b)
	var op *net.OpError
	if err != nil && errors.As(err, &op) && op.Op == "remote error" {
		a.rec.set(err)
	}
	return n, err
}
