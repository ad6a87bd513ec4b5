package egress

import (
	"errors"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestParsePolicyAccepts(t *testing.T) {
	t.Parallel()
	entries := []string{
		"api.example.com", "API.Example.COM.", "api.example.com:8443", "*.internal.example",
		"*.internal.example:443", "10.0.0.0/8", "fd00::/8", "::1", "[::1]:8080", "10.1.2.3",
		"10.1.2.3:9000", "localhost", "localhost:9000", " padded.example ", "under_score.example",
		"192.168.1.77/16", "::ffff:10.0.0.0/104",
	}
	p, err := ParsePolicy(entries)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Entries()
	if len(got) != len(entries) || got[13] != "padded.example" {
		t.Fatalf("Entries() = %q", got)
	}
	got[0] = "changed"
	if p.Entries()[0] != "api.example.com" {
		t.Fatal("Entries() must return a copy")
	}
}

func TestParsePolicyRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct{ entry, reason string }{
		{"", "is empty"},
		{"   ", "is empty"},
		{"*", "allows every host"},
		{"*.", "allows every host"},
		{"*:443", "allows every host"},
		{"http://api.example.com", `is a URL: write its host only ("api.example.com")`},
		{"api.example.com/v1", "has a path"},
		{"user@api.example.com", "user information"},
		{"api.example.com?x=1", "may hold only"},
		{"api example.com", "may hold only"},
		{"10.0.0.0/33", "not a valid address range"},
		{"10.0.0.1/8:443", "not a valid address range"},
		{"300.1.2.3", "not a valid host name"},
		{"127.1", "not a valid host name"},
		{"api.example.com:0", `port "0"`},
		{"api.example.com:65536", `port "65536"`},
		{"api.example.com:http", `port "http"`},
		{"api.example.com:", `port ""`},
		{"a.*.example.com", "wildcard that is not the whole first label"},
		{"*example.com", "wildcard that is not the whole first label"},
		{"**.example.com", "wildcard"},
		{"exa$mple.com", "not a valid host name"},
		{"a..b", "not a valid host name"},
		{"fe80::1%eth0", "zone"},
		{"1:2:3", "not a valid IPv6 address"},
		{"[api.example.com]:80", "brackets"},
		{"[::1]:99999", `port "99999"`},
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			t.Parallel()
			_, err := ParsePolicy([]string{"ok.example", tt.entry})
			var ee *EntryError
			if !errors.As(err, &ee) {
				t.Fatalf("ParsePolicy(%q) = %v, want an *EntryError", tt.entry, err)
			}
			if ee.Index != 1 || ee.Entry != tt.entry || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("got %+v (%q), want index 1 and %q", ee, err, tt.reason)
			}
		})
	}
}

func TestParsePolicyReportsEveryBadEntry(t *testing.T) {
	t.Parallel()
	_, err := ParsePolicy([]string{"*", "ok.example", "http://x"})
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Fatalf("got %v, want two entry errors", err)
	}
	if !strings.Contains(err.Error(), `egress entry "*"`) || !strings.Contains(err.Error(), `egress entry "http://x"`) {
		t.Fatalf("got %q", err)
	}
}

func TestZeroPolicyAllowsNothing(t *testing.T) {
	t.Parallel()
	for _, p := range []*Policy{nil, {}, mustPolicy(t)} {
		tg := mustTarget(t, "http://api.example.com/")
		if ok, _ := p.allowHost(&tg); ok {
			t.Fatalf("%v allowed api.example.com", p)
		}
		if p.Entries() != nil {
			t.Fatalf("Entries() = %q", p.Entries())
		}
	}
}

// TestHostRule: which URL hosts and ports each kind of entry lets through.
func TestHostRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		entry    string
		allowed  []string
		refused  []string
		portOnly []string // refused because of the port alone
	}{
		{entry: "api.example.com",
			allowed: []string{"http://api.example.com/", "https://API.example.com.:8443/x"},
			refused: []string{"http://example.com/", "http://a.api.example.com/", "http://api.example.com.evil/", "http://93.184.216.34/"}},
		{entry: "api.example.com:8443",
			allowed:  []string{"https://api.example.com:8443/"},
			portOnly: []string{"https://api.example.com/", "http://api.example.com:8080/"}},
		{entry: "api.example.com:443",
			allowed:  []string{"https://api.example.com/"},
			portOnly: []string{"http://api.example.com/"}},
		{entry: "*.internal.example",
			allowed: []string{"http://a.internal.example/", "http://a.b.c.internal.example:81/"},
			refused: []string{"http://internal.example/", "http://xinternal.example/", "http://internal.example.com/"}},
		{entry: "*.internal.example:443",
			allowed:  []string{"https://db.internal.example/"},
			portOnly: []string{"http://db.internal.example/"},
			refused:  []string{"https://internal.example/"}},
		{entry: "10.0.0.0/8",
			allowed: []string{"http://10.1.2.3/", "http://10.255.0.1:9000/"},
			refused: []string{"http://11.0.0.1/", "http://db.internal/"}},
		{entry: "10.1.2.3:9000",
			allowed:  []string{"http://10.1.2.3:9000/"},
			portOnly: []string{"http://10.1.2.3/"}},
		{entry: "[::1]:8080",
			allowed:  []string{"http://[::1]:8080/"},
			portOnly: []string{"http://[::1]/"},
			refused:  []string{"http://localhost:8080/", "http://127.0.0.1:8080/"}},
		{entry: "localhost",
			allowed: []string{"http://localhost/", "http://LOCALHOST.:1234/", "http://127.0.0.1/", "http://127.9.9.9:80/", "http://[::1]:5/"},
			refused: []string{"http://a.localhost/", "http://10.0.0.1/", "http://[::2]/"}},
		{entry: "localhost:9000",
			allowed:  []string{"http://localhost:9000/", "http://127.0.0.1:9000/"},
			portOnly: []string{"http://localhost/", "http://127.0.0.1:9001/"}},
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			t.Parallel()
			p := mustPolicy(t, tt.entry)
			for _, raw := range slices.Concat(tt.allowed, tt.refused, tt.portOnly) {
				tg := mustTarget(t, raw)
				ok, portOnly := p.allowHost(&tg)
				wantOK, wantPortOnly := slices.Contains(tt.allowed, raw), slices.Contains(tt.portOnly, raw)
				if ok != wantOK || portOnly != wantPortOnly {
					t.Errorf("%s: allowed %v, port only %v; want %v, %v", raw, ok, portOnly, wantOK, wantPortOnly)
				}
			}
		})
	}
}

// TestAddressRule: the check of the address actually dialled.
func TestAddressRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy []string
		url    string
		addr   string
		want   string // "" allowed, else part of the reason
	}{
		{[]string{"api.example.com"}, "https://api.example.com/", "93.184.216.34", ""},
		{[]string{"api.example.com"}, "https://api.example.com/", "2606:2800:220:1::1", ""},
		{[]string{"db.internal"}, "http://db.internal/", "10.1.2.3", "10.1.2.3 is a private address; add it or its range to egress"},
		{[]string{"db.internal", "10.0.0.0/8"}, "http://db.internal/", "10.1.2.3", ""},
		{[]string{"db.internal", "10.1.2.3:5432"}, "http://db.internal:5432/", "10.1.2.3", ""},
		{[]string{"db.internal", "10.1.2.3:5432"}, "http://db.internal/", "10.1.2.3", "private address"},
		{[]string{"db.internal"}, "http://db.internal/", "172.16.5.5", "private address"},
		{[]string{"db.internal"}, "http://db.internal/", "192.168.0.1", "private address"},
		{[]string{"db.internal"}, "http://db.internal/", "fd12::1", "private address"},
		{[]string{"db.internal"}, "http://db.internal/", "100.64.0.1", "shared (carrier-grade NAT) address"},
		{[]string{"db.internal"}, "http://db.internal/", "0.0.0.0", "an unspecified address"},
		{[]string{"db.internal"}, "http://db.internal/", "::", "an unspecified address"},
		{[]string{"db.internal"}, "http://db.internal/", "224.0.0.1", "multicast"},
		{[]string{"db.internal"}, "http://db.internal/", "240.0.0.1", "reserved"},
		{[]string{"api.example.com"}, "http://api.example.com/", "127.0.0.1", "127.0.0.1 is a loopback address"},
		{[]string{"api.example.com"}, "http://api.example.com/", "::1", "loopback"},
		{[]string{"api.example.com"}, "http://api.example.com/", "::ffff:127.0.0.1", "127.0.0.1 is a loopback address"},
		{[]string{"localhost"}, "http://localhost/", "127.0.0.1", ""},
		{[]string{"localhost"}, "http://localhost/", "::1", ""},
		{[]string{"localhost"}, "http://localhost/", "10.0.0.1", "private address"},
		{[]string{"localhost:9000", "localhost:9001"}, "http://localhost:9001/", "127.0.0.1", ""},
		{[]string{"api.example.com", "127.0.0.0/8"}, "http://api.example.com/", "127.0.0.1", ""},
		// The deny list wins over everything the policy lists.
		{[]string{"meta.example", "169.254.0.0/16"}, "http://meta.example/", "169.254.169.254", "169.254.169.254 is in 169.254.0.0/16, which the agent denies to every project (egress.deny)"},
		{[]string{"169.254.169.254"}, "http://169.254.169.254/", "169.254.169.254", "denies to every project"},
		{[]string{"meta.example", "fe80::/10"}, "http://meta.example/", "fe80::1", "denies"},
		// NAT64 and 6to4 addresses are checked as the IPv4 address they reach.
		{[]string{"api.example.com"}, "http://api.example.com/", "64:ff9b::a9fe:a9fe", "denies"},
		{[]string{"api.example.com"}, "http://api.example.com/", "64:ff9b::7f00:1", "loopback"},
		{[]string{"api.example.com"}, "http://api.example.com/", "2002:0a00:0001::1", "private"},
		{[]string{"api.example.com"}, "http://api.example.com/", "64:ff9b::5db8:d822", ""},
	}
	for _, tt := range tests {
		t.Run(tt.url+"@"+tt.addr, func(t *testing.T) {
			t.Parallel()
			p := mustPolicy(t, tt.policy...)
			tg := mustTarget(t, tt.url)
			if ok, _ := p.allowHost(&tg); !ok {
				t.Fatalf("host rule refused %s", tt.url)
			}
			got := checkAddr(p, DefaultDeny(), &tg, netip.MustParseAddr(tt.addr), tg.port)
			if (got == "") != (tt.want == "") || !strings.Contains(got, tt.want) {
				t.Fatalf("checkAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	t.Parallel()
	got, err := ParsePrefixes([]string{"169.254.0.0/16", "10.1.2.3", "::1", " 192.168.7.7/16 ", "::ffff:10.0.0.0/104"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"169.254.0.0/16", "10.1.2.3/32", "::1/128", "192.168.0.0/16", "10.0.0.0/8"}
	for i, p := range got {
		if p.String() != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for _, bad := range []string{"10.0.0.0/40", "nope", "fe80::1%eth0", ""} {
		if _, err := ParsePrefixes([]string{"10.0.0.0/8", bad}); err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("ParsePrefixes(%q) = %v, want an error naming it", bad, err)
		}
	}
}

func TestDefaultDenyHoldsTheMetadataAddress(t *testing.T) {
	t.Parallel()
	for _, a := range []string{"169.254.169.254", "fe80::1", "fd00:ec2::254"} {
		if !slices.ContainsFunc(DefaultDeny(), func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr(a)) }) {
			t.Errorf("DefaultDeny() does not hold %s", a)
		}
	}
}

func mustPolicy(t *testing.T, entries ...string) *Policy {
	t.Helper()
	p, err := ParsePolicy(entries)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustTarget(t *testing.T, raw string) target {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := checkURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}
