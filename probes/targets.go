package probes

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Member is one etcd member as the agent knows it from the member list.
type Member struct {
	ID         uint64
	Name       string
	ClientURLs []string
	PeerURLs   []string
	IsLearner  bool
}

// Label is the value of the `member` label: the name, or the hex ID while
// the name is empty (a learner that has not started yet).
func (m Member) Label() string {
	if m.Name != "" {
		return m.Name
	}
	return MemberIDLabel(m.ID)
}

// MemberIDLabel formats a member ID the way etcdctl prints it.
func MemberIDLabel(id uint64) string { return fmt.Sprintf("%x", id) }

// Target is a member the agent sends requests to, over a connection pinned
// to that member alone: a client balanced over several endpoints would not
// say which member answered.
type Target struct {
	mu     sync.Mutex
	member Member
	// Endpoint is the client URL the connection uses.
	Endpoint string
	// Local is true for the member the agent sits beside.
	Local bool
	// Client is pinned to Endpoint.
	Client *clientv3.Client
	// Maintenance reuses Client's connection; clientv3's default dials a
	// new connection per Status call.
	Maintenance clientv3.Maintenance

	requests sync.Map // gRPC method name -> *atomic.Uint64
	// conn holds the last connection error, to name the cause of a timeout.
	conn connErrors
}

// ConnectionError returns the last error of the connection's attempts to
// connect (refused, TLS handshake, TLS alert), if recent.
func (t *Target) ConnectionError() error { return t.conn.recent() }

// LastConnectionError returns the last error of the connection's attempts
// to connect and when it happened, however old; nil when none failed.
func (t *Target) LastConnectionError() (error, time.Time) { return t.conn.last() }

// Dials counts the TCP connections the target's pinned connection opened
// (http and https endpoints): each one after the first is a connection
// that dropped and was opened again.
func (t *Target) Dials() uint64 { return t.conn.dials.Load() }

// Requests returns how many requests of each gRPC method the agent sent
// this target.
func (t *Target) Requests() map[string]uint64 {
	out := map[string]uint64{}
	t.requests.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// Key identifies a target in results: the member ID once known, else the
// endpoint of a member not yet identified.
func (t *Target) Key() string {
	if id := t.ID(); id != 0 {
		return MemberIDLabel(id)
	}
	return t.Endpoint
}

// Member returns what the member list last said of this target.
func (t *Target) Member() Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.member
}

// ID is the member ID, 0 while unknown.
func (t *Target) ID() uint64 { return t.Member().ID }

// Label is the `member` label value for this target: the member's name or
// ID, or its endpoint before the agent knows which member answers there.
func (t *Target) Label() string {
	m := t.Member()
	if m.ID == 0 && m.Name == "" {
		return t.Endpoint
	}
	return m.Label()
}

func (t *Target) setMember(m Member) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.member = m
}

// ClientConfig holds what every pinned connection needs.
type ClientConfig struct {
	TLS         *tls.Config
	DialTimeout time.Duration
	Username    string
	Password    string
	// TracerProvider, when set, traces each etcd RPC as a child span of
	// the probe run that sent it.
	TracerProvider trace.TracerProvider
}

// Targets is the set of members the agent probes. It starts from the
// configured endpoints (the first is the local member) and follows the
// member list.
type Targets struct {
	cfg    ClientConfig
	logger *slog.Logger

	mu      sync.Mutex
	local   *Target
	seeds   []*Target // configured endpoints other than the local one
	members map[uint64]*Target
	known   bool // a member list has been seen
}

// NewTargets creates pinned clients for the configured endpoints. No
// connection is made yet: clientv3 dials lazily without DialBlock.
func NewTargets(endpoints []string, cfg ClientConfig, logger *slog.Logger) (*Targets, error) {
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("no etcd endpoint given")
	}
	ts := &Targets{cfg: cfg, logger: logger, members: map[uint64]*Target{}}
	for i, ep := range endpoints {
		t, err := ts.newTarget(Member{}, ep)
		if err != nil {
			ts.Close()
			return nil, err
		}
		if i == 0 {
			t.Local = true
			ts.local = t
		} else {
			ts.seeds = append(ts.seeds, t)
		}
	}
	return ts, nil
}

func (ts *Targets) newTarget(m Member, endpoint string) (*Target, error) {
	t := &Target{member: m, Endpoint: endpoint}
	// Counted per target and labelled at scrape time: the member's name
	// is not known yet when the first requests go out.
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		c, _ := t.requests.LoadOrStore(method[strings.LastIndex(method, "/")+1:], new(atomic.Uint64))
		c.(*atomic.Uint64).Add(1)
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	// Every etcd response names the member that sent it: an answer from
	// another member than this target's (a shared advertised URL) must not
	// count as this member's.
	check := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
		h, ok := reply.(interface{ GetHeader() *pb.ResponseHeader })
		if !ok {
			return nil
		}
		if want, got := t.ID(), h.GetHeader().GetMemberId(); want != 0 && got != 0 && got != want {
			return &WrongMemberError{Endpoint: endpoint, Want: want, Got: got}
		}
		return nil
	}
	opts := ts.dialOptions(count, check)
	opts = append(opts, t.conn.dialOptions(endpoint, ts.cfg.TLS)...)
	if ts.cfg.Username != "" {
		// Not clientv3's own authentication: clientv3.New would wait for
		// etcd to hand out a token, and fail while etcd is down.
		opts = append(opts, newTokenAuth(ts.cfg.Username, ts.cfg.Password).dialOptions()...)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            []string{endpoint},
		TLS:                  ts.cfg.TLS,
		DialTimeout:          ts.cfg.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zap.NewNop(),
		DialOptions:          opts,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", endpoint, err)
	}
	t.Client = cli
	t.Maintenance = clientv3.NewMaintenanceFromMaintenanceClient(pb.NewMaintenanceClient(cli.ActiveConnection()), cli)
	return t, nil
}

func (ts *Targets) dialOptions(interceptors ...grpc.UnaryClientInterceptor) []grpc.DialOption {
	opts := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(interceptors...),
		// gRPC's default reconnect backoff grows to 120 s: a member back
		// from a long outage would be seen only minutes later. One attempt
		// a second at most is cheap and is not a tight loop.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: ts.cfg.DialTimeout,
		}),
	}
	if ts.cfg.TracerProvider != nil {
		opts = append(opts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(ts.cfg.TracerProvider),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
			// W3C trace context: an etcd started with distributed tracing
			// on continues the trace on its side.
			otelgrpc.WithPropagators(propagation.TraceContext{}),
		)))
	}
	return opts
}

// Local returns the local member's target.
func (ts *Targets) Local() *Target {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.local
}

// All returns the targets to probe: every member of the last member list
// (the local one included), or the configured endpoints before any list was
// seen.
func (ts *Targets) All() []*Target {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if !ts.known {
		// Seeds are other members' URLs: they answer cluster-wide
		// questions while the local member does not, and are probed as
		// members once the member list names them.
		return []*Target{ts.local}
	}
	out := make([]*Target, 0, len(ts.members)+1)
	localListed := false
	for _, t := range ts.members {
		out = append(out, t)
		localListed = localListed || t == ts.local
	}
	if !localListed {
		out = append(out, ts.local)
	}
	slices.SortFunc(out, func(a, b *Target) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}

// Fallbacks returns targets to ask cluster-wide questions when the local
// member does not answer: every other member, then the seeds.
func (ts *Targets) Fallbacks() []*Target {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var out []*Target
	for _, t := range ts.members {
		if t != ts.local {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *Target) int { return strings.Compare(a.Key(), b.Key()) })
	return append(out, ts.seeds...)
}

// Identify records the local member's ID once its status says it.
func (ts *Targets) Identify(t *Target, id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.member.ID == 0 && id != 0 {
		t.member.ID = id
	}
}

// Update replaces the member set with a fresh member list: new members get
// a pinned client, removed ones are closed, renamed ones keep theirs.
func (ts *Targets) Update(members []Member) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.known = true
	seen := map[uint64]bool{}
	// Before the local member has answered, its endpoint names it only if
	// exactly one member advertises it (k0s advertises
	// https://127.0.0.1:2379 for every member).
	sharing := 0
	for _, m := range members {
		if slices.Contains(m.ClientURLs, ts.local.Endpoint) {
			sharing++
		}
	}
	for _, m := range members {
		seen[m.ID] = true
		localID := ts.local.ID()
		if m.ID == localID || (localID == 0 && sharing == 1 && slices.Contains(m.ClientURLs, ts.local.Endpoint)) {
			ts.local.setMember(m)
			ts.members[m.ID] = ts.local
			continue
		}
		cur, ok := ts.members[m.ID]
		if ok && len(m.ClientURLs) > 0 && slices.Contains(m.ClientURLs, cur.Endpoint) {
			cur.setMember(m)
			continue
		}
		if ok && cur.Client != nil {
			cur.Client.Close()
			delete(ts.members, m.ID)
		}
		if len(m.ClientURLs) == 0 {
			// A learner not started yet has no client URL: list it, probe nothing.
			ts.members[m.ID] = &Target{member: m}
			continue
		}
		t, err := ts.newTarget(m, m.ClientURLs[0])
		if err != nil {
			ts.logger.Warn("cannot create client for member", "member", m.Label(), "err", err)
			continue
		}
		ts.members[m.ID] = t
	}
	for id, t := range ts.members {
		if !seen[id] {
			if t != ts.local && t.Client != nil {
				t.Client.Close()
			}
			delete(ts.members, id)
		}
	}
}

// Members returns the member list last seen, sorted by ID.
func (ts *Targets) Members() []Member {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]Member, 0, len(ts.members))
	for _, t := range ts.members {
		out = append(out, t.Member())
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Close closes every client.
func (ts *Targets) Close() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	closed := map[*Target]bool{}
	all := append([]*Target{ts.local}, ts.seeds...)
	for _, t := range ts.members {
		all = append(all, t)
	}
	for _, t := range all {
		if t != nil && t.Client != nil && !closed[t] {
			closed[t] = true
			t.Client.Close()
		}
	}
}

// Known returns the last member list and whether one has been read.
func (ts *Targets) Known() ([]Member, bool) {
	members := ts.Members()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return members, ts.known
}
