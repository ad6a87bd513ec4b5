package egress_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsrunner/opsrunner/egress"
)

// upstream is a local HTTP server that counts the connections and requests
// it sees.
type upstream struct {
	*httptest.Server
	conns, requests atomic.Int64
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		h(w, r)
	}))
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

// at is the server's URL with its host replaced by name, plus path.
func (u *upstream) at(name, path string) string {
	_, port, _ := net.SplitHostPort(u.Listener.Addr().String())
	return "http://" + net.JoinHostPort(name, port) + path
}

// hosts is a Config.Resolver answering from a table; other names do not exist.
func hosts(table map[string][]string) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		addrs, ok := table[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		var out []netip.Addr
		for _, a := range addrs {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
}

func newClient(t *testing.T, cfg egress.Config) *egress.Client {
	t.Helper()
	if cfg.Resolver == nil {
		cfg.Resolver = hosts(map[string][]string{"api.test": {"127.0.0.1"}, "other.test": {"127.0.0.1"}})
	}
	if cfg.Proxy == nil {
		cfg.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	}
	c, err := egress.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func policy(t *testing.T, entries ...string) *egress.Policy {
	t.Helper()
	p, err := egress.ParsePolicy(entries)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// wantError checks that err is an *egress.Error of kind with host and a
// message holding each of parts.
func wantError(t *testing.T, err error, kind egress.Kind, host string, parts ...string) *egress.Error {
	t.Helper()
	var e *egress.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v (%T), want an *egress.Error of kind %v", err, err, kind)
	}
	if e.Kind != kind || e.Host != host {
		t.Fatalf("got kind %v host %q (%q), want kind %v host %q", e.Kind, e.Host, e, kind, host)
	}
	for _, p := range parts {
		if !strings.Contains(e.Error(), p) {
			t.Fatalf("got %q, want it to contain %q", e, p)
		}
	}
	return e
}

// waitFor waits for ch, failing the test rather than hanging forever.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("gave up waiting: %s", what)
	}
}

func TestDoSendsTheRequestAndReadsTheResponse(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("X-Key")+" "+string(body))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"ok":true}`)
	})
	c := newClient(t, egress.Config{})
	resp, err := c.Do(t.Context(), policy(t, "api.test", "127.0.0.1"), egress.Request{
		Method: "post", URL: up.at("api.test", "/orders?id=7#frag"),
		Header: http.Header{"X-Key": {"k1"}}, Body: []byte("hello"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 201 || resp.StatusText != "Created" || string(resp.Body) != `{"ok":true}` ||
		resp.Header.Get("X-Seen") != "POST /orders?id=7 k1 hello" || resp.Redirected ||
		resp.URL != up.at("api.test", "/orders?id=7") {
		t.Fatalf("got %+v (X-Seen %q)", resp, resp.Header.Get("X-Seen"))
	}
}

func TestNotAllowedHostFailsBeforeConnecting(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	c := newClient(t, egress.Config{Resolver: hosts(map[string][]string{"evil.example": {"127.0.0.1"}, "api.test": {"127.0.0.1"}})})
	pol := policy(t, "api.test:8443", "127.0.0.1:1")

	_, err := c.Do(t.Context(), pol, egress.Request{URL: "https://evil.example/x"})
	e := wantError(t, err, egress.NotAllowed, "evil.example")
	if e.Error() != "fetch to evil.example is not allowed: add it to egress in opsrunner.yaml" {
		t.Fatalf("message %q", e)
	}
	_, err = c.Do(t.Context(), pol, egress.Request{URL: up.at("api.test", "/")})
	_, port, _ := net.SplitHostPort(up.Listener.Addr().String())
	wantError(t, err, egress.NotAllowed, "api.test", "fetch to api.test:"+port+" is not allowed: add it to egress")
	_, err = c.Do(t.Context(), pol, egress.Request{URL: up.URL})
	wantError(t, err, egress.NotAllowed, "127.0.0.1", "fetch to 127.0.0.1:"+port+" is not allowed")
	_, err = c.Do(t.Context(), nil, egress.Request{URL: up.URL})
	wantError(t, err, egress.NotAllowed, "127.0.0.1", "fetch to 127.0.0.1 is not allowed")
	if n := up.conns.Load(); n != 0 {
		t.Fatalf("the server saw %d connections", n)
	}
}

func TestInvalidURLs(t *testing.T) {
	t.Parallel()
	c := newClient(t, egress.Config{})
	pol := policy(t, "api.test")
	tests := []struct{ url, host, want string }{
		{"ftp://api.test/x", "api.test", `URL scheme "ftp" is not supported: use http or https`},
		{"file:///etc/passwd", "", `URL scheme "file" is not supported`},
		{"/relative/path", "", "it must be absolute"},
		{"api.test/x", "", "it must be absolute"},
		{"http://user:s3cret@api.test/", "api.test", "user information"},
		{"http://api.test:0/", "api.test", `port "0"`},
		{"http://api.test:99999/", "api.test", `port "99999"`},
		{"http:opaque", "", "no host"},
		{"http:///path", "", "no host"},
		{"http://[fe80::1%25eth0]/", "fe80::1%eth0", "zones"},
		{"http://127.1/", "127.1", "not a valid host name"},
		{"http://a b/?key=s3cret", "", "fetch: invalid URL"},
		{"http://api.test:port/?key=s3cret", "", "fetch: invalid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			_, err := c.Do(t.Context(), pol, egress.Request{URL: tt.url})
			e := wantError(t, err, egress.InvalidURL, tt.host, tt.want)
			if strings.Contains(e.Error(), "s3cret") {
				t.Fatalf("the message shows the URL's secret: %q", e)
			}
		})
	}
}

func TestSlowUpstreamTimesOutAndClosesTheConnection(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{}, 2)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow-body" {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done() // the client closed the connection
		closed <- struct{}{}
	})
	c := newClient(t, egress.Config{})
	for _, path := range []string{"/slow-headers", "/slow-body"} {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		_, err := c.Do(ctx, policy(t, "localhost"), egress.Request{URL: up.at("127.0.0.1", path)})
		cancel()
		e := wantError(t, err, egress.Timeout, "127.0.0.1", "fetch to 127.0.0.1 timed out: the run's time limit was reached")
		if !errors.Is(e, context.DeadlineExceeded) {
			t.Fatalf("%s: %v does not wrap the deadline", path, e)
		}
		waitFor(t, closed, "the server to see the connection closed")
	}
}

func TestCanceledRequestIsAborted(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	})
	c := newClient(t, egress.Config{})
	ctx, cancel := context.WithCancelCause(t.Context())
	go func() {
		<-started
		cancel(errors.New("AbortError"))
	}()
	_, err := c.Do(ctx, policy(t, "localhost"), egress.Request{URL: up.URL})
	e := wantError(t, err, egress.Timeout, "127.0.0.1", "fetch to 127.0.0.1 was aborted")
	if errors.Unwrap(e) == nil || errors.Unwrap(e).Error() != "AbortError" {
		t.Fatalf("Unwrap() = %v, want the cancel cause", errors.Unwrap(e))
	}
}

func TestHugeBodyStopsAtTheBound(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/endless":
			defer close(done)
			chunk := bytes.Repeat([]byte("x"), 32<<10)
			for {
				if _, err := w.Write(chunk); err != nil {
					return // the client hung up
				}
			}
		case "/declared":
			w.Header().Set("Content-Length", fmt.Sprint(64<<10+1))
			w.WriteHeader(200)
		case "/exact":
			w.Write(bytes.Repeat([]byte("y"), 64<<10))
		}
	})
	c := newClient(t, egress.Config{MaxBodyBytes: 64 << 10})
	pol := policy(t, "localhost")

	_, err := c.Do(t.Context(), pol, egress.Request{URL: up.URL + "/endless"})
	wantError(t, err, egress.BodyTooLarge, "127.0.0.1",
		"fetch to 127.0.0.1: the response body is over the 64 KiB limit (egress.max_body_bytes)")
	waitFor(t, done, "the server to see the endless body refused")

	_, err = c.Do(t.Context(), pol, egress.Request{URL: up.URL + "/declared"})
	wantError(t, err, egress.BodyTooLarge, "127.0.0.1", "over the 64 KiB limit")

	resp, err := c.Do(t.Context(), pol, egress.Request{URL: up.URL + "/exact"})
	if err != nil || len(resp.Body) != 64<<10 {
		t.Fatalf("a body at the bound: %v", err)
	}
}

func TestDefaultBodyBoundIsTenMiB(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(10<<20+1))
		w.WriteHeader(200)
	})
	c := newClient(t, egress.Config{})
	_, err := c.Do(t.Context(), policy(t, "localhost"), egress.Request{URL: up.URL})
	wantError(t, err, egress.BodyTooLarge, "127.0.0.1", "over the 10 MiB limit")

	resp, err := c.Do(t.Context(), policy(t, "localhost"), egress.Request{Method: "HEAD", URL: up.URL})
	if err != nil || len(resp.Body) != 0 || resp.Header.Get("Content-Length") != fmt.Sprint(10<<20+1) {
		t.Fatalf("HEAD of a large resource: %+v, %v", resp, err)
	}
}

func TestServerClosingMidBodyIsRefused(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
		buf.Flush()
		conn.Close()
	})
	_, err := newClient(t, egress.Config{}).Do(t.Context(), policy(t, "localhost"), egress.Request{URL: up.URL})
	wantError(t, err, egress.Refused, "127.0.0.1", "fetch to 127.0.0.1: connection closed before the response was complete")
}

func TestRefusedConnection(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = newClient(t, egress.Config{}).Do(t.Context(), policy(t, "localhost"), egress.Request{URL: "http://" + addr + "/"})
	wantError(t, err, egress.Refused, "127.0.0.1", "fetch to 127.0.0.1: connection refused")
}

func TestDNSFailure(t *testing.T) {
	t.Parallel()
	c := newClient(t, egress.Config{})
	_, err := c.Do(t.Context(), policy(t, "missing.test"), egress.Request{URL: "https://missing.test/"})
	e := wantError(t, err, egress.DNS, "missing.test", "fetch to missing.test: DNS: no such host")
	var dnsErr *net.DNSError
	if !errors.As(e, &dnsErr) {
		t.Fatalf("%v does not wrap the *net.DNSError", e)
	}
}

// TestDNSRebinding: a name the policy allows that resolves to an address
// the policy does not allow is refused on the address, before connecting.
func TestDNSRebinding(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "reached") })
	c := newClient(t, egress.Config{Resolver: hosts(map[string][]string{
		"api.test":   {"127.0.0.1"},
		"meta.test":  {"169.254.169.254"},
		"mixed.test": {"169.254.169.254", "10.9.9.9", "127.0.0.1"},
	})})

	_, err := c.Do(t.Context(), policy(t, "api.test"), egress.Request{URL: up.at("api.test", "/")})
	e := wantError(t, err, egress.NotAllowed, "api.test")
	if e.Error() != "fetch to api.test (127.0.0.1) is not allowed: 127.0.0.1 is a loopback address; add it or its range to egress in opsrunner.yaml" {
		t.Fatalf("message %q", e)
	}
	_, err = c.Do(t.Context(), policy(t, "meta.test", "169.254.0.0/16"), egress.Request{URL: "http://meta.test/latest/meta-data/"})
	wantError(t, err, egress.NotAllowed, "meta.test",
		"fetch to meta.test (169.254.169.254) is not allowed: 169.254.169.254 is in 169.254.0.0/16, which the agent denies to every project (egress.deny)")
	if n := up.conns.Load(); n != 0 {
		t.Fatalf("the server saw %d connections", n)
	}

	// Of several addresses, only those allowed are dialled.
	resp, err := c.Do(t.Context(), policy(t, "mixed.test", "127.0.0.1"), egress.Request{URL: up.at("mixed.test", "/")})
	if err != nil || string(resp.Body) != "reached" {
		t.Fatalf("got %v, want the allowed address reached", err)
	}
}

func TestDenyListWinsOverThePolicy(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	c := newClient(t, egress.Config{Deny: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	_, err := c.Do(t.Context(), policy(t, "api.test", "localhost", "127.0.0.0/8"), egress.Request{URL: up.at("api.test", "/")})
	wantError(t, err, egress.NotAllowed, "api.test", "127.0.0.1 is in 127.0.0.1/32, which the agent denies")
	_, err = c.Do(t.Context(), policy(t, "127.0.0.1"), egress.Request{URL: up.URL})
	wantError(t, err, egress.NotAllowed, "127.0.0.1", "fetch to 127.0.0.1 is not allowed: 127.0.0.1 is in 127.0.0.1/32")
	if n := up.conns.Load(); n != 0 {
		t.Fatalf("the server saw %d connections", n)
	}
}

func TestRedirectLoopStopsAtTheBound(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/again", http.StatusFound)
	})
	pol := policy(t, "localhost")
	_, err := newClient(t, egress.Config{}).Do(t.Context(), pol, egress.Request{URL: up.URL})
	wantError(t, err, egress.TooManyRedirects, "127.0.0.1", "fetch to 127.0.0.1: more than 5 redirects (the limit is egress.max_redirects)")
	if n := up.requests.Load(); n != 6 {
		t.Fatalf("the server saw %d requests, want the first and 5 redirects", n)
	}

	_, err = newClient(t, egress.Config{MaxRedirects: 2}).Do(t.Context(), pol, egress.Request{URL: up.URL})
	wantError(t, err, egress.TooManyRedirects, "127.0.0.1", "more than 2 redirects")

	resp, err := newClient(t, egress.Config{MaxRedirects: -1}).Do(t.Context(), pol, egress.Request{URL: up.URL})
	if err != nil || resp.Status != http.StatusFound || resp.Redirected || resp.Header.Get("Location") != "/again" {
		t.Fatalf("with redirects off: %+v, %v; want the 302 itself", resp, err)
	}
}

// TestRedirectModes follows WHATWG fetch's redirect option: "follow" (the
// default) follows, "manual" returns the redirect response as it is,
// "error" fails when a redirect is answered, without following it.
func TestRedirectModes(t *testing.T) {
	t.Parallel()
	target := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "final") })
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Hop", "first")
		http.Redirect(w, r, target.URL+"/final", http.StatusFound)
	})
	c := newClient(t, egress.Config{})
	pol := policy(t, "localhost")

	for _, mode := range []egress.Redirect{"", egress.RedirectFollow} {
		resp, err := c.Do(t.Context(), pol, egress.Request{URL: up.URL + "/start", Redirect: mode})
		if err != nil || string(resp.Body) != "final" || !resp.Redirected || resp.URL != target.URL+"/final" {
			t.Fatalf("redirect %q: %+v, %v; want the final response, redirected", mode, resp, err)
		}
	}

	resp, err := c.Do(t.Context(), pol, egress.Request{URL: up.URL + "/start", Redirect: egress.RedirectManual})
	if err != nil || resp.Status != http.StatusFound || resp.StatusText != "Found" || resp.Redirected ||
		resp.Header.Get("Location") != target.URL+"/final" || resp.Header.Get("X-Hop") != "first" || resp.URL != up.URL+"/start" {
		t.Fatalf("manual: %+v, %v; want the 302 itself", resp, err)
	}

	_, err = c.Do(t.Context(), pol, egress.Request{URL: up.URL + "/start?token=secret", Redirect: egress.RedirectError})
	e := wantError(t, err, egress.Redirected, "127.0.0.1",
		`fetch to 127.0.0.1: the server answered a redirect (302) and the request's redirect option is "error"`)
	if strings.Contains(e.Error(), "secret") {
		t.Fatalf("%q names the URL's query", e)
	}
	if n := target.requests.Load(); n != 2 {
		t.Fatalf("the target saw %d requests, want 2 (the two follows; manual and error do not follow)", n)
	}

	// A redirect the policy would refuse is still returned by manual (it
	// is not followed), and error fails before anything is dialled there.
	denied := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusMovedPermanently)
	})
	resp, err = c.Do(t.Context(), pol, egress.Request{URL: denied.URL, Redirect: egress.RedirectManual})
	if err != nil || resp.Status != http.StatusMovedPermanently || resp.Header.Get("Location") != "http://169.254.169.254/latest/meta-data/" {
		t.Fatalf("manual to a denied host: %+v, %v; want the 301 itself", resp, err)
	}

	_, err = c.Do(t.Context(), pol, egress.Request{URL: up.URL, Redirect: "bogus"})
	wantError(t, err, egress.Other, "127.0.0.1", `fetch: redirect must be "follow", "manual" or "error", not "bogus"`)
}

func TestRedirectToADeniedHost(t *testing.T) {
	t.Parallel()
	denied := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, denied.at("other.test", "/steal"), http.StatusFound)
	})
	c := newClient(t, egress.Config{})
	_, err := c.Do(t.Context(), policy(t, "api.test", "127.0.0.1"), egress.Request{URL: up.at("api.test", "/")})
	wantError(t, err, egress.NotAllowed, "other.test", "fetch to other.test is not allowed: add it to egress")

	// A redirect to the metadata address is refused even where listed.
	meta := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusMovedPermanently)
	})
	_, err = c.Do(t.Context(), policy(t, "localhost", "169.254.169.254"), egress.Request{URL: meta.URL})
	wantError(t, err, egress.NotAllowed, "169.254.169.254", "denies to every project")
	if n := denied.conns.Load(); n != 0 {
		t.Fatalf("the denied server saw %d connections", n)
	}
}

// TestRedirectMethods follows WHATWG fetch: 303 makes a GET, 301/302 make
// a POST a GET, 307/308 keep method and body.
func TestRedirectMethods(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if code := r.URL.Query().Get("code"); code != "" {
			var n int
			fmt.Sscan(code, &n)
			http.Redirect(w, r, "/final", n)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %q %q", r.Method, body, r.Header.Get("Content-Type"))
	})
	c := newClient(t, egress.Config{})
	tests := []struct {
		method string
		code   int
		want   string
	}{
		{"POST", 301, `GET "" ""`},
		{"POST", 302, `GET "" ""`},
		{"PUT", 302, `PUT "data" "text/plain"`},
		{"POST", 303, `GET "" ""`},
		{"PUT", 303, `GET "" ""`},
		{"HEAD", 303, ``},
		{"POST", 307, `POST "data" "text/plain"`},
		{"PUT", 308, `PUT "data" "text/plain"`},
	}
	for _, tt := range tests {
		resp, err := c.Do(t.Context(), policy(t, "localhost"), egress.Request{
			Method: tt.method, URL: fmt.Sprintf("%s/start?code=%d", up.URL, tt.code),
			Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("data"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.Body) != tt.want || !resp.Redirected || resp.URL != up.URL+"/final" {
			t.Errorf("%s then %d: got %q at %s (redirected %v), want %q", tt.method, tt.code, resp.Body, resp.URL, resp.Redirected, tt.want)
		}
	}
}

func TestRedirectToAnotherOriginDropsCredentials(t *testing.T) {
	t.Parallel()
	show := func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "auth=%q cookie=%q x=%q", r.Header.Get("Authorization"), r.Header.Get("Cookie"), r.Header.Get("X-Other"))
	}
	other := newUpstream(t, show)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same":
			http.Redirect(w, r, "/show", http.StatusFound)
		case "/cross":
			http.Redirect(w, r, other.URL+"/show", http.StatusFound)
		default:
			show(w, r)
		}
	})
	c := newClient(t, egress.Config{})
	header := http.Header{"Authorization": {"Bearer t"}, "Cookie": {"s=1"}, "X-Other": {"kept"}}
	for path, want := range map[string]string{
		"/same":  `auth="Bearer t" cookie="s=1" x="kept"`,
		"/cross": `auth="" cookie="" x="kept"`,
	} {
		resp, err := c.Do(t.Context(), policy(t, "localhost"), egress.Request{URL: up.URL + path, Header: header})
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.Body) != want {
			t.Errorf("%s: got %s, want %s", path, resp.Body, want)
		}
	}
	if header.Get("Authorization") == "" {
		t.Fatal("Do changed the caller's header")
	}
}

// TestPooledConnectionIsCheckedAgainstEachPolicy: a keep-alive connection
// dialled for a project that may reach an address is not used for a
// project that may not.
func TestPooledConnectionIsCheckedAgainstEachPolicy(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	c := newClient(t, egress.Config{})
	mayLoopback := policy(t, "api.test", "127.0.0.1")
	nameOnly := policy(t, "api.test")
	url := up.at("api.test", "/")

	get := func(pol *egress.Policy, method string) error {
		resp, err := c.Do(t.Context(), pol, egress.Request{Method: method, URL: url, Body: []byte("b")})
		if err == nil && string(resp.Body) != "ok" {
			t.Fatalf("body %q", resp.Body)
		}
		return err
	}
	for _, method := range []string{"GET", "POST"} { // GET is retried on a new connection, POST is not
		if err := get(mayLoopback, method); err != nil {
			t.Fatal(err)
		}
		before := up.requests.Load()
		wantError(t, get(nameOnly, method), egress.NotAllowed, "api.test", "127.0.0.1 is a loopback address")
		if up.requests.Load() != before {
			t.Fatalf("%s: the request went out on the pooled connection", method)
		}
	}
	if err := get(mayLoopback, "GET"); err != nil {
		t.Fatalf("the allowed project after a refusal: %v", err)
	}
}

func TestProxyIsDialledWithoutTheAddressCheck(t *testing.T) {
	t.Parallel()
	var seen atomic.Value
	proxy := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.URL.String())
		fmt.Fprint(w, "via proxy")
	})
	proxyURL, _ := url.Parse(proxy.URL)
	c := newClient(t, egress.Config{
		Resolver: hosts(nil), // the proxy resolves targets
		Proxy:    func(*http.Request) (*url.URL, error) { return proxyURL, nil },
	})
	pol := policy(t, "api.example.com") // the proxy's loopback address is not listed
	resp, err := c.Do(t.Context(), pol, egress.Request{URL: "http://api.example.com/x"})
	if err != nil || string(resp.Body) != "via proxy" || seen.Load() != "http://api.example.com/x" {
		t.Fatalf("got %v, %v (proxy saw %v)", resp, err, seen.Load())
	}
	_, err = c.Do(t.Context(), pol, egress.Request{URL: "http://evil.example/"})
	wantError(t, err, egress.NotAllowed, "evil.example", "fetch to evil.example is not allowed")
	if n := proxy.requests.Load(); n != 1 {
		t.Fatalf("the proxy saw %d requests, want 1", n)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "secure") }))
	t.Cleanup(srv.Close)
	pol := policy(t, "localhost")

	_, err := newClient(t, egress.Config{}).Do(t.Context(), pol, egress.Request{URL: srv.URL})
	wantError(t, err, egress.TLS, "127.0.0.1", "fetch to 127.0.0.1: TLS: certificate signed by unknown authority")

	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, egress.Config{CAFiles: []string{ca}, Resolver: hosts(map[string][]string{"example.com": {"127.0.0.1"}, "wrong.test": {"127.0.0.1"}})})
	resp, err := c.Do(t.Context(), pol, egress.Request{URL: srv.URL})
	if err != nil || string(resp.Body) != "secure" {
		t.Fatalf("with the CA file: %v", err)
	}
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	resp, err = c.Do(t.Context(), policy(t, "example.com", "127.0.0.1"), egress.Request{URL: "https://example.com:" + port + "/"})
	if err != nil || string(resp.Body) != "secure" {
		t.Fatalf("by name with the CA file: %v", err)
	}
	_, err = c.Do(t.Context(), policy(t, "wrong.test", "127.0.0.1"), egress.Request{URL: "https://wrong.test:" + port + "/"})
	wantError(t, err, egress.TLS, "wrong.test", "fetch to wrong.test: TLS: certificate is valid for")

	plain := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	_, err = c.Do(t.Context(), pol, egress.Request{URL: strings.Replace(plain.URL, "http:", "https:", 1)})
	wantError(t, err, egress.TLS, "127.0.0.1", "TLS: the server did not answer with TLS")
}

func TestNewClientNamesABadCAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for file, want := range map[string]string{
		filepath.Join(dir, "missing.pem"): "read CA file " + filepath.Join(dir, "missing.pem") + ": no such file",
		notPEM:                            "CA file " + notPEM + " holds no PEM certificate",
	} {
		if _, err := egress.NewClient(egress.Config{CAFiles: []string{file}}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}

func TestKindNames(t *testing.T) {
	t.Parallel()
	if egress.NotAllowed.String() != "not allowed" || egress.Redirected.String() != "redirected" ||
		egress.Kind(0) != egress.Other || egress.Kind(99).String() != "Kind(99)" {
		t.Fatal("Kind names")
	}
}

func TestTheRequestIsSentAsItsURLAndHeadersSay(t *testing.T) {
	var seen atomic.Value
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen.Store(fmt.Sprintf("%s %s host=%s type=%s x=%q len=%d body=%s", r.Method, r.RequestURI, r.Host,
			r.Header.Get("Content-Type"), r.Header.Values("X-Multi"), r.ContentLength, body))
	})
	c := newClient(t, egress.Config{})
	pol := policy(t, "api.test", "127.0.0.1")
	header := http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}}
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/a%2Fb/c?q=1%202&r=%E2%82%AC#frag", "GET /a%2Fb/c?q=1%202&r=%E2%82%AC"},
		{"POST", "/orders", "POST /orders"},
	} {
		var body []byte
		if tc.method == "POST" {
			body = []byte("hello")
		}
		resp, err := c.Do(context.Background(), pol, egress.Request{Method: tc.method, URL: up.at("api.test", tc.path), Header: header, Body: body})
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		want := fmt.Sprintf(`%s host=%s type=text/plain x=["a" "b"] len=%d body=%s`, tc.want, strings.TrimPrefix(up.at("api.test", ""), "http://"), len(body), body)
		if got := seen.Load(); got != want {
			t.Errorf("the upstream saw %q, want %q", got, want)
		}
		if resp.URL != strings.TrimSuffix(up.at("api.test", tc.path), "#frag") {
			t.Errorf("response URL %q", resp.URL)
		}
	}
	if got := header.Values("X-Multi"); len(header) != 2 || len(got) != 2 {
		t.Errorf("the request's header was changed: %v", header)
	}
}
