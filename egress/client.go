package egress

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults for a zero Config.
const (
	DefaultMaxBodyBytes = 10 << 20
	DefaultMaxRedirects = 5
)

// Config is the agent-wide configuration of a Client. The zero value means
// the defaults given for each field.
type Config struct {
	// Deny is refused to every project whatever its policy lists; nil means
	// DefaultDeny(), an empty non-nil slice denies nothing.
	Deny []netip.Prefix
	// CAFiles are PEM files of extra CA certificates trusted besides the
	// system roots.
	CAFiles []string
	// MaxBodyBytes bounds a response body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxRedirects is how many redirects one request follows; 0 means
	// DefaultMaxRedirects, a negative value follows none (the redirect
	// response is returned as it is).
	MaxRedirects int
	// Resolver resolves a host name; nil means net.DefaultResolver.
	Resolver func(ctx context.Context, host string) ([]netip.Addr, error)
	// Proxy chooses a proxy for a request; nil means
	// http.ProxyFromEnvironment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY).
	Proxy func(*http.Request) (*url.URL, error)
}

// Client performs the HTTP requests of every project of an agent over one
// shared keep-alive transport, each checked against its project's Policy.
// It is safe for concurrent use; create it with NewClient.
type Client struct {
	deny         []netip.Prefix
	maxBody      int64
	maxRedirects int
	resolve      func(ctx context.Context, host string) ([]netip.Addr, error)
	proxy        func(*http.Request) (*url.URL, error)
	dialer       net.Dialer
	transport    *http.Transport
}

// NewClient builds a Client from cfg. It reads the CA files; an unreadable
// file or one without a PEM certificate is an error naming the file.
func NewClient(cfg Config) (*Client, error) {
	roots, err := rootCAs(cfg.CAFiles)
	if err != nil {
		return nil, err
	}
	c := &Client{
		deny:         DefaultDeny(),
		maxBody:      cfg.MaxBodyBytes,
		maxRedirects: cfg.MaxRedirects,
		resolve:      cfg.Resolver,
		proxy:        cfg.Proxy,
		dialer:       net.Dialer{KeepAlive: 30 * time.Second},
	}
	if cfg.Deny != nil {
		c.deny = append([]netip.Prefix(nil), cfg.Deny...)
	}
	if c.maxBody <= 0 {
		c.maxBody = DefaultMaxBodyBytes
	}
	if c.maxRedirects == 0 {
		c.maxRedirects = DefaultMaxRedirects
	}
	if c.resolve == nil {
		c.resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if c.proxy == nil {
		c.proxy = http.ProxyFromEnvironment
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true) // one request per connection: see gotConn
	c.transport = &http.Transport{
		Proxy:                  c.proxyFor,
		DialContext:            c.dial,
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    10 * time.Second,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		Protocols:              &protocols,
	}
	return c, nil
}

// rootCAs is the system roots plus files, or nil (the system roots) when
// there are no files.
func rootCAs(files []string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("read CA file %s: %w", f, err)
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", f)
		}
	}
	return pool, nil
}

// Close closes the idle pooled connections. Requests in progress go on;
// the Client stays usable. Idempotent.
func (c *Client) Close() { c.transport.CloseIdleConnections() }

// Request is one HTTP request of a script. An empty Method means GET;
// Header may be nil; Body is sent as is (nil for none); the zero Redirect
// is RedirectFollow.
type Request struct {
	Method   string
	URL      string
	Header   http.Header
	Body     []byte
	Redirect Redirect
}

// Redirect is what a request does with a redirect response (301, 302,
// 303, 307 or 308), as WHATWG fetch's redirect option says.
type Redirect string

// Redirect modes.
const (
	// RedirectFollow follows redirects, up to Config.MaxRedirects, each
	// one checked as a new request (a negative MaxRedirects follows none:
	// the redirect response is returned as it is). "" means the same.
	RedirectFollow Redirect = "follow"
	// RedirectManual returns a redirect response as it is (status,
	// headers with Location, body), Redirected false.
	RedirectManual Redirect = "manual"
	// RedirectError fails the request with a Redirected error when a
	// redirect is answered.
	RedirectError Redirect = "error"
)

// Response is the final response of a request, its body read whole.
type Response struct {
	Status     int
	StatusText string // the reason phrase ("Not Found"), possibly empty
	Header     http.Header
	URL        string // the final URL after redirects, without its fragment
	Redirected bool   // at least one redirect was followed
	Body       []byte // at most Config.MaxBodyBytes
}

// hop is one request of a Do: the first, or one redirect.
type hop struct {
	method string
	url    *url.URL
	header http.Header
	body   []byte
}

// Do performs req for a project whose policy is pol (nil allows nothing),
// following redirects or not as req.Redirect says, and reads the whole
// response body. ctx bounds
// everything: when it ends the connection is closed and Do returns a
// Timeout. Every failure is an *Error. Do blocks until the response is read
// or fails; it is safe for concurrent use.
func (c *Client) Do(ctx context.Context, pol *Policy, req Request) (*Response, error) {
	u, err := parseURL(req.URL)
	if err != nil {
		return nil, err
	}
	switch req.Redirect {
	case "", RedirectFollow, RedirectManual, RedirectError:
	default:
		return nil, newError(Other, u.Hostname(), nil, "fetch: redirect must be %q, %q or %q, not %q",
			RedirectFollow, RedirectManual, RedirectError, string(req.Redirect))
	}
	h := hop{method: normalMethod(req.Method), url: u, header: req.Header, body: req.Body}
	first := u.Hostname()
	for redirects := 0; ; redirects++ {
		resp, err := c.send(ctx, pol, &h)
		if err != nil {
			return nil, err
		}
		if req.Redirect == RedirectError && isRedirect(resp.StatusCode) {
			discard(resp)
			host := h.url.Hostname()
			return nil, newError(Redirected, host, nil,
				"fetch to %s: the server answered a redirect (%d) and the request's redirect option is \"error\"", host, resp.StatusCode)
		}
		next, ok := hop{}, false
		if c.maxRedirects >= 0 && req.Redirect != RedirectManual {
			next, ok, err = nextHop(&h, resp)
		}
		if err != nil || !ok {
			if err != nil {
				discard(resp)
				return nil, err
			}
			return c.finish(ctx, &h, resp, redirects > 0)
		}
		discard(resp)
		if redirects == c.maxRedirects {
			return nil, newError(TooManyRedirects, first, nil,
				"fetch to %s: more than %d redirects (the limit is %s)", first, c.maxRedirects, keyMaxRedirects)
		}
		h = next
	}
}

// normalMethod upper-cases the methods WHATWG fetch normalises; an empty
// method is GET.
func normalMethod(m string) string {
	if m == "" {
		return http.MethodGet
	}
	for _, std := range []string{"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"} {
		if strings.EqualFold(m, std) {
			return std
		}
	}
	return m
}

// send checks one hop against the policy and performs it, returning the
// response with its body unread.
func (c *Client) send(ctx context.Context, pol *Policy, h *hop) (*http.Response, error) {
	t, err := checkURL(h.url)
	if err != nil {
		return nil, err
	}
	if ok, portOnly := pol.allowHost(&t); !ok {
		return nil, newError(NotAllowed, t.host, nil,
			"fetch to %s is not allowed: add it to egress in opsrunner.yaml", t.display(portOnly))
	}
	a := &attempt{ctx: ctx, policy: pol, deny: c.deny, target: t}
	a.trace.GotConn = a.gotConn
	rctx := context.WithValue(ctx, attemptKey{}, a)
	rctx = httptrace.WithClientTrace(rctx, &a.trace)
	hr, err := newRequest(rctx, h)
	if err != nil {
		return nil, newError(Other, t.host, err, "fetch to %s: invalid request: %v", t.host, err)
	}
	resp, err := c.transport.RoundTrip(hr)
	if err != nil {
		if r := a.refused(); r != nil {
			return nil, r
		}
		return nil, failure(ctx, t.host, err)
	}
	return resp, nil
}

// newRequest is the request of hop h: http.NewRequestWithContext's, for
// the URL h has parsed already and the policy has checked (it is not
// written out and parsed again: that was a tenth of Do's own time). Its
// header is h's own (a RoundTripper does not change it; nextHop clones it
// for a redirect).
func newRequest(ctx context.Context, h *hop) (*http.Request, error) {
	var body io.Reader
	if h.body != nil {
		body = bytes.NewReader(h.body)
	}
	hr, err := http.NewRequestWithContext(ctx, h.method, "", body) // "": an empty URL, replaced below
	if err != nil {
		return nil, err
	}
	u := h.url
	if host := removeEmptyPort(u.Host); host != u.Host { // as NewRequestWithContext does
		c := *u
		c.Host = host
		u = &c
	}
	hr.URL, hr.Host = u, u.Host
	if h.header != nil {
		hr.Header = h.header
	}
	return hr, nil
}

// removeEmptyPort strips the colon of a host:port whose port is empty
// ("example.com:"), as net/http does.
func removeEmptyPort(host string) string {
	if strings.LastIndex(host, ":") > strings.LastIndex(host, "]") {
		return strings.TrimSuffix(host, ":")
	}
	return host
}

// finish reads the final response's body within the bound.
func (c *Client) finish(ctx context.Context, h *hop, resp *http.Response, redirected bool) (*Response, error) {
	defer resp.Body.Close()
	host := h.url.Hostname()
	tooLarge := func() error {
		return newError(BodyTooLarge, host, nil, "fetch to %s: the response body is over the %s limit (%s)",
			host, formatBytes(c.maxBody), keyMaxBody)
	}
	if resp.ContentLength > c.maxBody && resp.Body != http.NoBody { // a HEAD response declares a length it does not send
		return nil, tooLarge()
	}
	body, err := readBounded(resp.Body, resp.ContentLength, c.maxBody)
	if err != nil {
		return nil, failure(ctx, host, err)
	}
	if int64(len(body)) > c.maxBody {
		return nil, tooLarge()
	}
	final := *h.url
	final.Fragment, final.RawFragment = "", ""
	return &Response{
		Status:     resp.StatusCode,
		StatusText: strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode))),
		Header:     resp.Header,
		URL:        final.String(),
		Redirected: redirected,
		Body:       body,
	}, nil
}

// readBounded reads r to its end but never more than limit+1 bytes; hint is
// the expected size (-1 when unknown), so a body of known length is read
// into one allocation.
func readBounded(r io.Reader, hint, limit int64) ([]byte, error) {
	size := int64(512)
	if hint >= 0 {
		size = min(hint, limit) + 1 // +1: the read that sees EOF needs room
	}
	buf := make([]byte, 0, size)
	lr := io.LimitReader(r, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// discard drops a redirect's body, reading a little of it so that its
// connection can be reused.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}
