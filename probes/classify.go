package probes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reason says why a probe run failed. The set is fixed, so that it can be
// a metric label.
type Reason string

// Failure reasons. The TLS and credential reasons are the agent's own:
// etcd refused the agent (or the agent refused etcd), which says nothing
// about the member's health.
const (
	// ReasonUnreachable: the connection was refused or reset, the host or
	// network is unreachable, or its name does not resolve.
	ReasonUnreachable Reason = "unreachable"
	// ReasonTimeout: no answer within the probe's deadline.
	ReasonTimeout Reason = "timeout"
	// ReasonTLSExpired: a certificate in the handshake has expired or is
	// not valid yet, the member's or (refused by the member) the agent's.
	ReasonTLSExpired Reason = "tls_certificate_expired"
	// ReasonTLSUnknownAuthority: the agent's CA did not sign the member's
	// certificate, or the member does not trust the agent's.
	ReasonTLSUnknownAuthority Reason = "tls_unknown_authority"
	// ReasonTLSNameMismatch: the member's certificate is not valid for the
	// name or address the agent dialled.
	ReasonTLSNameMismatch Reason = "tls_name_mismatch"
	// ReasonTLSBadCertificate: the member refused the agent's client
	// certificate (missing, revoked, wrong usage).
	ReasonTLSBadCertificate Reason = "tls_bad_certificate"
	// ReasonTLS: any other TLS handshake failure.
	ReasonTLS Reason = "tls"
	// ReasonAuthentication: etcd refused the agent's username and password,
	// or its token.
	ReasonAuthentication Reason = "authentication"
	// ReasonPermissionDenied: the agent's user or certificate lacks a
	// permission the probe needs.
	ReasonPermissionDenied Reason = "permission_denied"
	// ReasonWrongMember: another member answered at the member's
	// advertised client URL (k0s advertises https://127.0.0.1:2379 for
	// every member): from this agent, that member cannot be reached.
	ReasonWrongMember Reason = "wrong_member"
	// ReasonBehind: the member had not applied a write the cluster
	// committed within the watch probe's deadline.
	ReasonBehind Reason = "behind"
	// ReasonWatchStalled: the member applied the write but its watch did
	// not deliver it within the deadline.
	ReasonWatchStalled Reason = "watch_stalled"
	// ReasonWatchRestarted: etcd ended the member's watch (compacted,
	// cancelled or closed) and the probe re-established it.
	ReasonWatchRestarted Reason = "watch_restarted"
	// ReasonEtcd: etcd answered with an error of its own (no leader,
	// NOSPACE, request timed out, too many requests, ...).
	ReasonEtcd Reason = "etcd_error"
	// ReasonOther: anything else.
	ReasonOther Reason = "other"
)

// Reasons lists every reason, for documentation and tests.
var Reasons = []Reason{
	ReasonUnreachable, ReasonTimeout,
	ReasonTLSExpired, ReasonTLSUnknownAuthority, ReasonTLSNameMismatch, ReasonTLSBadCertificate, ReasonTLS,
	ReasonAuthentication, ReasonPermissionDenied, ReasonWrongMember,
	ReasonBehind, ReasonWatchStalled, ReasonWatchRestarted,
	ReasonEtcd, ReasonOther,
}

// AgentSide reports whether the reason is the agent's own: its
// certificates, CA, credentials or role, or a member it cannot address.
// Such a failure says nothing about the member's health.
func (r Reason) AgentSide() bool {
	switch r {
	case ReasonTLSExpired, ReasonTLSUnknownAuthority, ReasonTLSNameMismatch, ReasonTLSBadCertificate, ReasonTLS,
		ReasonAuthentication, ReasonPermissionDenied, ReasonWrongMember:
		return true
	}
	return false
}

// ReasonedError is a probe's own failure that knows its reason: it is
// declared beside the probe, and Classify needs no line for it.
type ReasonedError interface {
	error
	Reason() Reason
}

// Classify sorts a probe error into a Reason; nil gives "".
func Classify(err error) Reason {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[ReasonedError](err); ok {
		return e.Reason()
	}
	var te *TimeoutError
	if errors.As(err, &te) {
		if te.Cause != nil {
			if r := Classify(te.Cause); r != ReasonOther {
				return r
			}
		}
		return ReasonTimeout
	}
	if r := classifyTLS(err); r != "" {
		return r
	}
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns) && !dns.IsTimeout:
		return ReasonUnreachable
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return ReasonUnreachable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT), isNetTimeout(err):
		return ReasonTimeout
	}
	if r := classifyEtcd(err); r != "" {
		return r
	}
	return ReasonOther
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// classifyTLS recognises the agent's own verification failures (x509) and
// the member's refusals of the agent's certificate (TLS alerts).
func classifyTLS(err error) Reason {
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return ReasonTLSExpired
	case errors.As(err, &unknown):
		return ReasonTLSUnknownAuthority
	case errors.As(err, &host):
		return ReasonTLSNameMismatch
	case errors.As(err, &verify), errors.As(err, &invalid):
		return ReasonTLS
	}
	// A remote alert comes as a *net.OpError with Op "remote error"
	// around crypto/tls's unexported alert type; its text is fixed.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		switch op.Err.Error() {
		case "tls: expired certificate":
			return ReasonTLSExpired
		case "tls: unknown certificate authority":
			return ReasonTLSUnknownAuthority
		case "tls: bad certificate", "tls: certificate required", "tls: revoked certificate",
			"tls: unsupported certificate", "tls: unknown certificate":
			return ReasonTLSBadCertificate
		}
		return ReasonTLS
	}
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) {
		return ReasonTLS // a plain-text server on an https URL, or the reverse
	}
	// gRPC flattens handshake errors into its status text.
	if s, ok := status.FromError(err); ok && strings.Contains(s.Message(), "authentication handshake failed") {
		msg := s.Message()
		switch {
		case strings.Contains(msg, "certificate has expired"), strings.Contains(msg, "tls: expired certificate"):
			return ReasonTLSExpired
		case strings.Contains(msg, "unknown authority"), strings.Contains(msg, "unknown certificate authority"):
			return ReasonTLSUnknownAuthority
		case strings.Contains(msg, "certificate is valid for"), strings.Contains(msg, "certificate is not valid for"):
			return ReasonTLSNameMismatch
		}
		return ReasonTLS
	}
	return ""
}

// classifyEtcd sorts etcd's own errors: refusals of the agent's
// credentials or role, and the member's errors.
func classifyEtcd(err error) Reason {
	e := rpctypes.Error(unwrapStatus(err))
	switch {
	case errors.Is(e, rpctypes.ErrAuthFailed), errors.Is(e, rpctypes.ErrInvalidAuthToken),
		errors.Is(e, rpctypes.ErrAuthOldRevision), errors.Is(e, rpctypes.ErrUserEmpty),
		errors.Is(e, rpctypes.ErrUserNotFound):
		return ReasonAuthentication
	case errors.Is(e, rpctypes.ErrPermissionDenied):
		return ReasonPermissionDenied
	}
	if _, ok := e.(rpctypes.EtcdError); ok {
		return ReasonEtcd
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unauthenticated:
			return ReasonAuthentication
		case codes.PermissionDenied:
			return ReasonPermissionDenied
		case codes.Unavailable:
			return ReasonUnreachable
		case codes.DeadlineExceeded:
			return ReasonTimeout
		}
	}
	return ""
}

// unwrapStatus finds the gRPC status error or etcd error inside a wrapped
// error: rpctypes.Error matches on the message, which wrapping changes.
func unwrapStatus(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e.(type) {
		case interface{ GRPCStatus() *status.Status }, rpctypes.EtcdError:
			return e
		}
	}
	return err
}

// WrongMemberError is an answer from another member than the one the
// agent addressed: every etcd response names the member that sent it.
type WrongMemberError struct {
	Endpoint  string
	Want, Got uint64
}

// Reason implements ReasonedError.
func (e *WrongMemberError) Reason() Reason { return ReasonWrongMember }

func (e *WrongMemberError) Error() string {
	return fmt.Sprintf("member %s answered at %s, the client URL member %s advertises: from here, %s cannot be reached (is its advertised client URL a loopback address, as k0s sets?)",
		MemberIDLabel(e.Got), e.Endpoint, MemberIDLabel(e.Want), MemberIDLabel(e.Want))
}
