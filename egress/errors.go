package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
)

// Agent configuration keys that messages name, so that a script author can
// tell the administrator which bound to raise.
const (
	keyDeny         = "egress.deny"
	keyMaxBody      = "egress.max_body_bytes"
	keyMaxRedirects = "egress.max_redirects"
)

// Kind says which way a request failed.
type Kind int

// Kinds of Error. The zero Kind is Other.
const (
	Other            Kind = iota
	NotAllowed            // the policy or the agent's deny list refuses the host or address
	InvalidURL            // not an absolute http(s) URL, user information, a bad redirect Location
	Refused               // connection refused, reset, or closed before the response was complete
	TLS                   // handshake or certificate failure
	DNS                   // the name did not resolve
	BodyTooLarge          // the response body is over Config.MaxBodyBytes
	TooManyRedirects      // more redirects than Config.MaxRedirects
	Timeout               // the context ended (deadline or cancel), or a connect timed out
	Redirected            // a redirect answered a request whose Redirect is RedirectError
)

var kindNames = [...]string{"other", "not allowed", "invalid URL", "refused", "TLS", "DNS",
	"body too large", "too many redirects", "timeout", "redirected"}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// Error is every failure of Client.Do. Kind says which, Host names the host
// of the request that failed (the redirect target when a redirect failed).
// Error() is a message for a script author; it never holds request or
// response headers or bodies. Unwrap gives the underlying cause, if any.
type Error struct {
	Kind Kind
	Host string
	msg  string
	err  error
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the underlying cause (context.DeadlineExceeded, a
// *net.DNSError, an x509 error...), or nil.
func (e *Error) Unwrap() error { return e.err }

func newError(kind Kind, host string, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Host: host, msg: fmt.Sprintf(format, args...), err: cause}
}

// failure turns an error of the transport (or of reading a body) into an
// *Error for host. ctx is the request's context: once it has ended, any
// failure is a Timeout.
func failure(ctx context.Context, host string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return newError(Timeout, host, cause, "fetch to %s timed out: the run's time limit was reached", host)
		}
		return newError(Timeout, host, cause, "fetch to %s was aborted", host)
	}
	if msg, ok := tlsMessage(err); ok {
		return newError(TLS, host, err, "fetch to %s: TLS: %s", host, msg)
	}
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return dnsFailure(host, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return newError(Refused, host, err, "fetch to %s: connection refused", host)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return newError(Refused, host, err, "fetch to %s: connection reset by the server", host)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed),
		strings.Contains(err.Error(), "server closed"):
		return newError(Refused, host, err, "fetch to %s: connection closed before the response was complete", host)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return newError(Timeout, host, err, "fetch to %s timed out connecting", host)
	}
	return newError(Other, host, err, "fetch to %s: %v", host, err)
}

func dnsFailure(host string, err error) *Error {
	reason := "the name did not resolve"
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		switch {
		case dnsErr.IsNotFound:
			reason = "no such host"
		case dnsErr.IsTimeout:
			reason = "the lookup timed out"
		case dnsErr.Err != "":
			reason = dnsErr.Err
		}
	}
	return newError(DNS, host, err, "fetch to %s: DNS: %s", host, reason)
}

// tlsMessage finds a TLS failure in err and phrases it without the "tls: "
// and "x509: " prefixes.
func tlsMessage(err error) (string, bool) {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
		alert    tls.AlertError
	)
	var found error
	switch {
	case errors.As(err, &unknown):
		found = unknown
	case errors.As(err, &hostname):
		found = hostname
	case errors.As(err, &invalid):
		found = invalid
	case errors.As(err, &verify):
		found = verify.Err
	case errors.As(err, &record):
		return "the server did not answer with TLS", true
	case errors.As(err, &alert):
		found = alert
	case strings.Contains(err.Error(), "tls: "):
		found = err
	default:
		return "", false
	}
	msg := found.Error()
	if i := strings.LastIndex(msg, "tls: "); i >= 0 {
		msg = msg[i+len("tls: "):]
	}
	return strings.TrimPrefix(msg, "x509: "), true
}

// formatBytes writes a byte count as people write limits: "10 MiB", "512 KiB".
func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
