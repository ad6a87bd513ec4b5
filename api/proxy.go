package api

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/labstack/echo/v5"
)

// peerProxy forwards webhooks to other agents: over HTTPS, with its own
// transport, when agents serve TLS; over plain HTTP otherwise.
type peerProxy struct {
	scheme    string
	transport http.RoundTripper // nil: http.DefaultTransport
}

// newProxy returns the proxy to other agents; peerTLS non-nil means they
// serve HTTPS, each connection configured by peerTLS(host).
func newProxy(peerTLS func(host string) *tls.Config) peerProxy {
	if peerTLS == nil {
		return peerProxy{scheme: "http"}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		d := tls.Dialer{NetDialer: dialer, Config: peerTLS(host)}
		return d.DialContext(ctx, network, addr)
	}
	return peerProxy{scheme: "https", transport: t}
}

// serve forwards the request to the agent at target (host:port).
func (p peerProxy) serve(c *echo.Context, target string) {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: p.scheme, Host: target})
			pr.Out.Header.Set(proxiedHeader, c.Request().Host)
		},
		Transport: p.transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			errorHandler(c, newError(http.StatusBadGateway, CodeUnavailable, "proxy to "+target+": "+err.Error(), nil))
		},
	}
	rp.ServeHTTP(c.Response(), c.Request())
}
