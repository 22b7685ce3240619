package probes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/v3/credentials"
	"google.golang.org/grpc"
)

// tokenAuth authenticates a pinned connection with a username and
// password, when the first request needs it and again when etcd drops the
// token. clientv3 does the same, but inside clientv3.New, which then waits
// for etcd and fails when etcd is down: the agent must start and report
// instead. The token travels in etcd's own per-RPC credentials.
type tokenAuth struct {
	user, password string
	bundle         credentials.PerRPCCredentialsBundle

	mu sync.Mutex
	// ok: a token is held, or etcd said auth is off.
	ok bool
	// After a refusal, etcd is not asked again before retryAt: each
	// attempt costs etcd a bcrypt comparison, and every probe of every
	// member would otherwise make one.
	failed  error
	retryAt time.Time
	backoff time.Duration
	// inflight is closed when the authentication under way ends; nil
	// when none is. One at a time per connection, on its own deadline:
	// a request that gives up waiting does not abandon it, so that etcd's
	// bcrypt comparison, slow on a loaded member, is neither repeated by
	// every waiting probe nor thrown away unfinished.
	inflight chan struct{}
	// lastErr is why the last attempt failed, for those waiting on it.
	lastErr error
}

// authTimeout bounds one authentication, independently of the requests
// that wait for it.
const authTimeout = 10 * time.Second

// Authentication backoff after a refusal: the first retry comes soon (a
// password fixed in the agent's configuration is picked up quickly), later
// ones less often.
const (
	authBackoffMin = 2 * time.Second
	authBackoffMax = 30 * time.Second
)

const methodAuthenticate = "/etcdserverpb.Auth/Authenticate"

// AuthError is etcd refusing the agent's username and password.
type AuthError struct {
	User string
	Err  error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("authenticating as user %q (etcd.username, etcd.password): %v", e.User, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

func newTokenAuth(user, password string) *tokenAuth {
	return &tokenAuth{user: user, password: password, bundle: credentials.NewPerRPCCredentialBundle()}
}

// dialOptions attach the token to every request and fetch it when needed.
func (a *tokenAuth) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithPerRPCCredentials(a.bundle.PerRPCCredentials()),
		grpc.WithChainUnaryInterceptor(a.unary),
		grpc.WithChainStreamInterceptor(a.stream),
	}
}

func (a *tokenAuth) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method == methodAuthenticate {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	if err := a.ensure(ctx, cc); err != nil {
		return err
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	if !tokenRejected(err) {
		return err
	}
	a.drop()
	if err := a.ensure(ctx, cc); err != nil {
		return err
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (a *tokenAuth) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if err := a.ensure(ctx, cc); err != nil {
		return nil, err
	}
	return streamer(ctx, desc, cc, method, opts...)
}

// ensure authenticates unless a token is held. Concurrent callers wait for
// one attempt, which runs on its own deadline (authTimeout): a caller whose
// context ends first returns its context's error and leaves the attempt
// running for the next.
func (a *tokenAuth) ensure(ctx context.Context, cc *grpc.ClientConn) error {
	a.mu.Lock()
	if a.ok {
		a.mu.Unlock()
		return nil
	}
	if a.failed != nil && time.Now().Before(a.retryAt) {
		defer a.mu.Unlock()
		return a.failed
	}
	if a.inflight == nil {
		a.inflight = make(chan struct{})
		go a.authenticate(cc, a.inflight)
	}
	done := a.inflight
	a.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ok {
		return nil
	}
	return a.lastErr
}

// authenticate asks etcd for a token once and records the outcome.
func (a *tokenAuth) authenticate(cc *grpc.ClientConn, done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	resp, err := pb.NewAuthClient(cc).Authenticate(ctx, &pb.AuthenticateRequest{Name: a.user, Password: a.password}, grpc.WaitForReady(true))
	a.mu.Lock()
	defer a.mu.Unlock()
	defer close(done)
	a.inflight = nil
	switch {
	case err == nil:
		a.ok, a.failed, a.backoff, a.lastErr = true, nil, 0, nil
		a.bundle.UpdateAuthToken(resp.Token)
		return
	case errors.Is(rpctypes.Error(err), rpctypes.ErrAuthNotEnabled):
		a.ok, a.failed, a.backoff, a.lastErr = true, nil, 0, nil
		a.bundle.UpdateAuthToken("")
		return
	case Classify(err) != ReasonAuthentication:
		// Not a verdict on the credentials (etcd down, a TLS failure):
		// the next request asks again.
		a.lastErr = err
		return
	}
	a.backoff = min(max(2*a.backoff, authBackoffMin), authBackoffMax)
	a.failed, a.retryAt = &AuthError{User: a.user, Err: rpctypes.Error(err)}, time.Now().Add(a.backoff)
	a.lastErr = a.failed
}

// drop forgets the token after etcd refused it.
func (a *tokenAuth) drop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ok = false
	a.bundle.UpdateAuthToken("")
}

// tokenRejected: etcd no longer accepts the token (expired, revoked by a
// password change, an older auth revision) or asks for one (auth turned
// on after the agent learnt it was off).
func tokenRejected(err error) bool {
	if err == nil {
		return false
	}
	e := rpctypes.Error(err)
	return errors.Is(e, rpctypes.ErrInvalidAuthToken) || errors.Is(e, rpctypes.ErrAuthOldRevision) || errors.Is(e, rpctypes.ErrUserEmpty)
}
