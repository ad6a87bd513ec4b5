package egress

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// parseURL parses a request's URL. Its errors never quote the whole URL,
// which may carry a key in its query.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, newError(InvalidURL, "", err, "fetch: invalid URL: %v", err)
	}
	return u, nil
}

// checkURL checks that u is an absolute http(s) URL without user
// information and returns its target.
func checkURL(u *url.URL) (target, error) {
	host := u.Hostname()
	switch {
	case u.Scheme == "":
		return target{}, newError(InvalidURL, "", nil, "fetch: invalid URL: it must be absolute (http:// or https://)")
	case u.Scheme != "http" && u.Scheme != "https":
		if host == "" {
			return target{}, newError(InvalidURL, "", nil, "fetch: URL scheme %q is not supported: use http or https", u.Scheme)
		}
		return target{}, newError(InvalidURL, host, nil, "fetch to %s: URL scheme %q is not supported: use http or https", host, u.Scheme)
	case u.Opaque != "" || host == "":
		return target{}, newError(InvalidURL, "", nil, "fetch: invalid URL: it has no host")
	case u.User != nil:
		return target{}, newError(InvalidURL, host, nil,
			"fetch to %s: URLs with user information (user:password@) are not allowed; send an Authorization header instead", host)
	}
	t := target{host: host, port: 80}
	if u.Scheme == "https" {
		t.port = 443
	}
	if p := u.Port(); p != "" {
		n, ok := parsePort(p)
		if !ok {
			return target{}, newError(InvalidURL, host, nil, "fetch to %s: invalid URL: port %q is not a number from 1 to 65535", host, p)
		}
		t.port = n
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return target{}, newError(InvalidURL, host, nil, "fetch to %s: invalid URL: IPv6 zones are not supported", host)
		}
		t.addr = a.Unmap()
		return t, nil
	}
	t.name = strings.TrimSuffix(strings.ToLower(host), ".")
	if !validName(t.name) {
		return target{}, newError(InvalidURL, host, nil, "fetch: invalid URL: %q is not a valid host name or IP address", host)
	}
	return t, nil
}

// Request headers that describe a body, dropped when a redirect turns the
// request into a GET.
var bodyHeaders = []string{"Content-Type", "Content-Length", "Content-Encoding", "Content-Language", "Content-Location"}

// Request headers that carry credentials, dropped on a redirect to another
// origin.
var credentialHeaders = []string{"Authorization", "Cookie", "Cookie2", "Proxy-Authorization"}

// isRedirect reports whether code is a redirect status (WHATWG fetch's
// redirect statuses: 301, 302, 303, 307, 308).
func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// nextHop is the request a redirect response asks for, following WHATWG
// fetch: 303 turns any method but GET and HEAD into a GET without a body,
// 301 and 302 turn a POST into one, 307 and 308 keep the method and body.
// ok is false when resp is not a redirect to follow.
func nextHop(h *hop, resp *http.Response) (next hop, ok bool, err error) {
	if !isRedirect(resp.StatusCode) {
		return hop{}, false, nil
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return hop{}, false, nil
	}
	u, err := h.url.Parse(loc)
	if err != nil {
		host := h.url.Hostname()
		return hop{}, false, newError(InvalidURL, host, err, "fetch to %s: the redirect's Location is not a valid URL", host)
	}
	next = hop{method: h.method, url: u, header: h.header.Clone(), body: h.body}
	code := resp.StatusCode
	if (code == http.StatusSeeOther && h.method != http.MethodGet && h.method != http.MethodHead) ||
		((code == http.StatusMovedPermanently || code == http.StatusFound) && h.method == http.MethodPost) {
		next.method, next.body = http.MethodGet, nil
		for _, k := range bodyHeaders {
			next.header.Del(k)
		}
	}
	if origin(u) != origin(h.url) {
		for _, k := range credentialHeaders {
			next.header.Del(k)
		}
	}
	return next, true, nil
}

// origin is scheme://host:port with the default port written out.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + strings.ToLower(strings.TrimSuffix(u.Hostname(), ".")) + ":" + port
}
