// Package egress decides where a project's scripts may connect and makes
// their HTTP requests within bounds. It parses a project's egress list (the
// manifest key `egress`), checks every address before it is dialled, and
// performs requests with one shared keep-alive transport per agent. It knows
// nothing of JavaScript: the runtime's fetch calls Client.Do.
//
// # Entries
//
// An egress list holds entries of these forms:
//
//	api.example.com          the host, any port
//	api.example.com:8443     the host on that port only
//	*.example.com            any subdomain at any depth (a.example.com, a.b.example.com), not example.com itself
//	*.example.com:443        the same, on that port only
//	10.0.0.0/8, fd00::/8     an address range, any port (a range takes no port)
//	10.1.2.3, ::1            one address, any port
//	10.1.2.3:9000, [::1]:80  one address on that port
//	localhost, localhost:80  the name localhost and the loopback addresses, as URL hosts
//
// Names are case-insensitive and a trailing dot is ignored. Empty entries,
// "*", "*.", URLs ("http://x"), paths, user information, bad ranges and ports
// outside 1..65535 are errors that name the entry.
//
// # Checks
//
// A request's URL must be absolute http or https, without user information
// (InvalidURL otherwise). Before anything is dialled its host and port
// (80/443 by default) must match an entry: a name matches name entries, an
// address literal matches address entries (and `localhost` when it is a
// loopback address). Otherwise the request fails with NotAllowed.
//
// The address actually dialled is checked again: Client resolves the name
// itself and connects to the very address it checked, so a DNS answer that
// changes between check and connect (DNS rebinding) cannot get around the
// policy. An address in Config.Deny is refused whatever the policy lists. A
// loopback, private (RFC 1918, fc00::/7), unspecified, link-local, shared
// (100.64.0.0/10), multicast or otherwise reserved address is allowed only
// when an address entry contains it (with a matching port), or, for a
// loopback address, when the URL's host matched `localhost`. Any other
// (public) address is allowed by the host match alone. Addresses of a name
// that fail the check are skipped; when none is left the request fails with
// NotAllowed naming the address and why.
//
// Each redirect is a new request: its URL is checked and its address dialled
// and checked the same way, with the same policy. A request may instead ask
// for the redirect response itself (RedirectManual) or to fail on one
// (RedirectError), as WHATWG fetch's redirect option does.
//
// # Pooled connections
//
// Connections are pooled by the transport per scheme, host and port, whatever
// the project. A request that is handed a pooled connection checks the
// connection's remote address against its own policy (httptrace GotConn)
// before anything is written; a connection its policy would not have dialled
// is closed unused and the request fails with NotAllowed. HTTP/2 is not used,
// so a connection carries one request at a time and closing it affects no
// other request.
//
// # Proxies
//
// With a proxy (Config.Proxy, by default HTTPS_PROXY, HTTP_PROXY and NO_PROXY
// from the environment) the host rule applies to the target host as above;
// the proxy's own address is the agent administrator's choice and is dialled
// without the address checks (Config.Deny included). The proxy resolves the
// target, so behind a proxy a target name is checked by the host rule only.
//
// # Bounds
//
// The context given to Do bounds everything, dialling included; when it ends
// the connection is closed and Do fails with Timeout. The response body is
// read whole up to Config.MaxBodyBytes, redirects are followed up to
// Config.MaxRedirects; passing either fails with an error naming the limit.
package egress
