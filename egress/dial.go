package egress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// dialTimeout bounds one dial (lookup and connect) when the request's own
// context allows longer.
const dialTimeout = 30 * time.Second

// attempt is one request (one hop of Do) as the transport's hooks see it
// through the request's context: the policy its dials and pooled
// connections are checked against, the proxy chosen for it, and why a
// connection was refused. The transport may call the hooks from its own
// goroutines, hence the mutex.
type attempt struct {
	ctx    context.Context // the request's: its end ends the request's dials
	policy *Policy
	deny   []netip.Prefix
	target target

	trace httptrace.ClientTrace // its GotConn is gotConn

	mu      sync.Mutex
	proxy   string // host:port of the proxy in use, "" for none
	refusal *Error
}

type attemptKey struct{}

func attemptFrom(ctx context.Context) *attempt {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	return a
}

// refuse records that addr may not be dialled for this request, and why.
func (a *attempt) refuse(addr netip.Addr, why string) *Error {
	host := a.target.host
	var e *Error
	if a.target.name == "" || !addr.IsValid() {
		e = newError(NotAllowed, host, nil, "fetch to %s is not allowed: %s", host, why)
	} else {
		e = newError(NotAllowed, host, nil, "fetch to %s (%s) is not allowed: %s", host, addr, why)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.refusal == nil {
		a.refusal = e
	}
	return e
}

func (a *attempt) refused() *Error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refusal
}

func (a *attempt) setProxy(hostPort string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.proxy = hostPort
}

func (a *attempt) proxyAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proxy
}

// checkedConn is a connection the Client dialled: to an address checked
// against the policy of the request it was dialled for, or to a proxy.
type checkedConn struct {
	net.Conn
	addr    netip.AddrPort // the checked remote address; zero for a proxy
	proxied bool
}

// proxyFor is the transport's Proxy hook: it asks Config.Proxy and records
// the answer on the request's attempt so that dial knows a proxy dial.
func (c *Client) proxyFor(r *http.Request) (*url.URL, error) {
	u, err := c.proxy(r)
	if err != nil || u == nil {
		return u, err
	}
	if a := attemptFrom(r.Context()); a != nil {
		a.setProxy(proxyHostPort(u))
	}
	return u, nil
}

// proxyHostPort is the address the transport dials for proxy u.
func proxyHostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// dial is the transport's DialContext. ctx carries the attempt of the
// request that asked for the connection (the transport keeps its values but
// not its cancellation, so the attempt's own context is watched). It
// resolves the target itself and connects only to addresses that pass
// checkAddr, so the address checked is the address connected to.
func (c *Client) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	a := attemptFrom(ctx)
	if a == nil {
		return nil, errors.New("egress: a connection was asked for outside Client.Do")
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	defer context.AfterFunc(a.ctx, cancel)()

	if p := a.proxyAddr(); p != "" && strings.EqualFold(p, addr) {
		conn, err := c.dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &checkedConn{Conn: conn, proxied: true}, nil
	}
	host, portText, err := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	if err != nil || host != a.target.host || port != a.target.port {
		return nil, fmt.Errorf("egress: asked to dial %s for a request to %s", addr, a.target.display(true))
	}
	addrs, err := c.lookup(ctx, host)
	if err != nil {
		if a.ctx.Err() != nil {
			return nil, err // Do reports the context's end
		}
		return nil, dnsFailure(host, err)
	}
	var firstRefused netip.Addr
	var why string
	var lastErr error
	for _, ip := range addrs {
		ip = ip.Unmap()
		if reason := checkAddr(a.policy, a.deny, &a.target, ip, port); reason != "" {
			if why == "" {
				firstRefused, why = ip, reason
			}
			continue
		}
		ap := netip.AddrPortFrom(ip, uint16(port))
		conn, err := c.dialer.DialContext(ctx, network, ap.String())
		if err == nil {
			return &checkedConn{Conn: conn, addr: ap}, nil
		}
		lastErr = err
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return nil, a.refuse(firstRefused, why)
}

// lookup resolves host, or returns it when it is an address literal.
func (c *Client) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	addrs, err := c.resolve(ctx, host)
	if err == nil && len(addrs) == 0 {
		err = &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	return addrs, err
}

// gotConn is the request's httptrace GotConn hook, called on the request's
// goroutine before anything is written. A pooled connection may have been
// dialled for another project: one that this request's policy would not
// have dialled is closed unused, and the request fails with NotAllowed.
func (a *attempt) gotConn(info httptrace.GotConnInfo) {
	conn := info.Conn
	for {
		tc, ok := conn.(*tls.Conn)
		if !ok {
			break
		}
		conn = tc.NetConn()
	}
	cc, ok := conn.(*checkedConn)
	switch {
	case !ok:
		a.refuse(netip.Addr{}, "the connection was not dialled by egress")
		info.Conn.Close()
	case cc.proxied:
		if a.proxyAddr() == "" {
			a.refuse(netip.Addr{}, "a proxy connection was offered to a request without a proxy")
			cc.Conn.Close()
		}
	default:
		if why := checkAddr(a.policy, a.deny, &a.target, cc.addr.Addr(), int(cc.addr.Port())); why != "" {
			a.refuse(cc.addr.Addr(), why)
			cc.Conn.Close()
		}
	}
}
