package egress

import (
	"fmt"
	"net/netip"
	"strings"
)

// DefaultDeny is the agent-wide deny list used when Config.Deny is nil: the
// link-local ranges, which hold the cloud metadata address 169.254.169.254,
// and the IPv6 metadata address of AWS (fd00:ec2::254). It returns a new
// slice on each call.
func DefaultDeny() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("fd00:ec2::254/128"),
	}
}

// ParsePrefixes parses address ranges ("169.254.0.0/16") and single
// addresses ("10.1.2.3", "::1") as for the agent configuration key
// egress.deny. The error names the first bad item.
func ParsePrefixes(s []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(s))
	for _, item := range s {
		v := strings.TrimSpace(item)
		if strings.Contains(v, "/") {
			p, err := netip.ParsePrefix(v)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address range (address/bits, e.g. 169.254.0.0/16)", item)
			}
			a, bits := p.Addr(), p.Bits()
			if a.Is4In6() && bits >= 96 {
				a, bits = a.Unmap(), bits-96
			}
			out = append(out, netip.PrefixFrom(a, bits).Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IP address or an address range", item)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// special lists the address ranges that are not globally reachable, most
// specific first, each with how a message calls it. Addresses outside all
// of them are public.
var special = func() []struct {
	prefix netip.Prefix
	what   string
} {
	list := []struct{ prefix, what string }{
		{"0.0.0.0/8", "an unspecified"},
		{"10.0.0.0/8", "a private"},
		{"100.64.0.0/10", "a shared (carrier-grade NAT)"},
		{"127.0.0.0/8", "a loopback"},
		{"169.254.0.0/16", "a link-local"},
		{"172.16.0.0/12", "a private"},
		{"192.0.0.0/24", "a reserved"},
		{"192.0.2.0/24", "a documentation"},
		{"192.168.0.0/16", "a private"},
		{"198.18.0.0/15", "a benchmarking"},
		{"198.51.100.0/24", "a documentation"},
		{"203.0.113.0/24", "a documentation"},
		{"224.0.0.0/4", "a multicast"},
		{"240.0.0.0/4", "a reserved"},
		{"::/128", "an unspecified"},
		{"::1/128", "a loopback"},
		{"::/96", "a reserved"},
		{"64:ff9b:1::/48", "a private"},
		{"100::/64", "a reserved"},
		{"2001:2::/48", "a benchmarking"},
		{"2001:db8::/32", "a documentation"},
		{"fc00::/7", "a private"},
		{"fe80::/10", "a link-local"},
		{"fec0::/10", "a site-local"},
		{"ff00::/8", "a multicast"},
	}
	out := make([]struct {
		prefix netip.Prefix
		what   string
	}, len(list))
	for i, s := range list {
		out[i].prefix, out[i].what = netip.MustParsePrefix(s.prefix), s.what
	}
	return out
}()

// classify says what kind of non-public address a is ("a private"), or ""
// for a public one.
func classify(a netip.Addr) string {
	for _, s := range special {
		if s.prefix.Contains(a) {
			return s.what
		}
	}
	return ""
}

var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
)

// embedded returns the IPv4 address an IPv6 address carries to the IPv4
// network (NAT64 64:ff9b::/96, 6to4 2002::/16), so that 64:ff9b::a9fe:a9fe
// is checked as the 169.254.169.254 it reaches.
func embedded(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixTo4.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// checkAddr applies the address rule to one address about to be dialled for
// t under policy p. It returns "" when allowed, otherwise why not, phrased to
// follow "fetch to host (addr) is not allowed: ".
func checkAddr(p *Policy, deny []netip.Prefix, t *target, a netip.Addr, port int) string {
	a = a.Unmap()
	addrs := []netip.Addr{a}
	if v4, ok := embedded(a); ok {
		addrs = append(addrs, v4)
	}
	for _, x := range addrs {
		for _, d := range deny {
			if d.Contains(x) {
				return fmt.Sprintf("%s is in %s, which the agent denies to every project (%s)", a, d, keyDeny)
			}
		}
	}
	what, shown := classify(a), a
	if len(addrs) > 1 && what == "" {
		what, shown = classify(addrs[1]), addrs[1]
	}
	if what == "" {
		return ""
	}
	for _, x := range addrs {
		if p.listsAddr(x, port) || (t.localhost && x.IsLoopback()) {
			return ""
		}
	}
	// The address is written out only for the refusal: formatting it for
	// every allowed request was a measurable share of a fetch's CPU.
	if shown != a {
		return fmt.Sprintf("%s (%s) is %s address; add it or its range to egress in opsrunner.yaml", a, shown, what)
	}
	return fmt.Sprintf("%s is %s address; add it or its range to egress in opsrunner.yaml", a, what)
}
