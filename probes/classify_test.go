package probes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors as the agent meets them: from the network, crypto/tls, gRPC and
// etcd, wrapped the way the probes wrap them.
func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	expired := &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired, Detail: "current time is after"}}
	remote := func(text string) error { return &net.OpError{Op: "remote error", Err: errors.New(text)} }
	timeout := func(cause error) error {
		return &TimeoutError{Probe: "status", Timeout: 2 * time.Second, Connection: "TRANSIENT_FAILURE", Cause: cause, Err: context.DeadlineExceeded}
	}
	for _, tc := range []struct {
		name string
		err  error
		want Reason
	}{
		{"nil", nil, ""},
		{"connection refused", refused, ReasonUnreachable},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), ReasonUnreachable},
		{"DNS", &net.DNSError{Err: "no such host", Name: "etcd-0", IsNotFound: true}, ReasonUnreachable},
		{"timeout on an open connection", &TimeoutError{Probe: "status", Timeout: time.Second, Connection: "READY", Err: context.DeadlineExceeded}, ReasonTimeout},
		{"timeout, refused underneath", timeout(refused), ReasonUnreachable},
		{"timeout, expired server certificate underneath", timeout(expired), ReasonTLSExpired},
		{"timeout, cause not telling", timeout(errors.New("something")), ReasonTimeout},
		{"deadline", fmt.Errorf("status: %w", context.DeadlineExceeded), ReasonTimeout},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, ReasonTLSUnknownAuthority},
		{"name mismatch", &tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "etcd.invalid"}}, ReasonTLSNameMismatch},
		{"other verification failure", &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.NotAuthorizedToSign}}, ReasonTLS},
		{"client certificate expired, etcd's alert", remote("tls: expired certificate"), ReasonTLSExpired},
		{"client certificate unknown to etcd", remote("tls: unknown certificate authority"), ReasonTLSUnknownAuthority},
		{"no client certificate", remote("tls: certificate required"), ReasonTLSBadCertificate},
		{"other alert", remote("tls: handshake failure"), ReasonTLS},
		{"plain-text server", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ReasonTLS},
		{"gRPC handshake status", status.Error(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate has expired or is not yet valid"`), ReasonTLSExpired},
		{"wrong password", &AuthError{User: "etcdpulse", Err: rpctypes.ErrAuthFailed}, ReasonAuthentication},
		{"token refused, from gRPC", rpctypes.ErrGRPCInvalidAuthToken, ReasonAuthentication},
		{"no user", fmt.Errorf("status: %w", rpctypes.ErrUserEmpty), ReasonAuthentication},
		{"permission denied", fmt.Errorf("read: %w", rpctypes.ErrPermissionDenied), ReasonPermissionDenied},
		{"permission denied, from gRPC", rpctypes.ErrGRPCPermissionDenied, ReasonPermissionDenied},
		{"no leader", fmt.Errorf("read: %w", rpctypes.ErrNoLeader), ReasonEtcd},
		{"NOSPACE", rpctypes.ErrGRPCNoSpace, ReasonEtcd},
		{"learner", rpctypes.ErrGRPCNotSupportedForLearner, ReasonEtcd},
		{"unavailable", status.Error(codes.Unavailable, "connection closed"), ReasonUnreachable},
		{"another member answered", fmt.Errorf("status: %w", &WrongMemberError{Endpoint: "https://127.0.0.1:2379", Want: 2, Got: 1}), ReasonWrongMember},
		{"anything else", errors.New("odd"), ReasonOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

func TestReasonAgentSide(t *testing.T) {
	agent := map[Reason]bool{ReasonTLSExpired: true, ReasonTLSUnknownAuthority: true, ReasonTLSNameMismatch: true,
		ReasonTLSBadCertificate: true, ReasonTLS: true, ReasonAuthentication: true, ReasonPermissionDenied: true,
		ReasonWrongMember: true}
	for _, r := range Reasons {
		if r.AgentSide() != agent[r] {
			t.Errorf("%s.AgentSide() = %v", r, r.AgentSide())
		}
	}
}
