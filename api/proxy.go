package api

import (
	"crypto/tls"
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/labstack/echo/v5"
)

// peerProxy forwards webhooks to other agents: over HTTPS, with its own
// transport, when agents serve TLS; over plain HTTP otherwise. The zero
// value proxies over plain HTTP with the default transport.
type peerProxy struct {
	scheme    string
	transport http.RoundTripper
}

// newProxy returns the proxy to other agents; tlsCfg non-nil means they
// serve HTTPS and are checked with it.
func newProxy(tlsCfg *tls.Config) peerProxy {
	if tlsCfg == nil {
		return peerProxy{scheme: "http"}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tlsCfg
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
