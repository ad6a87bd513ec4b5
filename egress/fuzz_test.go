package egress

import (
	"errors"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzParsePolicy: any egress list (one entry a line) parses or names its
// bad entries, never panics; what parses parses again from Entries() alike;
// and checking any URL and address against it never panics.
func FuzzParsePolicy(f *testing.F) {
	for _, seed := range []struct{ entries, url string }{
		{"api.example.com\n*.internal.example\n10.0.0.0/8\nlocalhost:9000", "http://a.internal.example/x"},
		{"[::1]:8080\n10.1.2.3:9000\n::ffff:10.0.0.0/104", "http://[::1]:8080/"},
		{"*\n*.\nhttp://x\nx/y\n10.0.0.0/33\nx:0\nx:65536", "ftp://x/"},
		{"API.Example.COM.", "https://api.example.com.:443/"},
		{"localhost", "http://127.0.0.1/"},
		{"", "http://user:pw@x/"},
		{"fe80::1%eth0\n[x]:1\n1:2:3", "http://[fe80::1%25eth0]/"},
	} {
		f.Add(seed.entries, seed.url)
	}
	addr := netip.MustParseAddr("10.1.2.3")
	f.Fuzz(func(t *testing.T, list, rawURL string) {
		entries := strings.Split(list, "\n")
		p, err := ParsePolicy(entries)
		if err != nil {
			if p != nil {
				t.Fatal("a policy returned with an error")
			}
			var joined interface{ Unwrap() []error }
			if !errors.As(err, &joined) {
				t.Fatalf("error %T does not join entry errors", err)
			}
			for _, e := range joined.Unwrap() {
				var ee *EntryError
				if !errors.As(e, &ee) || ee.Index < 0 || ee.Index >= len(entries) || entries[ee.Index] != ee.Entry || ee.Reason == "" {
					t.Fatalf("bad entry error %#v", e)
				}
			}
			return
		}
		again, err := ParsePolicy(p.Entries())
		if err != nil || !slices.Equal(again.Entries(), p.Entries()) || !slices.Equal(again.rules, p.rules) {
			t.Fatalf("Entries() %q do not parse back alike: %v", p.Entries(), err)
		}
		u, err := url.Parse(rawURL)
		if err != nil {
			return
		}
		tg, err := checkURL(u)
		if err != nil {
			return
		}
		if ok, portOnly := p.allowHost(&tg); ok && portOnly {
			t.Fatal("allowed and refused for its port at once")
		}
		_ = checkAddr(p, DefaultDeny(), &tg, addr, tg.port)
		if tg.name == "" {
			_ = checkAddr(p, DefaultDeny(), &tg, tg.addr, tg.port)
		}
	})
}
