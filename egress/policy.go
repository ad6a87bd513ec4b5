package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Policy is where one project may connect: the parsed `egress:` list of its
// manifest. A Policy is immutable and safe for concurrent use. The zero
// value and a nil *Policy allow nothing.
type Policy struct {
	entries []string
	rules   []rule
}

// rule is one parsed entry.
type rule struct {
	name   string       // lower case, no trailing dot; "" for an address rule
	wild   bool         // any subdomain of name, not name itself
	prefix netip.Prefix // the addresses of an address rule
	port   int          // 0: any port
}

func (r rule) isLocalhost() bool { return r.name == "localhost" && !r.wild }

func (r rule) portMatches(port int) bool { return r.port == 0 || r.port == port }

// EntryError is a bad entry of an egress list. Index is its position in the
// list given to ParsePolicy; Reason says what is wrong with it.
type EntryError struct {
	Index  int
	Entry  string
	Reason string
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("egress entry %q %s", e.Entry, e.Reason)
}

// ParsePolicy parses a project's egress list (see the package
// documentation for the forms of an entry). The error joins one *EntryError
// per bad entry, each naming the entry and why it is refused. An empty list
// gives a Policy that allows nothing.
func ParsePolicy(entries []string) (*Policy, error) {
	p := &Policy{}
	var errs []error
	for i, e := range entries {
		r, reason := parseEntry(e)
		if reason != "" {
			errs = append(errs, &EntryError{Index: i, Entry: e, Reason: reason})
			continue
		}
		p.entries = append(p.entries, strings.TrimSpace(e))
		p.rules = append(p.rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// Entries returns the policy's entries as written (surrounding blanks
// trimmed), in order. The caller owns the returned slice.
func (p *Policy) Entries() []string {
	if p == nil {
		return nil
	}
	return append([]string(nil), p.entries...)
}

// parseEntry parses one entry; a non-empty reason says why it is refused.
func parseEntry(raw string) (rule, string) {
	e := strings.TrimSpace(raw)
	switch {
	case e == "":
		return rule{}, "is empty"
	case strings.Contains(e, "://"):
		hint := ""
		if u, err := url.Parse(e); err == nil && u.Host != "" {
			hint = fmt.Sprintf(" (%q)", u.Host)
		}
		return rule{}, "is a URL: write its host only" + hint
	case strings.Contains(e, "@"):
		return rule{}, "must not hold user information (@)"
	case strings.ContainsAny(e, "?# \t\r\n"):
		return rule{}, "may hold only a host and a port, an address or an address range"
	case strings.Contains(e, "/"):
		return parseRange(e)
	}
	if a, err := netip.ParseAddr(e); err == nil {
		return addrRule(a, 0)
	}
	host, port, reason := splitPort(e)
	if reason != "" {
		return rule{}, reason
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return addrRule(a, port)
	}
	if strings.HasPrefix(e, "[") {
		return rule{}, "has brackets, which are for IPv6 addresses ([::1]:8080)"
	}
	return nameRule(host, port)
}

// parseRange parses an entry holding a "/": an address range or a mistake.
func parseRange(e string) (rule, string) {
	p, err := netip.ParsePrefix(e)
	if err != nil {
		before, _, _ := strings.Cut(e, "/")
		if _, aerr := netip.ParseAddr(strings.Trim(before, "[]")); aerr == nil {
			return rule{}, "is not a valid address range: write address/bits, e.g. 10.0.0.0/8 (a range takes no port)"
		}
		return rule{}, "has a path: write the host only"
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	return rule{prefix: netip.PrefixFrom(a, bits).Masked()}, ""
}

// splitPort splits "host:port" or "[v6]:port"; port is 0 when absent.
func splitPort(e string) (host string, port int, reason string) {
	if strings.HasPrefix(e, "[") && strings.HasSuffix(e, "]") {
		return e[1 : len(e)-1], 0, ""
	}
	if strings.HasPrefix(e, "[") || strings.Count(e, ":") == 1 {
		h, p, err := net.SplitHostPort(e)
		if err != nil {
			return "", 0, "is not host:port or [IPv6]:port"
		}
		n, ok := parsePort(p)
		if !ok {
			return "", 0, fmt.Sprintf("has port %q: a port is a number from 1 to 65535", p)
		}
		return h, n, ""
	}
	if strings.Contains(e, ":") {
		return "", 0, "is not a valid IPv6 address (with a port, write [address]:port)"
	}
	return e, 0, ""
}

// parsePort parses a decimal port in 1..65535.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && n <= 65535
}

func addrRule(a netip.Addr, port int) (rule, string) {
	if a.Zone() != "" {
		return rule{}, "has an IPv6 zone (%), which egress does not support"
	}
	a = a.Unmap()
	return rule{prefix: netip.PrefixFrom(a, a.BitLen()), port: port}, ""
}

func nameRule(host string, port int) (rule, string) {
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	r := rule{port: port}
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		r.wild, name = true, rest
	}
	switch {
	case name == "*" || (r.wild && name == ""):
		return rule{}, "allows every host: list the hosts (or *.domain) instead"
	case strings.Contains(name, "*"):
		return rule{}, "has a wildcard that is not the whole first label (write *.example.com)"
	case !validName(name):
		return rule{}, "is not a valid host name, address or address range"
	}
	r.name = name
	return r, ""
}

// validName reports whether name (lower case, no trailing dot) is a DNS
// name: labels of letters, digits, '-' and '_', and a last label that is not
// a number (so "127.1" or "10.0.0" is not taken for a name).
func validName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return false
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != "" && !strings.HasPrefix(last, "0x")
}

// target is the host and port of one request, normalised for matching.
type target struct {
	host string     // as in the URL (Hostname): what is dialled and shown
	name string     // lower case, no trailing dot; "" for an address literal
	addr netip.Addr // the address literal, when name == ""
	port int
	// localhost: a rule `localhost` matched, so loopback addresses may be
	// dialled for this request.
	localhost bool
}

// display is the host as messages show it, with the port when asked.
func (t *target) display(withPort bool) string {
	if !withPort {
		return t.host
	}
	return net.JoinHostPort(t.host, strconv.Itoa(t.port))
}

// allowHost applies the host rule to t and records whether `localhost`
// matched. portOnly reports that some entry names the host but none allows
// the port.
func (p *Policy) allowHost(t *target) (ok, portOnly bool) {
	if p == nil {
		return false, false
	}
	for _, r := range p.rules {
		if !r.hostMatches(t) {
			continue
		}
		if !r.portMatches(t.port) {
			portOnly = true
			continue
		}
		ok = true
		if r.isLocalhost() {
			t.localhost = true
		}
	}
	return ok, portOnly && !ok
}

func (r rule) hostMatches(t *target) bool {
	if t.name == "" {
		if r.name == "" {
			return r.prefix.Contains(t.addr)
		}
		return r.isLocalhost() && t.addr.IsLoopback()
	}
	switch {
	case r.name == "":
		return false
	case r.wild:
		return strings.HasSuffix(t.name, "."+r.name)
	default:
		return t.name == r.name
	}
}

// listsAddr reports whether an address entry contains a with a matching port.
func (p *Policy) listsAddr(a netip.Addr, port int) bool {
	if p == nil {
		return false
	}
	for _, r := range p.rules {
		if r.name == "" && r.portMatches(port) && r.prefix.Contains(a) {
			return true
		}
	}
	return false
}
